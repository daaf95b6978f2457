"""Table files through the ring: open a TableReader over a File, and write a
table from an ordered stream of entries.

Reads: every read the reader asks for is page-aligned (docs/format/table.md),
so the same code serves O_DIRECT files.  A read goes into a page-aligned
Buffer taken from a small per-thread free list of its size (reads of up to
POOLED_PAGES pages: one page, the two a compressed block crossing a page
boundary spans, or a scan's read-ahead of several blocks; a new Buffer is
an mmap, ~30 us), and is copied out as bytes (blocks in the cache must not
alias a reused buffer).

Writes: the builder hands out finished, page-aligned chunks (one data
block each, about 16 KiB).  They are gathered until WRITE_BATCH_BYTES are
waiting, then written as one ``writev`` per run of adjacent chunks (at most
WRITE_BATCH_CHUNKS buffers each, a bounded window of ``WRITE_WINDOW`` in
flight).  The ring hands a buffered write on ext4 to a kernel worker
thread, which costs tens of microseconds per request whatever its size: a
32 MiB table took 40-100 ms as one request per chunk and 11 ms as one per
64 chunks (docs/design.md, "Keeping up with the writers").  The file is
fdatasync'ed before the table is announced to anyone.

REQUIRES: the coroutines run on an executor; the buffer free list is per
thread, so no locking is needed.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Callable, Iterable

from hedge.exec import gather
from hedge.io import ops
from hedge.io.buffer import Buffer
from hedge.io.file import File
from hedge.lsm.table import TableBuilder, TableReader
from hedge.lsm.version_edit import FileMeta

PAGE = 4096
WRITE_WINDOW = 4           # writes of one table in flight at once
WRITE_EVERY = 256          # entries added between two looks at the finished chunks
WRITE_BATCH_BYTES = 1 << 20    # finished chunks gathered before they are written
WRITE_BATCH_CHUNKS = 64    # buffers in one writev (IOV_MAX is 1024)
POOLED_PAGES = 16          # a table cursor's largest read-ahead (amerge.READ_AHEAD_BYTES)
_FREE_BYTES = 1 << 20      # bytes of buffers kept per size and thread (at least 8 buffers)
_local = threading.local()


def _take_buffer(length: int) -> Buffer:
    if length <= POOLED_PAGES * PAGE:
        free = getattr(_local, "free", None)
        if free is not None:
            bufs = free.get(length)
            if bufs:
                return bufs.pop()
    return Buffer(length)


def _give_back(buf: Buffer) -> None:
    size = buf.size
    if size <= POOLED_PAGES * PAGE and size % PAGE == 0:
        free = getattr(_local, "free", None)
        if free is None:
            free = _local.free = {}
        bufs = free.setdefault(size, [])
        if len(bufs) < max(8, _FREE_BYTES // size):
            bufs.append(buf)


async def read_at(file: File, offset: int, length: int) -> bytes:
    """``length`` bytes of ``file`` at ``offset`` (page-aligned for O_DIRECT).
    Raises HedgeIOError, ShortIOError."""
    buf = _take_buffer(length)
    try:
        await ops.read_exact(file, buf, offset, length)
        return bytes(buf.view[:length])
    finally:
        _give_back(buf)


def reader_fn(file: File):
    """An async ``read(offset, length) -> bytes`` over ``file``."""
    return functools.partial(read_at, file)


async def open_table(path: str, number: int, direct: bool, cache) -> tuple[TableReader, File]:
    """Open the table at ``path`` and read its footer, index, bloom filter
    and properties; return the reader and its file (the caller closes the
    file when the table is no longer used).  Raises CorruptionError,
    HedgeIOError."""
    file = await ops.open_file(path, os.O_RDONLY, direct=direct)
    try:
        size = file.size()
        return await TableReader.open(reader_fn(file), size, path, number, cache), file
    except BaseException:
        file.close()
        raise


class TableWriter:
    """Writes one table file from entries added in entry order.

    ``await add_many(entries)`` / ``await finish() -> FileMeta``; ``abandon()``
    closes and removes a half-written file.
    """

    def __init__(self, file: File, number: int, block_bytes: int, bloom_bits_per_key: int, compression: str):
        self.file = file
        self.number = number
        self._builder = TableBuilder(block_bytes=block_bytes, bloom_bits_per_key=bloom_bits_per_key,
                                     compression=compression)
        self.bytes_written = 0
        self._waiting: list[tuple[int, bytes]] = []    # finished chunks not written yet
        self._waiting_bytes = 0

    @classmethod
    async def create(cls, path: str, number: int, block_bytes: int, bloom_bits_per_key: int,
                     compression: str) -> "TableWriter":
        file = await ops.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        return cls(file, number, block_bytes, bloom_bits_per_key, compression)

    def add(self, key: bytes, seq: int, kind: int, value: bytes) -> None:
        self._builder.add(key, seq, kind, value)

    def estimated_file_size(self) -> int:
        return self._builder.estimated_file_size()

    @property
    def entry_count(self) -> int:
        return self._builder.entry_count

    async def write_ready(self) -> None:
        """Take the chunks the builder has finished; write what waits once
        WRITE_BATCH_BYTES do."""
        self._wait_for_write(self._builder.take_ready())
        if self._waiting_bytes >= WRITE_BATCH_BYTES:
            await self._write_waiting()

    def _wait_for_write(self, chunks: list[tuple[int, bytes]]) -> None:
        self._waiting += chunks
        self._waiting_bytes += sum(len(data) for _, data in chunks)

    async def _write_waiting(self) -> None:
        chunks, nbytes = self._waiting, self._waiting_bytes
        self._waiting, self._waiting_bytes = [], 0
        requests = write_requests(chunks)
        file = self.file
        for i in range(0, len(requests), WRITE_WINDOW):
            window = requests[i:i + WRITE_WINDOW]
            if len(window) == 1:
                await _write_run(file, *window[0])
            else:
                await gather(*(_write_run(file, offset, bufs) for offset, bufs in window))
        self.bytes_written += nbytes

    async def finish(self) -> FileMeta:
        """Write the rest, fdatasync, close; return the table's FileMeta."""
        chunks, props = self._builder.finish()
        self._wait_for_write(chunks)
        await self._write_waiting()
        await ops.fdatasync(self.file)
        self.file.close()
        return FileMeta(number=self.number, size=props.file_size, smallest_key=props.smallest_key,
                        largest_key=props.largest_key, smallest_seq=props.smallest_seq,
                        largest_seq=props.largest_seq, entries=props.entry_count, deletes=props.deletes)

    async def abandon(self) -> None:
        path = self.file.path
        self.file.close()
        try:
            await ops.unlink(path)
        except Exception:  # noqa: BLE001 - an orphan is removed on the next open
            pass


def write_requests(chunks: list[tuple[int, bytes]]) -> list[tuple[int, list[bytes]]]:
    """``chunks`` ((file offset, data), in file order) as write requests
    ``(offset, buffers)``: each a run of adjacent chunks, at most
    WRITE_BATCH_CHUNKS of them."""
    requests: list[tuple[int, list[bytes]]] = []
    end = -1
    bufs: list[bytes] = []
    for offset, data in chunks:
        if offset != end or len(bufs) == WRITE_BATCH_CHUNKS:
            bufs = [data]
            requests.append((offset, bufs))
        else:
            bufs.append(data)
        end = offset + len(data)
    return requests


async def _write_run(file: File, offset: int, bufs: list[bytes]) -> None:
    if len(bufs) == 1:
        await ops.write(file, bufs[0], offset)
    else:
        await ops.writev(file, bufs, offset)


async def write_table(path: str, number: int, entries: Iterable, block_bytes: int, bloom_bits_per_key: int,
                      compression: str, check: Callable[[], None] | None = None) -> tuple[FileMeta, int]:
    """Write ``entries`` ((key, seq, kind, value) in entry order) as table
    ``number`` at ``path``, fdatasync it; return its FileMeta and the bytes
    written.  ``check()``, when given, is called every WRITE_EVERY entries
    and may raise to abandon the table (a stop request).  On any failure the
    file is closed and removed, and the error propagates (HedgeIOError, or
    what ``check`` raised)."""
    writer = await TableWriter.create(path, number, block_bytes, bloom_bits_per_key, compression)
    try:
        n = 0
        for key, seq, kind, value in entries:
            writer.add(key, seq, kind, value)
            n += 1
            if n % WRITE_EVERY == 0:
                if check is not None:
                    check()
                await writer.write_ready()
        meta = await writer.finish()
    except BaseException:
        await writer.abandon()
        raise
    return meta, writer.bytes_written
