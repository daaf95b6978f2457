"""Engine: the LSM tree of one open database.

State readers see is one immutable ``SuperVersion`` (memtable, immutable
memtables, version, open table readers), swapped as a whole under
``_sv_lock`` by whoever changes it, always built from the current one; a reader takes
the visible sequence number FIRST and the super version SECOND, so every
entry at or below its snapshot is in a memtable or table of what it holds.

Who runs what:
  - foreground executors: get/scan/multi_get (any of them, concurrently) and
    writes, which go through the group-commit queue (hedge/lsm/commit.py):
    only the current leader writes the WAL, inserts into the memtable,
    switches memtables and publishes sequence numbers;
  - one maintenance task on a background executor: flushes immutable
    memtables and runs compactions, one job at a time; with the compaction
    worker process (Options.compaction_process) the compaction is a task of
    its own on the same executor (one at a time) and flushes go on while the
    worker merges.  These are the only writers of the manifest and the
    version, and their installs take turns (``_log_and_apply``).
Tables dropped from the version are unlinked once the edit is durable; a
reader still holding an older super version keeps their descriptors (and so
their data) alive until it lets go of it.

Errors: a failed WAL write/sync, flush, compaction or manifest append
becomes the background error: recorded once, every later write raises
BackgroundError from it until the database is reopened.  Nothing is retried.
"""
from __future__ import annotations

import itertools
import logging
import threading

from hedge.errors import BackgroundError, Cancelled, ClosedError
from hedge.exec import gather, spawn
from hedge.exec.signal import Signal
from hedge.io import ops
from hedge.lsm import filenames
from hedge.lsm.amerge import ListCursor, TableCursor, visible_merge
from hedge.lsm.batch import WriteBatch
from hedge.lsm.cache import BlockCache
from hedge.lsm.commit import CommitQueue, Writer
from hedge.lsm.compaction import policy
from hedge.lsm.compaction.runner import merge_tables, unlink_quietly
from hedge.lsm.compaction.worker import CompactionJob, CompactionWorker, WorkerConfig, reserve_count
from hedge.lsm.iterators import merge
from hedge.lsm.keys import Kind, check_key
from hedge.lsm.manifest import ManifestLog, fsync_directory
from hedge.lsm.memtable import Memtable
from hedge.lsm.table_io import TableWriter
from hedge.lsm.version import VersionSetState
from hedge.lsm.version_edit import NUM_LEVELS, VersionEdit
from hedge.lsm.wal.writer import WalWriter
from hedge.options import Options

log = logging.getLogger("hedge")

DELETE = Kind.DELETE
MAX_IMMUTABLES = 2          # writers wait when this many memtables await flush
SLOWDOWN_SECONDS = 0.001    # delay per write group while L0 is backing up


class SuperVersion:
    """What a reader needs, frozen: ``imms`` are (memtable, wal_number)
    pairs, newest first; ``tables`` maps file number -> TableReader for every
    table of ``version``."""

    __slots__ = ("mem", "mem_wal", "imms", "version", "tables")

    def __init__(self, mem, mem_wal, imms, version, tables):
        self.mem = mem
        self.mem_wal = mem_wal
        self.imms = imms
        self.version = version
        self.tables = tables


class Engine:
    def __init__(self, directory: str, options: Options, pools, cache: BlockCache | None):
        self.directory = directory
        self.options = options
        self.pools = pools
        self.cache = cache
        self._sv: SuperVersion | None = None
        # Serializes super-version swaps: the commit leader (a foreground
        # thread) and the maintenance task (a background thread) both
        # replace it, each building on the current one.
        self._sv_lock = threading.Lock()
        self._state: VersionSetState | None = None
        self._manifest: ManifestLog | None = None
        self._wal: WalWriter | None = None
        self._last_seq = 0
        self._visible_seq = 0
        self._file_lock = threading.Lock()
        self._next_file = 1
        self.table_files: dict = {}
        self._commit = CommitQueue(self._commit_group)
        self._changed = Signal()     # the super version, the background error or idleness changed
        self._work = Signal()        # maintenance has something to do
        self._bg_error: BaseException | None = None
        self._closing = False
        self._idle_epoch = 0            # bumped each time maintenance finds nothing to do
        self._worker: CompactionWorker | None = None
        self._compacting = None         # the compaction Task running beside flushes (worker process)
        self._installing = False        # a _log_and_apply is between its first and last await
        self._snapshots: dict[int, int] = {}
        self._snapshot_ids = itertools.count(1)
        self._snapshot_lock = threading.Lock()
        self.counters = {
            "wal_bytes": 0, "wal_syncs": 0, "flushes": 0, "flush_bytes": 0,
            "compactions": 0, "trivial_moves": 0, "compaction_bytes_read": 0,
            "compaction_bytes_written": 0, "stall_slowdowns": 0, "stall_stops": 0,
        }

    # -- set-up (called by recovery) -------------------------------------------
    def install_initial(self, state: VersionSetState, tables: dict, files: dict, manifest: ManifestLog,
                        wal: WalWriter, last_seq: int) -> None:
        self._state = state
        self.table_files = files
        self._manifest = manifest
        self._wal = wal
        self._last_seq = self._visible_seq = last_seq
        self._sv = SuperVersion(Memtable(), wal.number, (), state.version, tables)

    def new_file_number(self) -> int:
        with self._file_lock:
            n = self._next_file
            self._next_file += 1
            return n

    def path(self, name: str) -> str:
        return filenames.join(self.directory, name)

    # -- writes (foreground) ----------------------------------------------------
    def check_writable(self) -> None:
        if self._closing:
            raise ClosedError("the database is closed")
        if self._bg_error is not None:
            raise BackgroundError(f"the database refuses writes after a background error: "
                                  f"{self._bg_error}") from self._bg_error

    async def write(self, batch: WriteBatch, sync: bool = False) -> None:
        batch.check_size()
        self.check_writable()
        if len(batch) == 0:
            return
        await self._commit.submit(Writer(batch, sync))

    async def put(self, key, value, sync: bool = False) -> None:
        batch = WriteBatch()
        batch.put(key, value)
        await self.write(batch, sync)

    async def remove(self, key, sync: bool = False) -> None:
        batch = WriteBatch()
        batch.remove(key)
        await self.write(batch, sync)

    async def _commit_group(self, group: list[Writer]) -> None:
        """The leader's job (see commit.py).  REQUIRES: the only caller."""
        self.check_writable()
        rotate = any(w.rotate for w in group)
        await self._make_room(rotate)
        writers = [w for w in group if len(w.batch)]
        if not writers:
            return
        seq = self._last_seq + 1
        payloads = []
        for w in writers:
            w.first_seq = seq
            payloads.append(w.batch.encode(seq))
            seq += len(w.batch)
        payload = payloads[0] if len(payloads) == 1 else b"".join(payloads)
        wal = self._wal
        try:
            self.counters["wal_bytes"] += await wal.append(payload)
            if any(w.sync for w in writers):
                await wal.sync()
                self.counters["wal_syncs"] += 1
        except Cancelled:
            raise
        except BaseException as e:  # noqa: BLE001
            self._set_bg_error(e, "WAL write")
            raise
        add = self._sv.mem.add
        for w in writers:
            for key, s, kind, value in w.batch.entries(w.first_seq):
                add(key, s, kind, value)
        self._last_seq = seq - 1
        self._visible_seq = seq - 1

    async def _make_room(self, force_rotate: bool) -> None:
        """Switch memtables when full (or asked), and hold writers back while
        flushes and L0 compactions fall behind."""
        opts = self.options
        sv = self._sv
        stall = policy.write_stall(sv.version, opts)
        if stall == policy.Stall.SLOWDOWN:
            self.counters["stall_slowdowns"] += 1
            await ops.sleep(SLOWDOWN_SECONDS)
        elif stall == policy.Stall.STOP:
            self.counters["stall_stops"] += 1
            await self._changed.wait_for(lambda: self._bg_error is not None or self._closing or
                                         policy.write_stall(self._sv.version, opts) != policy.Stall.STOP)
            self.check_writable()
        mem = self._sv.mem
        if (force_rotate and len(mem)) or mem.approximate_bytes() >= opts.memtable_bytes:
            if len(self._sv.imms) >= MAX_IMMUTABLES:
                self.counters["stall_stops"] += 1
                await self._changed.wait_for(lambda: self._bg_error is not None or self._closing or
                                             len(self._sv.imms) < MAX_IMMUTABLES)
                self.check_writable()
            await self._switch_memtable()

    async def _switch_memtable(self) -> None:
        number = self.new_file_number()
        try:
            await self._wal.sync()   # else a sync write to the new WAL could outlive earlier writes in it
            wal = await WalWriter.create(self.path(filenames.wal_name(number)), number)
            await fsync_directory(self.directory)
        except Cancelled:
            raise
        except BaseException as e:  # noqa: BLE001
            self._set_bg_error(e, "WAL switch")
            raise
        old = self._wal
        self._wal = wal
        old.close()
        with self._sv_lock:
            sv = self._sv
            self._sv = SuperVersion(Memtable(), number, ((sv.mem, sv.mem_wal),) + sv.imms, sv.version, sv.tables)
        self._changed.notify()
        self._work.notify()

    # -- reads (foreground) -----------------------------------------------------
    def check_open(self) -> None:
        if self._closing:
            raise ClosedError("the database is closed")

    async def get(self, key) -> bytes | None:
        key = check_key(key)
        self.check_open()
        snap = self._visible_seq
        sv = self._sv
        found = sv.mem.get(key, snap)
        if found is None:
            for mem, _ in sv.imms:
                found = mem.get(key, snap)
                if found is not None:
                    break
            else:
                tables = sv.tables
                for _level, meta in sv.version.files_for_key(key):
                    found = await tables[meta.number].get(key, snap)
                    if found is not None:
                        break
        if found is None or found[1] == DELETE:
            return None
        return found[2]

    async def multi_get(self, keys) -> list:
        keys = [check_key(k) for k in keys]
        return await gather(*(self.get(k) for k in keys))

    async def scan(self, start=None, end=None):
        """Async iterator of (key, value), start inclusive, end exclusive,
        over the snapshot taken when iteration begins."""
        if start is not None:
            start = check_key(start)
        if end is not None:
            end = check_key(end)
        self.check_open()
        snap = self._visible_seq
        sv = self._sv
        sid = next(self._snapshot_ids)
        with self._snapshot_lock:
            self._snapshots[sid] = snap
        try:
            if start is not None and end is not None and start >= end:
                return
            mems = [m for m in (sv.mem, *(m for m, _ in sv.imms)) if len(m)]
            sources = []
            if mems:
                sources.append(ListCursor(merge([m.iter_from(start, end) for m in mems])))
            version = sv.version
            tables = sv.tables
            # overlapping() is inclusive of `end`; an exact hit only costs a read.
            for meta in version.overlapping(0, start, end):
                sources.append(TableCursor([tables[meta.number]], start, end))
            for level in range(1, NUM_LEVELS):
                files = version.overlapping(level, start, end)
                if files:
                    sources.append(TableCursor([tables[m.number] for m in files], start, end))
            if not sources:
                return
            async for item in visible_merge(sources, snap):
                if self._closing:
                    raise ClosedError("the database was closed during the scan")
                yield item
        finally:
            with self._snapshot_lock:
                self._snapshots.pop(sid, None)

    def _oldest_snapshot(self) -> int:
        with self._snapshot_lock:
            if self._snapshots:
                return min(self._snapshots.values())
        return self._visible_seq

    # -- flush and compaction (background) --------------------------------------
    def _set_bg_error(self, error: BaseException, what: str) -> None:
        if self._bg_error is None:
            self._bg_error = error
            log.error("hedge: %s failed; the database refuses writes until it is reopened: %s", what, error)
        self._changed.notify()

    @property
    def background_error(self) -> BaseException | None:
        return self._bg_error

    async def maintain(self) -> None:
        """The maintenance task: flush, then compact, until closed.  With the
        compaction worker process, a compaction runs as a task of its own
        (one at a time) and flushes go on while the worker merges."""
        try:
            while not self._closing:
                gen = self._work.generation
                job = None
                if self._bg_error is None:
                    sv = self._sv
                    if sv.imms:
                        job = self._flush_oldest
                    elif self._compacting is None:
                        task = policy.pick(sv.version, self.options, self._state.compact_pointers)
                        if task is not None and self.options.compaction_process and not task.trivial_move:
                            self._compacting = spawn(self._compact_concurrently(task), name="compaction")
                            continue
                        if task is not None:
                            job = lambda task=task: self._compact(task)  # noqa: E731
                if job is None:
                    if self._compacting is None:
                        self._idle_epoch += 1
                    self._changed.notify()
                    await self._work.wait(gen)
                    continue
                try:
                    await job()
                except Cancelled:
                    raise
                except BaseException as e:  # noqa: BLE001
                    self._set_bg_error(e, "background flush/compaction")
                self._changed.notify()
        finally:
            compacting = self._compacting
            if compacting is not None:
                compacting.cancel()
                try:
                    await compacting
                except BaseException:  # noqa: BLE001 - being closed
                    pass

    async def _compact_concurrently(self, task) -> None:
        try:
            await self._compact(task)
        except Cancelled:
            raise
        except BaseException as e:  # noqa: BLE001
            self._set_bg_error(e, "background compaction")
        finally:
            self._compacting = None
            self._work.notify()

    def set_next_file(self, number: int) -> None:
        with self._file_lock:
            self._next_file = max(self._next_file, number)

    async def write_table(self, entries) -> tuple:
        """Write ``entries`` (in entry order) as one new table; return its
        FileMeta and the bytes written."""
        number = self.new_file_number()
        writer = await TableWriter.create(self.path(filenames.table_name(number)), number,
                                          self.options.block_bytes, self.options.bloom_bits_per_key)
        try:
            n = 0
            for key, seq, kind, value in entries:
                writer.add(key, seq, kind, value)
                n += 1
                if n % 256 == 0:
                    await writer.write_ready()
            meta = await writer.finish()
        except BaseException:
            await writer.abandon()
            raise
        return meta, writer.bytes_written

    async def _flush_oldest(self) -> None:
        sv = self._sv
        mem, wal_number = sv.imms[-1]
        meta, written = await self.write_table(mem.entries())
        # WALs older than the oldest memtable still unflushed are obsolete.
        remaining = sv.imms[:-1]
        next_wal = remaining[-1][1] if remaining else sv.mem_wal
        edit = VersionEdit(wal_number=next_wal)
        edit.add_file(0, meta)
        await self._log_and_apply(edit, drop_imm=mem)
        self.counters["flushes"] += 1
        self.counters["flush_bytes"] += written
        await self._unlink_quietly(filenames.wal_name(wal_number))

    async def _compact(self, task) -> None:
        sv = self._sv
        version = sv.version
        if task.trivial_move:
            await self._log_and_apply(policy.apply(version, task, []))
            self.counters["trivial_moves"] += 1
            return
        inputs = [meta for _level, files in task.inputs() for meta in files]
        self.counters["compaction_bytes_read"] += sum(meta.size for meta in inputs)
        oldest = self._oldest_snapshot()
        if self.options.compaction_process:
            outputs, written = await self._merge_in_worker(task, inputs, oldest)
        else:
            opts = self.options

            async def new_number() -> int:
                return self.new_file_number()

            outputs, written = await merge_tables(
                [sv.tables[meta.number] for meta in inputs], directory=self.directory,
                bottommost=task.bottommost, oldest_snapshot_seq=oldest, max_output_bytes=task.max_output_bytes,
                block_bytes=opts.block_bytes, bloom_bits_per_key=opts.bloom_bits_per_key, new_number=new_number)
        # Flushes may have added L0 tables meanwhile (worker process): the
        # edit is checked against the current version.
        edit = policy.apply(self._sv.version, task, outputs)
        await self._log_and_apply(edit)
        self.counters["compactions"] += 1
        self.counters["compaction_bytes_written"] += written
        for meta in inputs:
            if self.cache is not None:
                self.cache.erase_table(meta.number)
            await self._unlink_quietly(filenames.table_name(meta.number))

    async def _merge_in_worker(self, task, inputs: list, oldest: int) -> tuple[list, int]:
        """The merge of ``_compact`` in the worker process (started on first
        use); the maintenance task waits by polling its socket through the
        ring.  When the job fails, every output number reserved for it is
        removed (a dead worker may have left partial tables)."""
        worker = self._worker
        if worker is None or not worker.usable:
            if worker is not None:
                worker.kill()
            layout = self.pools.layout
            cpus = frozenset().union(*layout.background) if layout.pinned else None
            opts = self.options
            worker = self._worker = CompactionWorker(WorkerConfig(
                io_method=self.io_method, ring_entries=opts.ring_entries, submit_min=opts.ring_submit_min,
                cpus=cpus))
        reserved = [self.new_file_number()
                    for _ in range(reserve_count(sum(m.size for m in inputs), task.max_output_bytes))]

        def more(n: int) -> list[int]:
            extra = [self.new_file_number() for _ in range(n)]
            reserved.extend(extra)
            return extra

        opts = self.options
        job = CompactionJob(directory=self.directory, inputs=tuple(m.number for m in inputs),
                            direct_io=opts.direct_io, bottommost=task.bottommost, oldest_snapshot_seq=oldest,
                            max_output_bytes=task.max_output_bytes, block_bytes=opts.block_bytes,
                            bloom_bits_per_key=opts.bloom_bits_per_key, output_numbers=tuple(reserved))
        try:
            return await worker.run(job, more)
        except Cancelled:
            raise               # closing: partial outputs are orphans, removed at the next open
        except BaseException:
            for number in reserved:
                await unlink_quietly(self.path(filenames.table_name(number)))
            raise

    def stop_worker(self) -> None:
        """Stop the compaction worker, if one runs (never hangs).  REQUIRES:
        the maintenance task has ended."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    async def _log_and_apply(self, edit: VersionEdit, drop_imm=None) -> None:
        """Make ``edit`` durable in the manifest, then install the new
        version (and drop the flushed memtable) in one super-version swap.
        One at a time: a flush and a concurrent compaction take turns."""
        await self._changed.wait_for(lambda: not self._installing)
        self._installing = True
        try:
            await self._log_and_apply_now(edit, drop_imm)
        finally:
            self._installing = False
            self._changed.notify()

    async def _log_and_apply_now(self, edit: VersionEdit, drop_imm) -> None:
        from hedge.lsm.table_io import open_table

        edit.next_file_number = self._next_file
        edit.last_seq = self._visible_seq
        new_state = self._state.apply(edit)
        tables = self._sv.tables
        opened = {}
        files = {}
        try:
            for _level, meta in edit.added_files:
                if meta.number not in tables:
                    opened[meta.number], files[meta.number] = await open_table(
                        self.path(filenames.table_name(meta.number)), meta.number, self.options.direct_io, self.cache)
            if opened:
                await fsync_directory(self.directory)   # the new tables' names are durable before the edit
            await self._manifest.append(edit)
        except BaseException:
            for file in files.values():
                file.close()
            raise
        self.table_files.update(files)
        # A trivial move deletes a table from one level and adds the same
        # file to the next: it stays open.
        kept = {meta.number for _level, meta in edit.added_files}
        dropped = [number for _level, number in edit.deleted_files if number not in kept]
        for number in dropped:
            # Readers holding an older super version keep the file alive;
            # it is closed when the last of them lets go.
            self.table_files.pop(number, None)
        self._state = new_state
        with self._sv_lock:
            # The leader may have switched memtables meanwhile: build on the
            # current super version, not on the one read before the awaits.
            sv = self._sv
            tables = dict(sv.tables)
            tables.update(opened)
            for number in dropped:
                tables.pop(number, None)
            imms = tuple(pair for pair in sv.imms if pair[0] is not drop_imm)
            self._sv = SuperVersion(sv.mem, sv.mem_wal, imms, new_state.version, tables)
        self._changed.notify()

    async def _unlink_quietly(self, name: str) -> None:
        try:
            await ops.unlink(self.path(name))
        except Exception as e:  # noqa: BLE001 - an orphan is removed on the next open
            log.warning("hedge: could not remove %s: %s", name, e)

    # -- requests from the API ----------------------------------------------------
    async def flush(self) -> None:
        """Switch the memtable (when not empty) and wait until every memtable
        written so far is a durable table."""
        self.check_writable()
        await self._commit.submit(Writer(WriteBatch(), sync=False, rotate=True))
        await self._changed.wait_for(lambda: not self._sv.imms or self._bg_error is not None or self._closing)
        self._raise_bg_error()

    async def compact(self) -> None:
        """Flush, then wait until the compaction policy has nothing to do."""
        await self.flush()
        epoch = self._idle_epoch
        self._work.notify()

        def settled() -> bool:
            # Maintenance went idle after our notify, and nothing is due now
            # (a running job would still be picked: its version is current).
            if self._bg_error is not None or self._closing:
                return True
            sv = self._sv
            return (self._idle_epoch > epoch and self._compacting is None and not sv.imms and
                    policy.pick(sv.version, self.options, self._state.compact_pointers) is None)

        await self._changed.wait_for(settled)
        self._raise_bg_error()

    def _raise_bg_error(self) -> None:
        if self._bg_error is not None:
            raise BackgroundError(f"a background job failed: {self._bg_error}") from self._bg_error
        if self._closing:
            raise ClosedError("the database is closed")

    # -- close ---------------------------------------------------------------------
    async def quiesce_writers(self) -> None:
        """Wait until no group commit is in progress (new writes are refused
        already)."""
        while self._commit.busy:
            await ops.sleep(0.001)

    async def close_wal(self) -> None:
        """Sync and close the WAL: a clean close loses nothing, whatever the
        sync flags of the writes."""
        wal = self._wal
        if wal is None:
            return
        try:
            if self._bg_error is None:
                await wal.sync()
        finally:
            wal.close()

    def close_files(self) -> None:
        if self._manifest is not None:
            self._manifest.close()
        for file in self.table_files.values():
            file.close()
        self.table_files.clear()

    def mark_closing(self) -> None:
        self._closing = True
        self._changed.notify()
        self._work.notify()

    # -- statistics ------------------------------------------------------------------
    def stats(self) -> dict:
        sv = self._sv
        version = sv.version
        levels = [{"files": version.num_files(i), "bytes": version.level_bytes(i)} for i in range(NUM_LEVELS)]
        c = self.counters
        user_bytes = c["wal_bytes"]
        written = c["flush_bytes"] + c["compaction_bytes_written"]
        return {
            "levels": levels,
            "memtable_bytes": sv.mem.approximate_bytes(),
            "memtable_entries": len(sv.mem),
            "immutable_memtables": len(sv.imms),
            "last_seq": self._visible_seq,
            "next_file_number": self._next_file,
            "background_error": None if self._bg_error is None else str(self._bg_error),
            "wal": {"groups": self._commit.groups, "writers": self._commit.writers,
                    "syncs": c["wal_syncs"], "bytes": user_bytes, "number": self._wal.number if self._wal else None},
            "compaction": {
                "count": c["compactions"], "trivial_moves": c["trivial_moves"], "flushes": c["flushes"],
                "flush_bytes": c["flush_bytes"], "bytes_read": c["compaction_bytes_read"],
                "bytes_written": c["compaction_bytes_written"],
                "write_amplification": (written / user_bytes) if user_bytes else 0.0,
                "stall_slowdowns": c["stall_slowdowns"], "stall_stops": c["stall_stops"],
                "worker_pid": self._worker.pid if self._worker is not None else None,
            },
            "cache": self.cache.stats() if self.cache is not None else None,
        }
