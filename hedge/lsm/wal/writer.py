"""WalWriter: appends framed records (docs/format/wal.md) to one WAL file.

REQUIRES: one task at a time appends (the group-commit leader).  Records are
written at explicit offsets, inline on the leader's thread (a buffered
append costs less as a pwrite than as a request the kernel hands to a
worker; see ops.write_inline); ``sync`` is an fdatasync through the ring.
A failed append or sync is reported to the caller and never retried: the
engine turns it into its background-error state.
"""
from __future__ import annotations

import os

from hedge.io import ops
from hedge.io.file import File
from hedge.lsm.wal.format import RecordType, encode_record


class WalWriter:
    def __init__(self, file: File, number: int, offset: int = 0):
        self.file = file
        self.number = number
        self.offset = offset

    @classmethod
    async def create(cls, path: str, number: int) -> "WalWriter":
        file = await ops.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        return cls(file, number)

    def append(self, payload) -> int:
        """Write one record holding ``payload`` (the OS has it on return, an
        inline write: no await); return the record's size in bytes."""
        record = encode_record(self.number, payload, RecordType.BATCHES)
        ops.write_inline(self.file, record, self.offset)
        self.offset += len(record)
        return len(record)

    async def sync(self) -> None:
        await ops.fdatasync(self.file)

    def duplicate(self) -> File:
        """A File of its own on this WAL (a new descriptor): for an
        fdatasync on another thread that must not race this writer's
        ``close``.  The caller closes it."""
        return File(os.dup(self.file.fd), self.file.path)

    def close(self) -> None:
        self.file.close()
