"""Opening a database directory: recover the last durable state.

``recover`` returns a ``Recovered``: everything the Engine constructor
takes (the version set with a new manifest, the open tables, a new empty
WAL) plus a summary.  It never touches an engine.

Steps (REQUIRES: the directory lock is held; runs on an executor):
  1. The version set: CURRENT -> manifest -> fold its edits (VersionSet.
     recover; a new database starts from the empty state, and so does a
     creation cut short before CURRENT was switched: only empty WALs and
     manifests; other database files without CURRENT are refused as
     corruption).
  2. Replay, in number order, every WAL numbered >= the state's wal_number
     into one memtable, under the wal_recovery mode: a torn final record is
     dropped (tolerate_tail), any damage refused (absolute), or replay stops
     at the first damage (point_in_time: later WALs are not replayed).
  3. Open every table of the version (a missing one is corruption).
  4. Write the recovered memtable as an L0 table, start a new WAL, and
     install a new manifest describing the whole state (CURRENT switched by
     rename, directory fsync'ed).
  5. Remove what the new state does not reference: older manifests, replayed
     WALs, orphan tables (written by a flush or compaction whose edit never
     became durable), temporary files.
On failure every file it opened is closed again and the error propagates
(CorruptionError, HedgeIOError).

``recover_read_only`` (``read_only=True``; REQUIRES: the lock is held
shared) runs steps 1 to 3 only and writes nothing: no table, no WAL, no
manifest, no removal.  The replayed memtable stays in memory as the
engine's memtable, and the version set has no manifest open for appends.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter

from hedge.errors import CorruptionError
from hedge.io import ops
from hedge.lsm import filenames
from hedge.lsm.batch import decode_many
from hedge.lsm.cache import BlockCache
from hedge.lsm.compaction.merge import flush_entries
from hedge.lsm.manifest import fsync_directory, read_file
from hedge.lsm.memtable import Entry, Memtable
from hedge.lsm.table import TableReader
from hedge.lsm.table_cache import TableCache
from hedge.lsm.table_io import write_table
from hedge.lsm.version_edit import VersionEdit
from hedge.lsm.version_set import VersionSet
from hedge.lsm.wal.format import HEADER_BYTES, RecordType
from hedge.lsm.wal.reader import EndReason, WalReader
from hedge.lsm.wal.writer import WalWriter
from hedge.options import Options

log = logging.getLogger("hedge")


@dataclass(frozen=True)
class Recovered:
    """The recovered state of a database, ready for the Engine constructor.

    ``versions`` has its new manifest installed and ``last_seq`` set;
    ``readers`` holds an open reader (through ``tables``) for every table of
    ``versions.current.version``; ``wal`` is the new, empty WAL named by the
    state's wal_number (read-only: None, and ``memtable`` holds the
    replayed writes).  ``summary``: replayed_wals, recovered_entries,
    dropped_tail_bytes, removed_files, last_seq."""

    versions: VersionSet
    tables: TableCache
    readers: dict[int, TableReader]
    wal: WalWriter | None           # None: read-only
    summary: dict
    memtable: Memtable | None = None    # read-only: the writes replayed from the WALs


async def recover(directory: str, options: Options, block_cache: BlockCache | None) -> Recovered:
    """Recover the database in ``directory`` (see the module docstring)."""
    names = sorted(os.listdir(directory))
    versions = await VersionSet.recover(directory, names)
    tables = TableCache(directory, options.direct_io, block_cache, options.max_open_files, options.inline_reads)
    wal = None
    try:
        mem, replayed, dropped = await _replay_wals(directory, names, versions, options)
        readers = await _open_tables(versions, tables)

        # 4. Recovered writes become an L0 table (the newest version of
        # each key: no snapshot outlives a close); a new WAL; a new manifest.
        edit = VersionEdit()
        if len(mem):
            number = versions.new_file_number()
            meta, _ = await write_table(tables.path(number), number, flush_entries(mem), options.block_bytes,
                                        options.bloom_bits_per_key, options.compression)
            edit.add_file(0, meta)
            readers[number] = await tables.open(number)
        wal_number = versions.new_file_number()
        wal = await WalWriter.create(filenames.join(directory, filenames.wal_name(wal_number)), wal_number)
        edit.wal_number = wal_number
        await versions.install_manifest(edit)

        removed = await _remove_obsolete(directory, versions)
    except BaseException:
        tables.close()
        if wal is not None:
            wal.close()
        versions.close()
        raise
    summary = {"replayed_wals": replayed, "recovered_entries": len(mem), "dropped_tail_bytes": dropped,
               "removed_files": removed, "last_seq": versions.last_seq}
    return Recovered(versions=versions, tables=tables, readers=readers, wal=wal, summary=summary)


async def recover_read_only(directory: str, options: Options, block_cache: BlockCache | None) -> Recovered:
    """Steps 1 to 3 of ``recover``, writing nothing (see the module
    docstring)."""
    names = sorted(os.listdir(directory))
    versions = await VersionSet.recover(directory, names)
    tables = TableCache(directory, options.direct_io, block_cache, options.max_open_files, options.inline_reads)
    try:
        mem, replayed, dropped = await _replay_wals(directory, names, versions, options)
        readers = await _open_tables(versions, tables)
    except BaseException:
        tables.close()
        versions.close()
        raise
    summary = {"replayed_wals": replayed, "recovered_entries": len(mem), "dropped_tail_bytes": dropped,
               "removed_files": [], "last_seq": versions.last_seq}
    return Recovered(versions=versions, tables=tables, readers=readers, wal=None, summary=summary, memtable=mem)


async def _replay_wals(directory: str, names: list[str], versions: VersionSet,
                       options: Options) -> tuple[Memtable, list[int], int]:
    """Step 2: the memtable of every WAL not flushed yet; sets
    ``versions.last_seq`` to the newest sequence seen.  Returns the memtable,
    the WAL numbers replayed and the bytes dropped as torn tails."""
    state = versions.current
    mem = Memtable()
    last_seq = state.last_seq
    replayed = []
    dropped = 0
    parsed = [p for p in map(filenames.parse, names) if p is not None]
    wal_numbers = sorted(number for kind, number in parsed if kind == "wal" and number >= state.wal_number)
    for number in wal_numbers:
        path = filenames.join(directory, filenames.wal_name(number))
        newest, reader = await replay_wal(path, number, options.wal_recovery, mem)
        last_seq = max(last_seq, newest)
        replayed.append(number)
        if reader.dropped_tail_bytes:
            dropped += reader.dropped_tail_bytes
            log.warning("hedge: %s: dropped %d bytes of a torn final record (%s)", path,
                        reader.dropped_tail_bytes, reader.damage)
        if reader.end_reason == EndReason.DAMAGED:
            log.warning("hedge: %s: point-in-time recovery stops at offset %d: %s", path,
                        reader.end_offset, reader.damage)
            break
    versions.last_seq = last_seq
    return mem, replayed, dropped


async def replay_wal(path: str, number: int, mode, mem: Memtable) -> tuple[int, WalReader]:
    """Add every write of WAL ``number`` at ``path`` to ``mem``, under the
    wal_recovery ``mode``; return the newest sequence number it holds (0:
    none) and its reader (how it ended, the torn tail it dropped).  Raises
    CorruptionError for damage the mode refuses, HedgeIOError."""
    reader = WalReader(await read_file(path), number, path, mode)
    entries = list(wal_writes(reader, path))
    mem.add_many(entries)
    return max((entry[1] for entry in entries), default=0), reader


async def read_wal_entries(path: str, number: int) -> tuple[list[Entry], int]:
    """Every write of WAL ``number`` at ``path`` as entries in entry order
    (key ascending, seq descending: a memtable replayed from it yields the
    same), and the newest sequence number (0: none).  Any damage is refused
    (the ``absolute`` mode).  A flush worker's replay: one sort instead of
    a memtable insert per write (docs/design.md, "Keeping up with the
    writers").  REQUIRES: the WAL's writes come in ascending sequence
    order, as the engine appends them."""
    entries = list(wal_writes(WalReader(await read_file(path), number, path, "absolute"), path))
    last_seq = entries[-1][1] if entries else 0
    # Newest first, then a stable sort by key: seq descending within a key.
    entries.reverse()
    entries.sort(key=itemgetter(0))
    return entries, last_seq


def wal_writes(reader: WalReader, path: str) -> Iterator[Entry]:
    """Every write of the records ``reader`` yields, as an entry ``(key,
    seq, kind, value)``, in WAL order.  Raises CorruptionError for a record
    that is not a batch record or a batch that does not decode, after the
    writes before it; and whatever iterating ``reader`` raises."""
    for record in reader:
        if record.record_type != RecordType.BATCHES:
            raise CorruptionError(path, record.offset, f"unexpected record type {record.record_type} in a WAL")
        for first_seq, batch_ops in decode_many(record.payload, file=path, offset=record.offset + HEADER_BYTES):
            seq = first_seq
            for kind, key, value in batch_ops:
                yield key, seq, kind, value
                seq += 1


async def _open_tables(versions: VersionSet, tables: TableCache) -> dict[int, TableReader]:
    """Step 3: a reader for every table of the version."""
    readers = {}
    for _level, meta in versions.current.version.files():
        path = tables.path(meta.number)
        if not os.path.exists(path):
            raise CorruptionError(path, None, "a table listed in the manifest is missing")
        readers[meta.number] = await tables.open(meta.number)
    return readers


async def _remove_obsolete(directory: str, versions: VersionSet) -> list[str]:
    """Step 5: remove every file the new state does not reference; return
    their names."""
    state = versions.current
    live = state.version.all_file_numbers()
    removed = []
    for name in os.listdir(directory):
        p = filenames.parse(name)
        obsolete = name == filenames.CURRENT_TMP
        if p is not None:
            kind, number = p
            obsolete = ((kind == "manifest" and number != versions.manifest_number) or
                        (kind == "wal" and number < state.wal_number) or
                        (kind == "sst" and number not in live))
        if obsolete:
            await ops.unlink(filenames.join(directory, name))
            removed.append(name)
    if removed:
        await fsync_directory(directory)
    return removed
