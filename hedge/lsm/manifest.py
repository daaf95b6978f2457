"""The manifest on disk: reading it at open, appending edits, installing a
new one (docs/format/manifest.md).

A manifest is a sequence of WAL-framed records (record type VERSION_EDIT,
file number = the manifest's number), each an encoded VersionEdit.  The
first record of a new manifest describes the whole state (snapshot_edit).

Installing a manifest: write MANIFEST-N (snapshot edit), fdatasync; write
CURRENT.tmp naming it, fdatasync; fsync the directory (MANIFEST-N and the
files the new state names, e.g. the table and WAL recovery made, must not
be lost while CURRENT's switch survives); rename over CURRENT; fsync the
directory.
A crash at any point leaves CURRENT naming a complete manifest.

Appending: the record is written at the end and fdatasync'ed before the
edit is applied in memory; a failure leaves the in-memory state unchanged
and is reported to the caller (the engine then enters its background-error
state; the edit is never retried).

REQUIRES: one task at a time appends (VersionSet.log_and_apply takes turns).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from hedge.errors import CorruptionError
from hedge.io import ops
from hedge.io.file import File
from hedge.lsm import filenames
from hedge.lsm.version import VersionSetState, snapshot_edit
from hedge.lsm.version_edit import VersionEdit
from hedge.lsm.wal.format import RecordType, encode_record
from hedge.lsm.wal.reader import WalReader


async def read_file(path: str) -> bytearray:
    """The whole content of ``path`` (read through the ring), in the
    buffer it was read into: a WAL of 32 MiB is not copied again."""
    file = await ops.open_file(path, os.O_RDONLY)
    try:
        size = file.size()
        buf = bytearray(size)
        if size:
            await ops.read_exact(file, buf, 0, size)
        return buf
    finally:
        file.close()


async def read_current(directory: str) -> str | None:
    """The manifest file name CURRENT points to, or None when there is no
    CURRENT.  Raises CorruptionError for a malformed CURRENT."""
    path = filenames.join(directory, filenames.CURRENT)
    if not os.path.exists(path):
        return None
    text = (await read_file(path)).decode("utf-8", "replace")
    name = text.strip()
    parsed = filenames.parse(name)
    if not text.endswith("\n") or parsed is None or parsed[0] != "manifest":
        raise CorruptionError(path, 0, f"CURRENT does not name a manifest: {text!r}")
    return name


# A whole final record whose last bytes are zero may be a torn append
# (pages of it never reached the disk); no encoded edit ends in this many zeros.
TORN_ZERO_BYTES = 4


@dataclass(frozen=True)
class LoadedManifest:
    """A manifest read at open: the state its edits fold into, its number,
    and the damage dropped as a torn final record (None when it ended
    cleanly)."""

    state: VersionSetState
    number: int
    torn_tail: CorruptionError | None


async def load_state(directory: str, manifest: str) -> LoadedManifest:
    """Fold the edits of ``manifest`` into a state.

    A final record cut short by the end of the file, or whole but with its
    last TORN_ZERO_BYTES bytes zero, may be an append torn by a crash: it is
    dropped and reported in ``torn_tail`` (the caller checks that nothing
    acknowledged depended on it).  A whole final record failing its checksum
    otherwise is damage: an edit is fdatasync'ed before it is acknowledged,
    so no crash leaves one behind.  That, and any other damage, raises
    CorruptionError."""
    path = filenames.join(directory, manifest)
    if not os.path.exists(path):
        raise CorruptionError(path, None, "CURRENT names a manifest that does not exist")
    number = filenames.parse(manifest)[1]
    data = await read_file(path)
    reader = WalReader(data, number, path, "tolerate_tail")
    edits = []
    for record in reader:
        if record.record_type != RecordType.VERSION_EDIT:
            raise CorruptionError(path, record.offset, f"unexpected record type {record.record_type} in a manifest")
        edits.append(VersionEdit.decode(record.payload, path, record.offset))
    end = reader.damaged_record_end
    if end is not None and data.count(0, end - TORN_ZERO_BYTES, end) != TORN_ZERO_BYTES:
        raise CorruptionError(path, reader.end_offset,
                              f"the final record is whole but damaged ({reader.damage.detail}); an edit is "
                              "synced before it is acknowledged, so this is not a torn append")
    if not edits:
        raise CorruptionError(path, 0, "the manifest holds no version edit")
    return LoadedManifest(VersionSetState.fold(edits, file=path), number, reader.damage)


async def fsync_directory(directory: str) -> None:
    file = await ops.open_file(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        await ops.fsync(file)
    finally:
        file.close()


class ManifestLog:
    """An open manifest that edits are appended to."""

    def __init__(self, file: File, number: int, offset: int):
        self.file = file
        self.number = number
        self.offset = offset

    @classmethod
    async def install(cls, directory: str, number: int, state: VersionSetState) -> "ManifestLog":
        """Write a new manifest holding ``state`` and point CURRENT at it."""
        name = filenames.manifest_name(number)
        path = filenames.join(directory, name)
        file = await ops.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            record = encode_record(number, snapshot_edit(state).encode(), RecordType.VERSION_EDIT)
            await ops.write(file, record, 0)
            await ops.fdatasync(file)
            tmp = filenames.join(directory, filenames.CURRENT_TMP)
            cur = await ops.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                await ops.write(cur, (name + "\n").encode(), 0)
                await ops.fdatasync(cur)
            finally:
                cur.close()
            await fsync_directory(directory)     # every name CURRENT's switch relies on is durable first
            await ops.rename(tmp, filenames.join(directory, filenames.CURRENT))
            await fsync_directory(directory)
        except BaseException:
            file.close()
            raise
        return cls(file, number, len(record))

    async def append(self, edit: VersionEdit) -> None:
        """Append ``edit`` and make it durable.  Raises HedgeIOError."""
        record = encode_record(self.number, edit.encode(), RecordType.VERSION_EDIT)
        await ops.write(self.file, record, self.offset)
        await ops.fdatasync(self.file)
        self.offset += len(record)

    def close(self) -> None:
        self.file.close()
