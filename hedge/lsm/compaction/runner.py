"""The compaction runner: merge input tables into output tables through the
ring.  One implementation, called by the engine in its own background thread
and by the compaction worker process (hedge/lsm/compaction/worker.py).

``merge_tables`` reads every input a block at a time with a ``TableCursor``
(no cache fill), merges the blocks with ``merge_runs`` into chunks cut at
user-key boundaries, hands each chunk to the pure ``compact_entries`` and
writes the survivors into tables of about ``max_output_bytes`` each (the
size is looked at every ``SIZE_CHECK_KEYS`` keys); a user key never spans
two outputs.  Each output
is fdatasync'ed before it is returned.  On any failure the half-written
table and the finished outputs are removed, and the error propagates.

REQUIRES: runs on an executor (the caller's); the input readers stay open
until it returns.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from hedge.io import ops
from hedge.lsm import filenames
from hedge.lsm.amerge import TableCursor, merge_runs
from hedge.lsm.compaction.merge import compact_entries
from hedge.lsm.table_io import TableWriter
from hedge.lsm.version_edit import FileMeta

COMPACTION_CHUNK = 512      # merged entries handed to compact_entries at a time
SIZE_CHECK_KEYS = 32        # an output's size is checked once per this many keys


async def merge_tables(readers: list, *, directory: str, bottommost: bool, oldest_snapshot_seq: int,
                       max_output_bytes: int, block_bytes: int, bloom_bits_per_key: int, compression: str,
                       new_number: Callable[[], Awaitable[int]],
                       check: Callable[[], None] | None = None) -> tuple[list[FileMeta], int]:
    """Merge the tables of ``readers`` (one source each, any order) into new
    tables in ``directory``; return their FileMeta list (in key order) and
    the bytes written.  ``new_number()`` gives the file number of each output.
    ``check()``, when given, is called before each chunk of COMPACTION_CHUNK
    entries is written and may raise to abandon the merge (a stop request).
    Raises what the reads, the writes, ``new_number`` or ``check`` raise
    (HedgeIOError, CorruptionError, ...), after removing every output."""
    cursors = [TableCursor([reader], None, None, fill_cache=False) for reader in readers]
    outputs: list[FileMeta] = []
    writer: TableWriter | None = None
    last_key = None
    written = 0
    countdown = SIZE_CHECK_KEYS

    async def emit(chunk) -> None:
        nonlocal writer, last_key, written, countdown
        if check is not None:
            check()
        for key, seq, kind, value in compact_entries(chunk, bottommost, oldest_snapshot_seq):
            if writer is not None and key != last_key:
                countdown -= 1
                if countdown <= 0:
                    countdown = SIZE_CHECK_KEYS
                    if writer.estimated_file_size() >= max_output_bytes:
                        outputs.append(await writer.finish())
                        written += writer.bytes_written
                        writer = None
            if writer is None:
                number = await new_number()
                writer = await TableWriter.create(filenames.join(directory, filenames.table_name(number)),
                                                  number, block_bytes, bloom_bits_per_key, compression)
            writer.add(key, seq, kind, value)
            last_key = key
        if writer is not None:
            await writer.write_ready()

    try:
        async for chunk in merge_runs(cursors, COMPACTION_CHUNK):
            await emit(chunk)
        if writer is not None:
            outputs.append(await writer.finish())
            written += writer.bytes_written
            writer = None
    except BaseException:
        if writer is not None:
            await writer.abandon()
        for meta in outputs:
            await unlink_quietly(filenames.join(directory, filenames.table_name(meta.number)))
        raise
    return outputs, written


async def unlink_quietly(path: str) -> None:
    """Remove ``path``; a failure (absent file included) is ignored: an
    orphan table is removed at the next open."""
    try:
        await ops.unlink(path)
    except Exception:  # noqa: BLE001 - see the docstring
        pass
