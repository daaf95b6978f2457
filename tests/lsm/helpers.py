"""Small builders shared by the version and compaction tests."""
from __future__ import annotations

from hedge.lsm.version_edit import FileMeta


def table(number: int, smallest: bytes | str, largest: bytes | str, size: int = 100,
          seqs: tuple[int, int] | None = None, entries: int = 10, deletes: int = 0) -> FileMeta:
    """A FileMeta with defaults; keys may be given as str for brevity."""
    lo = smallest.encode() if isinstance(smallest, str) else smallest
    hi = largest.encode() if isinstance(largest, str) else largest
    lo_seq, hi_seq = seqs if seqs is not None else (number, number)
    return FileMeta(number=number, size=size, smallest_key=lo, largest_key=hi,
                    smallest_seq=lo_seq, largest_seq=hi_seq, entries=entries, deletes=deletes)
