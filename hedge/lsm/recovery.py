"""Opening a database directory: recover the last durable state.

Steps (REQUIRES: the directory lock is held; runs on an executor):
  1. CURRENT -> manifest -> fold its edits into a VersionSetState (a new
     database starts from the empty state, and so does a creation cut short
     before CURRENT was switched: only empty WALs and manifests; other
     database files without CURRENT are refused as corruption).
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
"""
from __future__ import annotations

import logging
import os

from hedge.errors import CorruptionError
from hedge.lsm import filenames
from hedge.lsm.batch import decode_many
from hedge.lsm.manifest import ManifestLog, fsync_directory, load_state, read_current, read_file
from hedge.lsm.memtable import Memtable
from hedge.lsm.table_io import open_table
from hedge.lsm.version import Version, VersionSetState
from hedge.lsm.version_edit import VersionEdit
from hedge.lsm.wal.format import HEADER_BYTES, RecordType
from hedge.lsm.wal.reader import EndReason, WalReader
from hedge.lsm.wal.writer import WalWriter
from hedge.io import ops

log = logging.getLogger("hedge")


def _may_hold_data(directory: str, parsed: dict) -> bool:
    """Whether database files without CURRENT could hold writes: a table or
    a non-empty WAL.  A creation cut short (before CURRENT was switched)
    leaves only empty WALs and manifests; it starts over."""
    for name, p in parsed.items():
        if p is not None and (p[0] == "sst" or p[0] == "wal" and os.path.getsize(filenames.join(directory, name))):
            return True
    return False


async def recover(engine) -> dict:
    """Bring ``engine`` to the recovered state; return a summary dict."""
    directory = engine.directory
    options = engine.options
    names = sorted(os.listdir(directory))
    parsed = {name: filenames.parse(name) for name in names}
    current = await read_current(directory)
    if current is None:
        if _may_hold_data(directory, parsed):
            raise CorruptionError(directory, None, "the directory holds database files but no CURRENT file")
        state = VersionSetState(Version())
    else:
        state, _ = await load_state(directory, current)
    numbers = [p[1] for p in parsed.values() if p is not None]
    engine.set_next_file(max([state.next_file_number] + [n + 1 for n in numbers]))

    # 2. Replay the WALs that are not flushed yet.
    mem = Memtable()
    last_seq = state.last_seq
    replayed = []
    dropped = 0
    wal_numbers = sorted(p[1] for p in parsed.values() if p is not None and p[0] == "wal" and p[1] >= state.wal_number)
    for number in wal_numbers:
        path = engine.path(filenames.wal_name(number))
        data = await read_file(path)
        reader = WalReader(data, number, path, options.wal_recovery)
        for record in reader:
            if record.record_type != RecordType.BATCHES:
                raise CorruptionError(path, record.offset, f"unexpected record type {record.record_type} in a WAL")
            for first_seq, batch_ops in decode_many(record.payload, file=path, offset=record.offset + HEADER_BYTES):
                seq = first_seq
                for kind, key, value in batch_ops:
                    mem.add(key, seq, kind, value)
                    seq += 1
                last_seq = max(last_seq, seq - 1)
        replayed.append(number)
        if reader.dropped_tail_bytes:
            dropped += reader.dropped_tail_bytes
            log.warning("hedge: %s: dropped %d bytes of a torn final record (%s)", path,
                        reader.dropped_tail_bytes, reader.damage)
        if reader.end_reason == EndReason.DAMAGED:
            log.warning("hedge: %s: point-in-time recovery stops at offset %d: %s", path,
                        reader.end_offset, reader.damage)
            break

    # 3. Open the tables of the version.
    tables, files = {}, {}
    try:
        for _level, meta in state.version.files():
            path = engine.path(filenames.table_name(meta.number))
            if not os.path.exists(path):
                raise CorruptionError(path, None, "a table listed in the manifest is missing")
            tables[meta.number], files[meta.number] = await open_table(path, meta.number, options.direct_io,
                                                                      engine.cache)

        # 4. Recovered writes become an L0 table; a new WAL; a new manifest.
        edit = VersionEdit()
        if len(mem):
            meta, _ = await engine.write_table(mem.entries())
            edit.add_file(0, meta)
            path = engine.path(filenames.table_name(meta.number))
            tables[meta.number], files[meta.number] = await open_table(path, meta.number, options.direct_io,
                                                                      engine.cache)
        wal_number = engine.new_file_number()
        wal = await WalWriter.create(engine.path(filenames.wal_name(wal_number)), wal_number)
        manifest_number = engine.new_file_number()
        edit.wal_number = wal_number
        edit.next_file_number = engine.new_file_number()
        edit.last_seq = last_seq
        state = state.apply(edit)
        manifest = await ManifestLog.install(directory, manifest_number, state)
    except BaseException:
        for file in files.values():
            file.close()
        raise
    engine.install_initial(state, tables, files, manifest, wal, last_seq)

    # 5. Clean up.
    live = state.version.all_file_numbers()
    removed = []
    for name in os.listdir(directory):
        p = filenames.parse(name)
        obsolete = name == filenames.CURRENT_TMP
        if p is not None:
            kind, number = p
            obsolete = ((kind == "manifest" and number != manifest_number) or
                        (kind == "wal" and number < wal_number) or
                        (kind == "sst" and number not in live))
        if obsolete:
            await ops.unlink(engine.path(name))
            removed.append(name)
    if removed:
        await fsync_directory(directory)
    return {"replayed_wals": replayed, "recovered_entries": len(mem), "dropped_tail_bytes": dropped,
            "removed_files": removed, "last_seq": last_seq}
