"""Names of the files in a database directory.

    LOCK                  held (flock) by the one open handle
    CURRENT               names the live manifest ("MANIFEST-000005\\n")
    MANIFEST-NNNNNN       version edits (docs/format/manifest.md)
    NNNNNN.wal            write-ahead log (docs/format/wal.md)
    NNNNNN.sst            table (docs/format/table.md)
    CURRENT.tmp           CURRENT being replaced; removed on open

All numbers come from one counter (the manifest's next_file_number), so a
number names one file for the life of the database.  These are the only
names hedge creates, and the only ones it ever removes: other files in the
directory are the user's.
"""
from __future__ import annotations

import os
import re

LOCK = "LOCK"
CURRENT = "CURRENT"
CURRENT_TMP = "CURRENT.tmp"
MANIFEST_PREFIX = "MANIFEST-"

_PATTERN = re.compile(r"^(?:MANIFEST-(\d+)|(\d+)\.(wal|sst))$")


def wal_name(number: int) -> str:
    return f"{number:06d}.wal"


def table_name(number: int) -> str:
    return f"{number:06d}.sst"


def manifest_name(number: int) -> str:
    return f"{MANIFEST_PREFIX}{number:06d}"


def parse(name: str) -> tuple[str, int] | None:
    """("manifest" | "wal" | "sst", number) for a database file name, else None."""
    m = _PATTERN.match(name)
    if m is None:
        return None
    if m.group(1) is not None:
        return "manifest", int(m.group(1))
    return m.group(3), int(m.group(2))


def is_hedge_name(name: str) -> bool:
    """Whether hedge creates files named ``name``."""
    return name in (LOCK, CURRENT, CURRENT_TMP) or parse(name) is not None


def join(directory: str, name: str) -> str:
    return os.path.join(directory, name)
