"""``hedge.repair(path)``: rebuild a closed database's manifest from the
tables and WALs present, as LevelDB's RepairDB does, when the manifest or
CURRENT is lost or damaged, or a table is.

What it does, in this order (the directory lock held exclusively all along,
so it fails with LockError while the database is open anywhere):
  1. Verify every table file (``NNNNNN.sst``) through the ring: footer,
     index, bloom filter and properties, then every block's checksum, the
     entry order and the entry count.  A table that fails is *moved aside*
     into ``lost/`` in the database directory, never deleted.
  2. Read every WAL (``NNNNNN.wal``) in number order, point-in-time: the
     records before a damaged one are kept, the rest of that WAL is
     reported and dropped.  Their writes become one new table.  (Chosen
     over leaving the WALs for the next open: without a manifest nothing
     says which WALs a flush already covered, and the merge below settles
     that: a write found in a table and in a WAL is kept once.)
  3. Merge every good table and the WAL table into new tables (the
     compaction merge, ``merge_tables``): an identical (key, seq) in several
     inputs (a compaction's output beside its inputs, a flushed WAL beside
     its table) is kept once; every key keeps its newest version, and a key
     whose newest version is a tombstone is dropped (nothing older can
     exist below).  The outputs form one sorted run of disjoint tables at
     the bottom level, which keeps every invariant of a Version whatever
     the inputs' key and sequence ranges were (tables put in L0 as they are
     would not: a point lookup there trusts the first table holding a key,
     which is only right when the tables' sequence ranges are in order).
     Every entry is rewritten once, as by a full compaction.
  4. Move the damaged tables into ``lost/``, then install a fresh manifest
     (write, fdatasync, CURRENT switched by rename, directory fsync'ed)
     with ``last_seq`` the largest sequence number seen in any input, a
     WAL number and a next file number above every file number present
     (``lost/`` included), so no WAL is replayed twice and no number is
     reused.
  5. Remove what the new manifest does not name: the merged input tables,
     the WALs, the old manifests, CURRENT.tmp.  (A crash before this step
     leaves them as orphans, which the next open removes.)
Before step 4 nothing existing is changed: a failure removes the new tables
and raises.  Entries of a damaged table are lost (a tombstone in it no
longer hides older versions in other tables: those come back).

Threads: ``repair`` blocks the calling thread while one executor of its
own (a thread and a ring of the chosen I/O method) runs the whole repair,
``_Repair``, which belongs to that executor; no pools, no engine.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Any

from hedge.directory import database_files, lock
from hedge.errors import CorruptionError, HedgeError, HedgeIOError
from hedge.exec import Executor
from hedge.io import ops
from hedge.io.backend import resolve_method
from hedge.lsm import filenames
from hedge.lsm.compaction.merge import flush_entries
from hedge.lsm.compaction.runner import merge_tables, unlink_quietly
from hedge.lsm.keys import MAX_SEQ
from hedge.lsm.manifest import ManifestLog, fsync_directory, read_file
from hedge.lsm.memtable import Memtable
from hedge.lsm.recovery import wal_writes
from hedge.lsm.table import TableReader
from hedge.lsm.table_cache import TableCache
from hedge.lsm.table_io import write_table
from hedge.lsm.version import Version, VersionSetState
from hedge.lsm.version_edit import NUM_LEVELS
from hedge.lsm.wal.reader import Recovery, WalReader
from hedge.options import Options

LOST = "lost"       # the directory, inside the database's, that damaged tables are moved to


@dataclass
class RepairReport:
    """What ``repair`` found and did.

    ``tables_kept``: the tables verified and merged; ``tables_moved``:
    (table, why) for each table moved into ``lost/``; ``wals``: the WALs
    read; ``wal_entries``: the writes recovered from them; ``wal_damage``:
    one line per WAL whose damaged end was dropped; ``entries``: the entries
    of the rebuilt database; ``tables_written``: its tables; ``manifest``:
    its manifest; ``last_seq``: its last sequence number."""

    directory: str
    tables_kept: list[str] = field(default_factory=list)
    tables_moved: list[tuple[str, str]] = field(default_factory=list)
    wals: list[str] = field(default_factory=list)
    wal_entries: int = 0
    wal_damage: list[str] = field(default_factory=list)
    entries: int = 0
    tables_written: list[str] = field(default_factory=list)
    manifest: str = ""
    last_seq: int = 0

    def summary(self) -> str:
        """One line: what was kept, moved aside and rebuilt."""
        moved = (f"; moved {len(self.tables_moved)} damaged to {LOST}/: "
                 f"{', '.join(name for name, _ in self.tables_moved)}" if self.tables_moved else "")
        return (f"repaired: {len(self.tables_kept)} tables kept{moved}; {self.wal_entries} writes recovered "
                f"from {len(self.wals)} WALs; {self.entries} entries in {len(self.tables_written)} tables, "
                f"manifest {self.manifest}, last seq {self.last_seq}")


def repair(path: str | os.PathLike[str], **options: Any) -> RepairReport:
    """Rebuild the manifest of the closed database in directory ``path``
    from the tables and WALs present (see the module docstring).  Options
    are ``hedge.open``'s keywords; those that matter here are io_method,
    ring_entries, table_bytes, block_bytes, bloom_bits_per_key and
    compression (how the tables it writes are stored).  Returns
    a RepairReport.

    Raises HedgeError when ``path`` holds no hedge database (no CURRENT,
    manifest, WAL or table; nothing is touched then), LockError while the
    database is open (in this process or another), HedgeIOError for an I/O
    failure, TypeError/ValueError for a bad option.
    """
    opts = Options(create=False, **options).validate()
    directory = os.fspath(path)
    names = database_files(directory)
    if not any(name not in (filenames.LOCK, filenames.CURRENT_TMP) for name in names):
        raise HedgeError(f"no hedge database at {directory} (no CURRENT, manifest, WAL or table file)")
    held = lock(directory)
    try:
        executor = Executor(io_method=resolve_method(opts.io_method), ring_entries=opts.ring_entries).start()
        try:
            return executor.run_sync(_Repair(directory, opts).run())
        finally:
            executor.close()
    finally:
        held.close()


class _Repair:
    """One repair run, on the executor.  REQUIRES: the lock is held."""

    def __init__(self, directory: str, options: Options):
        self.directory = directory
        self.options = options
        self.report = RepairReport(directory)
        self.tables = TableCache(directory, False, None, options.max_open_files)
        self.next_number = 1
        self.last_seq = 0

    async def new_number(self) -> int:
        number = self.next_number
        self.next_number += 1
        return number

    async def run(self) -> RepairReport:
        report = self.report
        parsed = {name: p for name in os.listdir(self.directory) if (p := filenames.parse(name)) is not None}
        self.next_number = max([p[1] for p in parsed.values()] + self._lost_numbers(), default=0) + 1
        table_numbers = sorted((p[1] for p in parsed.values() if p[0] == "sst"), reverse=True)
        wal_numbers = sorted(p[1] for p in parsed.values() if p[0] == "wal")
        made: list[int] = []
        try:
            readers, damaged = await self._verify_tables(table_numbers)
            wal_table = await self._wal_table(wal_numbers)
            if wal_table is not None:
                made.append(wal_table)
                readers.append(await self.tables.open(wal_table))
            outputs, _ = await merge_tables(
                readers, directory=self.directory, bottommost=True, oldest_snapshot_seq=self.last_seq,
                max_output_bytes=self.options.table_bytes, block_bytes=self.options.block_bytes,
                bloom_bits_per_key=self.options.bloom_bits_per_key, compression=self.options.compression,
                new_number=self.new_number)
            made += [meta.number for meta in outputs]
        except BaseException:
            self.tables.close()
            for number in made:
                await unlink_quietly(self.tables.path(number))
            raise
        self.tables.close()
        for number, why in damaged:
            await self._move_aside(number, why)
        levels: list[tuple] = [()] * NUM_LEVELS
        levels[NUM_LEVELS - 1] = tuple(outputs)
        wal_number = await self.new_number()
        manifest_number = await self.new_number()
        state = VersionSetState(Version(levels), wal_number=wal_number, next_file_number=manifest_number + 1,
                                last_seq=self.last_seq)
        manifest = await ManifestLog.install(self.directory, manifest_number, state)
        manifest.close()
        report.manifest = filenames.manifest_name(manifest_number)
        report.tables_written = [filenames.table_name(meta.number) for meta in outputs]
        report.entries = sum(meta.entries for meta in outputs)
        report.last_seq = self.last_seq
        await self._remove_replaced(manifest_number, {meta.number for meta in outputs})
        return report

    def _lost_numbers(self) -> list[int]:
        """The numbers of the tables earlier repairs moved into lost/."""
        try:
            names = os.listdir(filenames.join(self.directory, LOST))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise HedgeIOError(e.errno or errno.EIO, "listdir", filenames.join(self.directory, LOST)) from None
        # Named NNNNNN.sst, or NNNNNN.sst.N when that name was taken.
        return [p[1] for name in names if (p := filenames.parse(name.split(".", 1)[0] + ".sst")) is not None]

    async def _verify_tables(self, numbers: list[int]) -> tuple[list[TableReader], list[tuple[int, str]]]:
        """Open and read every table in ``numbers``; the readers of the
        sound ones (in the order given) and (number, why) of the damaged.
        Raises HedgeIOError for a failure that is not damage."""
        readers: list[TableReader] = []
        damaged: list[tuple[int, str]] = []
        for number in numbers:
            name = filenames.table_name(number)
            try:
                reader = await self.tables.open(number)
                await _verify(reader)
            except CorruptionError as e:
                self.tables.discard(number)
                damaged.append((number, str(e)))
                self.report.tables_moved.append((name, str(e)))
                continue
            readers.append(reader)
            self.report.tables_kept.append(name)
            self.last_seq = max(self.last_seq, reader.properties.largest_seq)
        return readers, damaged

    async def _wal_table(self, numbers: list[int]) -> int | None:
        """The writes of the WALs ``numbers`` (in order) as one new table;
        its number, or None when they hold none."""
        mem = Memtable()
        for number in numbers:
            path = filenames.join(self.directory, filenames.wal_name(number))
            self.report.wals.append(filenames.wal_name(number))
            reader = WalReader(await read_file(path), number, path, Recovery.POINT_IN_TIME)
            try:
                for key, seq, kind, value in wal_writes(reader, path):
                    newest = mem.get(key, MAX_SEQ)
                    if newest is not None and newest[0] >= seq:
                        continue        # a write another WAL already gave
                    mem.add(key, seq, kind, value)
                    self.last_seq = max(self.last_seq, seq)
            except CorruptionError as e:
                self.report.wal_damage.append(f"{filenames.wal_name(number)}: {e}; the rest of it dropped")
                continue
            if reader.damage is not None:
                self.report.wal_damage.append(f"{filenames.wal_name(number)}: {reader.damage}; "
                                              f"{reader.dropped_tail_bytes} bytes dropped")
        self.report.wal_entries = len(mem)
        if not len(mem):
            return None
        number = await self.new_number()
        await write_table(self.tables.path(number), number, flush_entries(mem), self.options.block_bytes,
                          self.options.bloom_bits_per_key, self.options.compression)
        return number

    async def _move_aside(self, number: int, why: str) -> None:
        """Move damaged table ``number`` into lost/ (made when missing)."""
        lost = filenames.join(self.directory, LOST)
        try:
            os.makedirs(lost, exist_ok=True)
        except OSError as e:
            raise HedgeIOError(e.errno or errno.EIO, "mkdir", lost) from None
        name = filenames.table_name(number)
        target = filenames.join(lost, name)
        suffix = 1
        while os.path.exists(target):
            target = filenames.join(lost, f"{name}.{suffix}")
            suffix += 1
        await ops.rename(filenames.join(self.directory, name), target)
        await fsync_directory(lost)

    async def _remove_replaced(self, manifest_number: int, live: set[int]) -> None:
        """Remove every database file the new manifest does not name."""
        removed = False
        for name in os.listdir(self.directory):
            p = filenames.parse(name)
            if name == filenames.CURRENT_TMP or (p is not None and not (
                    (p[0] == "manifest" and p[1] == manifest_number) or (p[0] == "sst" and p[1] in live))):
                await ops.unlink(filenames.join(self.directory, name))
                removed = True
        if removed:
            await fsync_directory(self.directory)


async def _verify(reader: TableReader) -> None:
    """Read every block of the table behind ``reader``: checksums, entry
    order, entry count, key and sequence ranges against its properties.
    Raises CorruptionError."""
    props = reader.properties
    previous = None
    count = 0
    for offset, length in reader.block_ranges():
        block = await reader.read_block(offset, length, fill_cache=False)
        for key, seq, _kind, _value in block.iter_from():
            order = (key, -seq)
            if previous is not None and order <= previous:
                raise CorruptionError(reader.file_name, offset, "entries out of order")
            if not (props.smallest_key <= key <= props.largest_key
                    and props.smallest_seq <= seq <= props.largest_seq):
                raise CorruptionError(reader.file_name, offset, "an entry outside the table's key or sequence range")
            previous = order
            count += 1
    if count != props.entry_count:
        raise CorruptionError(reader.file_name, None,
                              f"the table holds {count} entries, its properties say {props.entry_count}")
