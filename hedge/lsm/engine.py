"""Engine: the LSM tree of one open database: reads, writes and the super
version.

``Engine.open`` recovers the directory (hedge/lsm/recovery.py) and returns a
whole engine with its maintenance task running; ``close`` stops it.  The
parts it is built from:
  - ``versions`` (hedge/lsm/version_set.py): the version state, the
    manifest, file numbers, the published sequence number;
  - ``tables`` (hedge/lsm/table_cache.py): the open tables;
  - ``maintenance`` (hedge/lsm/maintenance.py): the scheduler that flushes
    memtables and runs compactions on the background pool;
  - the commit queue (hedge/lsm/commit.py): group commit.

State readers see is one immutable ``SuperVersion`` (hedge/lsm/lookup.py:
memtable, immutable memtables, version, open table readers; point lookups
walk it), swapped as a whole under ``_sv_lock`` by whoever changes it (the
commit leader at a memtable switch, maintenance at an install), always
built from the current one.

A reader at a snapshot (a scan, or a ``db.snapshot()``: a sequence number
registered with ``acquire_snapshot``) takes the sequence number FIRST and
the super version SECOND, so every entry at or below its snapshot is in a
memtable or table of what it holds.  A get at the current state takes the
super version FIRST and the sequence number (``versions.last_seq``)
SECOND: every table it holds was written by a flush or compaction that
kept what a reader at the last sequence number of its start could see,
and its own sequence number is no older; an entry at or below it missing
from its super version was written while the get ran.

Tables dropped from the version are unlinked once the edit is durable; a
reader still holding an older super version keeps their descriptors (and
so their data) alive until it lets go.

Who runs what:
  - foreground executors: get/scan/multi_get (any of them, concurrently) and
    writes, which go through the group-commit queue: only the current leader
    (``_commit_group``) writes the WAL, inserts into the memtable, switches
    memtables, holds writers back while L0 backs up, and publishes sequence
    numbers;
  - the maintenance task on a background executor: flush and compaction,
    the only writer of the manifest;
  - ``open`` and ``close``: a user thread (not one of the pools').

Read-only (Options.read_only; ``read_only`` here): recovery writes nothing
(recover_read_only), the replayed writes are the memtable and are never
added to, no WAL is open, maintenance never starts, and every write,
flush and compaction raises ReadOnlyError (``check_writable``).

Errors: a failed WAL write/sync, flush, compaction or manifest append, or a
maintenance task that dies, becomes the background error: recorded once,
every later write, flush and compaction raises BackgroundError from it until
the database is reopened.  Nothing is retried.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time

from hedge.errors import BackgroundError, Cancelled, ClosedError, HedgeError, ReadOnlyError
from hedge.exec import checkpoint as executor_checkpoint, gather
from hedge.exec.signal import Signal
from hedge.io import ops
from hedge.lsm import filenames
from hedge.lsm.amerge import ListCursor, MemtableCursor, TableCursor, read_first_blocks, visible_merge
from hedge.lsm.batch import WriteBatch
from hedge.lsm.cache import SCAN_FILL, BlockCache
from hedge.lsm.checkpoint import write_checkpoint
from hedge.lsm.commit import CommitQueue, Writer
from hedge.lsm.compaction import policy
from hedge.lsm.compaction.worker import WorkerConfig
from hedge.lsm.keys import DELETE, check_key
from hedge.lsm.lookup import NeedsIO, SuperVersion
from hedge.lsm.maintenance import Maintenance
from hedge.lsm.manifest import fsync_directory
from hedge.lsm.memtable import Memtable
from hedge.lsm.recovery import Recovered, recover, recover_read_only
from hedge.lsm.reverse import ReverseTableCursor, reverse_visible_merge
from hedge.lsm.version_edit import NUM_LEVELS
from hedge.lsm.wal.writer import WalWriter
from hedge.lsm.write_controller import MAX_IMMUTABLES, WriteController, debt_steps
from hedge.options import Options

log = logging.getLogger("hedge")

LOG_WAIT_SECONDS = 0.02     # a writers' wait at least this long is logged (debug) with its cause
# After this many bytes appended to the WAL, the background pool fdatasyncs
# it (RocksDB's wal_bytes_per_sync), so the fdatasync a memtable switch
# waits for finds at most about this much to write (it found the whole 8 MiB
# memtable's worth and took up to 100 ms in the YCSB load).
WAL_BYTES_PER_SYNC = 1 << 20


class Engine:
    def __init__(self, directory: str, options: Options, pools, cache: BlockCache | None, io_method: str,
                 recovered: Recovered):
        """Build the engine over ``recovered`` (the maintenance task is not
        started: ``open`` does that)."""
        self.directory = directory
        self.options = options
        self.pools = pools
        self.cache = cache
        self.io_method = io_method
        self.recovery = recovered.summary
        self.versions = recovered.versions
        self.tables = recovered.tables
        self._wal: WalWriter | None = recovered.wal
        # Read-only (no WAL to write): the replayed writes are the memtable,
        # never added to; no maintenance, nothing written.
        self.read_only = recovered.wal is None
        mem = recovered.memtable if recovered.memtable is not None else Memtable()
        mem_wal = recovered.wal.number if recovered.wal is not None else self.versions.current.wal_number
        self._sv = SuperVersion(mem, mem_wal, (), self.versions.current.version, recovered.readers)
        # Serializes super-version swaps: the commit leader (a foreground
        # thread) and the maintenance task (a background thread) both
        # replace it, each building on the current one.
        self._sv_lock = threading.Lock()
        self._commit = CommitQueue(self._commit_group, self._commit_idle)
        self.changed = Signal()      # the super version, the background error, idleness or closing changed
        self._bg_error: BaseException | None = None
        self._closing = False
        self._snapshots: dict[int, int] = {}
        self._snapshot_ids = itertools.count(1)
        self._snapshot_lock = threading.Lock()
        self._wal_unsynced = 0           # bytes appended since the last background sync started
        self._wal_syncing = False        # a background sync runs
        self.counters = {"wal_bytes": 0, "wal_syncs": 0, "wal_background_syncs": 0,
                         "stall_stops": 0, "stall_stop_seconds": 0.0,
                         "memtable_waits": 0, "memtable_wait_seconds": 0.0, "memtable_switch_seconds": 0.0,
                         "stall_max_seconds": 0.0}
        # Memtable bytes at which the commit leader looks at the room left
        # (_make_room): a quarter of the first memtable while the flush worker is
        # to be started ahead of the first flush, then a full memtable.
        self._room_at = options.memtable_bytes // 4 if options.flush_process else options.memtable_bytes
        # L0 tables at which writers start to be held back (the stop trigger is higher).
        self._slowdown_at = min(options.l0_slowdown_trigger, options.l0_stop_trigger)
        self.write_controller = WriteController()
        layout = pools.layout
        worker_config = WorkerConfig(
            io_method=io_method, ring_entries=options.ring_entries, submit_min=options.ring_submit_min,
            cpus=frozenset().union(*layout.background) if layout.pinned else None)
        self.maintenance = Maintenance(self, self.versions, self.tables, options, worker_config)
        # Scans are charged to the L0 tables they merge (l0_scan_compaction).
        self._charging_scans = options.l0_scan_compaction and not self.read_only

    @classmethod
    def open(cls, directory: str, options: Options, pools, cache: BlockCache | None, io_method: str) -> "Engine":
        """Recover ``directory`` (on the background pool) and return the
        engine with its maintenance task running.  REQUIRES: the directory
        lock is held; ``pools`` started.  Raises CorruptionError,
        HedgeIOError."""
        recovery = recover_read_only if options.read_only else recover
        recovered = pools.background.run_sync(recovery(directory, options, cache))
        engine = cls(directory, options, pools, cache, io_method, recovered)
        if engine.read_only:
            return engine
        try:
            engine.maintenance.start(pools.background)
        except BaseException:
            engine._close_files()
            raise
        return engine

    def path(self, name: str) -> str:
        return filenames.join(self.directory, name)

    # -- what maintenance uses -------------------------------------------------------
    @property
    def super_version(self) -> SuperVersion:
        return self._sv

    def install(self, version, added: dict, dropped, flushed=None) -> None:
        """Swap in a super version holding ``version``, the readers of
        ``added`` and not those of ``dropped``, without the ``flushed``
        memtable.  REQUIRES: inside VersionSet.log_and_apply's turn."""
        with self._sv_lock:
            # The leader may have switched memtables meanwhile: build on the
            # current super version, not on one read before the job's awaits.
            sv = self._sv
            tables = dict(sv.tables)
            tables.update(added)
            for number in dropped:
                tables.pop(number, None)
            imms = tuple(pair for pair in sv.imms if pair[0] is not flushed)
            self._sv = SuperVersion(sv.mem, sv.mem_wal, imms, version, tables)
        self.changed.notify()

    def oldest_snapshot(self) -> int:
        """The oldest sequence number a reader may still look at."""
        with self._snapshot_lock:
            if self._snapshots:
                return min(self._snapshots.values())
        return self.versions.last_seq

    @property
    def background_error(self) -> BaseException | None:
        return self._bg_error

    def record_background_error(self, error: BaseException, what: str) -> None:
        """Make ``error`` the background error (the first one stays)."""
        if self._bg_error is None:
            self._bg_error = error
            log.error("hedge: %s failed; the database refuses writes until it is reopened: %s", what, error)
        self.changed.notify()

    @property
    def closing(self) -> bool:
        return self._closing

    # -- writes (foreground) ----------------------------------------------------
    def check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError("the database was opened with read_only=True")
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
        """``write`` of a batch of this one put, in one coroutine (a batch
        of one operation is never empty or too large)."""
        batch = WriteBatch()
        batch.put(key, value)
        self.check_writable()
        await self._commit.submit(Writer(batch, sync))

    async def remove(self, key, sync: bool = False) -> None:
        """``write`` of a batch of this one removal, like ``put``."""
        batch = WriteBatch()
        batch.remove(key)
        self.check_writable()
        await self._commit.submit(Writer(batch, sync))

    def _commit_idle(self) -> None:
        """The commit queue went idle (any thread): a close waiting for the
        writes in progress (_finish_writes) looks again."""
        if self._closing:
            self.changed.notify()

    def write_now(self, batch: WriteBatch) -> bool:
        """Commit ``batch`` (sync=False) on the calling thread without
        awaiting anything, when nothing needs to wait: no other writer, no
        memtable switch, no stall.  Returns False, having done nothing, when
        one of those is due (the caller then awaits ``write``).  Raises like
        ``write``."""
        batch.check_size()
        self.check_writable()
        if not len(batch):
            return True
        if self._needs_room(self._sv):
            return False
        commit = self._commit
        if not commit.try_lead():
            return False
        try:
            # _number, _log and _apply for one writer, without the Writer.
            seq = self.versions.last_seq + 1
            self._log(batch.encode(seq))
            self._sv.mem.add_many(batch.entries(seq))     # read as leader: no switch meanwhile
            self.versions.last_seq = seq + len(batch) - 1
        finally:
            commit.release_lead()
        return True

    def _needs_room(self, sv) -> bool:
        """Whether a write must first go through ``_make_room``: the
        memtable has reached ``_room_at``, or L0 or the immutable memtables
        are at their slowdown or limit."""
        return (sv.mem.approximate_bytes() >= self._room_at or len(sv.version.levels[0]) >= self._slowdown_at
                or len(sv.imms) >= MAX_IMMUTABLES)

    async def _commit_group(self, group) -> None:
        """The leader's job (see commit.py).  REQUIRES: the only caller."""
        self.check_writable()
        sv = self._sv
        rotate = any(w.rotate for w in group) if len(group) > 1 else group[0].rotate
        if rotate or self._needs_room(sv):
            await self._make_room(rotate, group)
        writers = group if len(group) == 1 and len(group[0].batch) else [w for w in group if len(w.batch)]
        if not writers:
            return
        payload, seq, sync = self._number(writers)
        self._log(payload)
        if sync:
            try:
                await self._wal.sync()
            except Cancelled:
                raise
            except BaseException as e:  # noqa: BLE001
                self.record_background_error(e, "WAL sync")
                raise
            self.counters["wal_syncs"] += 1
        self._apply(writers, seq)

    def _number(self, writers) -> tuple[bytes, int, bool]:
        """Give the writers' batches consecutive sequence numbers after the
        published one; return the WAL payload, the next free number and
        whether any writer asked for sync."""
        seq = self.versions.last_seq + 1
        if len(writers) == 1:
            w = writers[0]
            w.first_seq = seq
            return w.batch.encode(seq), seq + len(w.batch), w.sync
        payloads = []
        for w in writers:
            w.first_seq = seq
            payloads.append(w.batch.encode(seq))
            seq += len(w.batch)
        return b"".join(payloads), seq, any(w.sync for w in writers)

    def _log(self, payload: bytes) -> None:
        """Append ``payload`` as one WAL record (inline; the OS has it on
        return).  A failure becomes the background error."""
        try:
            n = self._wal.append(payload)
        except BaseException as e:  # noqa: BLE001
            self.record_background_error(e, "WAL write")
            raise
        self.counters["wal_bytes"] += n
        self._wal_unsynced += n
        if self._wal_unsynced >= WAL_BYTES_PER_SYNC and not self._wal_syncing:
            self._start_wal_sync()

    def _start_wal_sync(self) -> None:
        """Have the background pool fdatasync the WAL (through a descriptor
        of its own, so the leader may close the WAL meanwhile).  Durability
        promises do not rest on it: sync=True writes and memtable switches
        still sync themselves; it only leaves them less to write.  A failure
        is the background error (the WAL may have lost data; never retried)."""
        self._wal_unsynced = 0
        try:
            file = self._wal.duplicate()
        except OSError as e:
            self.record_background_error(e, "WAL sync")
            return
        self._wal_syncing = True
        try:
            self.pools.background.submit(self._background_wal_sync(file), name="wal sync")
        except BaseException:  # noqa: BLE001 - closing: the WAL is synced at close
            self._wal_syncing = False
            file.close()

    async def _background_wal_sync(self, file) -> None:
        try:
            await ops.fdatasync(file)
            self.counters["wal_background_syncs"] += 1
        except Cancelled:
            pass
        except BaseException as e:  # noqa: BLE001
            self.record_background_error(e, "WAL sync")
        finally:
            file.close()
            self._wal_syncing = False

    def _apply(self, writers, next_seq: int) -> None:
        """Insert the logged batches into the memtable and publish their
        sequence numbers (readers see them from then on)."""
        if len(writers) == 1:
            w = writers[0]
            entries = w.batch.entries(w.first_seq)
        else:
            entries = []
            extend = entries.extend
            for w in writers:
                extend(w.batch.entries(w.first_seq))
        self._sv.mem.add_many(entries)
        self.versions.last_seq = next_seq - 1

    async def _make_room(self, force_rotate: bool, group) -> None:
        """Hold the group back while flushes and L0 compactions fall behind
        (paced by the write controller; stopped at l0_stop_trigger), and
        switch memtables when full (or asked).  Every wait is counted and
        timed by cause (stats()["compaction"]); one of LOG_WAIT_SECONDS or
        more is logged at debug level."""
        opts = self.options
        if self._room_at < opts.memtable_bytes:
            self._room_at = opts.memtable_bytes
            self.maintenance.warm_flush_worker()
        sv = self._sv
        if policy.write_stall(sv.version, opts) == policy.Stall.STOP:
            started = time.monotonic()
            await self._wait_for(lambda: policy.write_stall(self._sv.version, opts) != policy.Stall.STOP)
            self._waited("stall_stops", "stall_stop_seconds", started, "L0 compaction (l0_stop_trigger)")
            sv = self._sv
        steps = debt_steps(len(sv.version.levels[0]), len(sv.imms), self._slowdown_at)
        if steps or self.write_controller.pacing:
            nbytes = group[0].batch.byte_size() if len(group) == 1 else sum(w.batch.byte_size() for w in group)
            delay = self.write_controller.delay(nbytes, steps)
            if delay:
                await ops.sleep(delay)
                self._note_wait(delay, "the write rate limit")
        mem = self._sv.mem
        if (force_rotate and len(mem)) or mem.approximate_bytes() >= opts.memtable_bytes:
            if len(self._sv.imms) >= MAX_IMMUTABLES:
                started = time.monotonic()
                await self._wait_for(lambda: len(self._sv.imms) < MAX_IMMUTABLES)
                self._waited("memtable_waits", "memtable_wait_seconds", started, "a memtable flush")
            started = time.monotonic()
            await self._switch_memtable()
            self._waited(None, "memtable_switch_seconds", started, "the memtable switch (WAL sync)")

    async def _wait_for(self, predicate) -> None:
        """Wait until ``predicate()`` holds; raise the background error (or
        ClosedError) instead when one comes first."""
        await self.changed.wait_for(lambda: self._bg_error is not None or self._closing or predicate())
        self.check_writable()

    def _waited(self, count: str | None, seconds: str, started: float, cause: str) -> None:
        waited = time.monotonic() - started
        c = self.counters
        if count is not None:
            c[count] += 1
        c[seconds] += waited
        self._note_wait(waited, cause)

    def _note_wait(self, waited: float, cause: str) -> None:
        c = self.counters
        if waited > c["stall_max_seconds"]:
            c["stall_max_seconds"] = waited
        if waited >= LOG_WAIT_SECONDS:
            log.debug("hedge: writers waited %.1f ms for %s", waited * 1e3, cause)

    async def _switch_memtable(self) -> None:
        number = self.versions.new_file_number()
        try:
            await self._wal.sync()   # else a sync write to the new WAL could outlive earlier writes in it
            wal = await WalWriter.create(self.path(filenames.wal_name(number)), number)
            await fsync_directory(self.directory)
        except Cancelled:
            raise
        except BaseException as e:  # noqa: BLE001
            self.record_background_error(e, "WAL switch")
            raise
        old = self._wal
        self._wal = wal
        self._wal_unsynced = 0
        old.close()
        with self._sv_lock:
            sv = self._sv
            self._sv = SuperVersion(Memtable(), number, ((sv.mem, sv.mem_wal),) + sv.imms, sv.version, sv.tables)
        self.changed.notify()
        self.maintenance.wake()

    # -- reads (foreground) -----------------------------------------------------
    def check_open(self) -> None:
        if self._closing:
            raise ClosedError("the database is closed")

    def get_now(self, key, snap: int | None = None):
        """``get``'s answer when it needs no ring read (the key is in a
        memtable, or its table blocks are cached or in the page cache, or
        no table can hold it), else a NeedsIO: ``await needs_io.finish()``
        reads the block through the ring and goes on from that table
        (hedge/lsm/lookup.py).  Never suspends; any thread.  Raises
        HedgeIOError or CorruptionError from a block read in place."""
        key = check_key(key)
        self.check_open()
        sv = self._sv                       # before the sequence number (module docstring)
        if snap is None:
            snap = self.versions.last_seq
        found = sv.mem.get(key, snap)       # SuperVersion.get, one call fewer for a memtable key
        if found is None:
            return sv.get_below_memtable(key, snap)
        if found[1] == DELETE:
            return None
        return found[2]

    async def get(self, key, snap: int | None = None) -> bytes | None:
        """The value of ``key`` at sequence ``snap`` (None: now), or None.
        Suspends only for blocks that are not cached."""
        value = self.get_now(key, snap)
        if type(value) is NeedsIO:
            return await value.finish()
        return value

    def multi_get_now(self, keys, snap: int | None = None) -> list:
        """``get_now`` of each of ``keys`` (checked bytes) at one snapshot
        (None: now): values, None, or a NeedsIO where a block must be read
        (``finish_gets`` reads them)."""
        self.check_open()
        get = self._sv.get                  # before the sequence number (module docstring)
        if snap is None:
            snap = self.versions.last_seq
        return [get(k, snap) for k in keys]

    @staticmethod
    async def finish_gets(values: list) -> list:
        """``values`` of ``multi_get_now`` with every NeedsIO replaced by its
        answer, the reads running concurrently (in place; returned)."""
        pending = [i for i, v in enumerate(values) if type(v) is NeedsIO]
        if pending:
            done = await gather(*(values[i].finish() for i in pending))
            for i, value in zip(pending, done):
                values[i] = value
        return values

    async def multi_get(self, keys, snap: int | None = None) -> list:
        """The values of ``keys`` at one snapshot; only the lookups that
        need a block read suspend, concurrently."""
        keys = [check_key(k) for k in keys]
        return await self.finish_gets(self.multi_get_now(keys, snap))

    def acquire_snapshot(self) -> tuple[int, int]:
        """Pin the current sequence number: compactions keep what it sees
        until ``release_snapshot(id)``.  Returns (id, sequence number)."""
        self.check_open()
        sid = next(self._snapshot_ids)
        with self._snapshot_lock:
            snap = self.versions.last_seq
            self._snapshots[sid] = snap
        return sid, snap

    def release_snapshot(self, sid: int) -> None:
        with self._snapshot_lock:
            self._snapshots.pop(sid, None)

    async def scan(self, start=None, end=None, snap: int | None = None, reverse: bool = False,
                   want: int = 256, limit: int | None = None):
        """The (key, value) pairs from ``start`` inclusive to ``end``
        exclusive over the snapshot taken when iteration begins (or at
        ``snap``, a sequence number the caller holds with
        ``acquire_snapshot``), keys ascending, or descending with
        ``reverse`` (hedge/lsm/reverse.py); in chunks of at least ``want``
        pairs but the last, which is shorter, possibly empty (the protocol
        is in hedge/lsm/amerge.py: ``asend(n)`` sets the next ``want``).
        With ``limit``, the chunk that reaches ``limit`` pairs in all is
        cut there and is the last.
        Starts with a checkpoint (a scan over cached blocks never waits, and
        a task scanning in a loop would otherwise keep its executor to
        itself), unless it starts by reading blocks: that lets the other
        tasks run already, and a scan that waits for reads should not wait
        for a round of the other tasks besides."""
        if start is not None:
            start = check_key(start)
        if end is not None:
            end = check_key(end)
        self.check_open()
        if snap is None:
            sid, snap = self.acquire_snapshot()     # the sequence number first, the super version second
        else:
            sid = None
        sv = self._sv
        if self._charging_scans:
            self.maintenance.charge_scan(sv.version)
        chunk: list = []
        try:
            if start is None or end is None or start < end:
                mems = [sv.mem] if len(sv.mem) else []
                if sv.imms:
                    mems += [m for m, _ in sv.imms if len(m)]
                if reverse:
                    sources = [ListCursor(m.iter_reverse(start, end, snap)) for m in mems]
                    sources += _table_cursors(sv, start, end, ReverseTableCursor, pair_bytes=True)
                else:
                    sources = [MemtableCursor(m, start, end, snap) for m in mems]
                    sources += _table_cursors(sv, start, end, TableCursor, pair_bytes=True)
                reads = read_first_blocks(sources, limit)
                if reads is None:
                    await executor_checkpoint()
                else:
                    await reads
                if reverse:
                    merged = reverse_visible_merge(sources, snap, want)
                else:
                    merged = visible_merge(sources, snap, want, limit)
                left = limit
                if left is not None and left < want:
                    want = left
                chunk = await merged.__anext__()
                while len(chunk) >= want:
                    if left is not None:
                        if len(chunk) >= left:
                            del chunk[left:]
                            break
                        left -= len(chunk)
                    if self._closing:
                        raise ClosedError("the database was closed during the scan")
                    want = (yield chunk) or want
                    if left is not None and left < want:
                        want = left
                    chunk = await merged.asend(want)
            else:
                await executor_checkpoint()         # an empty range
        finally:
            if sid is not None:
                self.release_snapshot(sid)
        # The last chunk comes after the snapshot is released: a consumer
        # that stops here need not close the scan.
        if self._closing:
            raise ClosedError("the database was closed during the scan")
        yield chunk

    # -- requests from the API ----------------------------------------------------
    async def flush(self) -> None:
        """Switch the memtable (when not empty) and wait until every memtable
        written so far is a durable table."""
        self.check_writable()
        await self._commit.submit(Writer(WriteBatch(), sync=False, rotate=True))
        await self.changed.wait_for(lambda: not self._sv.imms or self._bg_error is not None or self._closing)
        self._raise_bg_error()

    async def compact(self, start: bytes | None = None, end: bytes | None = None) -> None:
        """Flush; with a range (either bound given), compact every table
        overlapping [start, end] level by level down to the deepest level
        holding any of it (Maintenance.request_range); then wait until the
        compaction policy has nothing to do."""
        await self.flush()
        maintenance = self.maintenance
        if start is not None or end is not None:
            request = maintenance.request_range(start, end)
            await self.changed.wait_for(lambda: request.done or self._bg_error is not None or self._closing)
            self._raise_bg_error()
        epoch = maintenance.idle_epoch
        maintenance.wake()
        # Maintenance went idle after our wake-up, and nothing is due now (a
        # running job would still be picked: its version is current).
        await self.changed.wait_for(lambda: self._bg_error is not None or self._closing or
                                    maintenance.settled_since(epoch))
        self._raise_bg_error()

    async def checkpoint(self, target: str) -> None:
        """Write a consistent copy of the database into ``target`` that
        opens as a database of its own (hedge/lsm/checkpoint.py): flush, hold
        table deletions, link (or copy) the tables of the current version
        and write a manifest describing it.  Every write acknowledged before
        the call is in it.  Raises HedgeError for a target that is not
        empty, HedgeIOError, BackgroundError."""
        if self.read_only:
            # Nothing changes: the version and the replayed memtable (as a
            # table of the copy) are the database.
            self.check_open()
            sv = self._sv
            await write_checkpoint(target, sv.version, self.versions, sv.mem, self.options)
            return
        await self.flush()
        with self.maintenance.hold_deletions():
            version = self._sv.version
            await write_checkpoint(target, version, self.versions, None, self.options)

    def _raise_bg_error(self) -> None:
        if self._bg_error is not None:
            raise BackgroundError(f"a background job failed: {self._bg_error}") from self._bg_error
        if self._closing:
            raise ClosedError("the database is closed")

    # -- close ---------------------------------------------------------------------
    def close(self) -> None:
        """Refuse new calls, wait for the writes in progress, sync and close
        the WAL (a clean close loses nothing, whatever the sync flags of the
        writes), stop maintenance, close every file and the compaction
        worker.  A failure to sync the WAL is logged.  REQUIRES: called
        once, from a thread that is not one of the pools'."""
        self._closing = True
        self.changed.notify()
        try:
            self.pools.foreground.run_sync(self._finish_writes())
        except HedgeError as e:
            log.error("hedge: closing the WAL failed: %s", e)
        finally:
            try:
                self.maintenance.stop()
            finally:
                try:
                    self._close_files()
                finally:
                    self.maintenance.stop_worker()

    async def _finish_writes(self) -> None:
        """Wait until no group commit is in progress (new writes are refused
        already), then sync and close the WAL."""
        await self.changed.wait_for(lambda: not self._commit.busy)
        wal = self._wal
        if wal is None:
            return
        try:
            if self._bg_error is None:
                await wal.sync()
        finally:
            wal.close()

    def _close_files(self) -> None:
        if self._wal is not None:
            self._wal.close()
        self.tables.close()
        self.versions.close()

    # -- statistics ------------------------------------------------------------------
    def stats(self) -> dict:
        sv = self._sv
        version = sv.version
        levels = [{"files": version.num_files(i), "bytes": version.level_bytes(i)} for i in range(NUM_LEVELS)]
        c = self.counters
        compaction = self.maintenance.stats()
        user_bytes = c["wal_bytes"]
        written = compaction["flush_bytes"] + compaction["bytes_written"]
        compaction["write_amplification"] = (written / user_bytes) if user_bytes else 0.0
        wc = self.write_controller
        compaction["stall_slowdowns"] = wc.delays
        compaction["stall_slowdown_seconds"] = round(wc.delayed_seconds, 6)
        for name in ("stall_stops", "stall_stop_seconds", "memtable_waits", "memtable_wait_seconds",
                     "memtable_switch_seconds", "stall_max_seconds"):
            compaction[name] = round(c[name], 6) if isinstance(c[name], float) else c[name]
        return {
            "levels": levels,
            "memtable_bytes": sv.mem.approximate_bytes(),
            "memtable_entries": len(sv.mem),
            "immutable_memtables": len(sv.imms),
            "last_seq": self.versions.last_seq,
            "next_file_number": self.versions.next_file_number,
            "background_error": None if self._bg_error is None else str(self._bg_error),
            "wal": {"groups": self._commit.groups, "writers": self._commit.writers,
                    "syncs": c["wal_syncs"], "background_syncs": c["wal_background_syncs"],
                    "bytes": user_bytes, "number": self._sv.mem_wal},
            "compaction": compaction,
            "cache": self.cache.stats() if self.cache is not None else None,
            "table_cache": self.tables.stats(),
        }



def _table_cursors(sv: SuperVersion, start: bytes | None, end: bytes | None, cursor_class,
                   pair_bytes: bool = False) -> list:
    """A ``cursor_class`` (TableCursor, ReverseTableCursor) over [start,
    end) for each L0 table of ``sv`` and each deeper level holding any of
    the range.  With ``pair_bytes``, each cursor is given its
    source's size over the entries of every source, memtables included:
    the bytes it is expected to read per pair a scan takes.  The blocks
    the cursors read go through the cache's scan admission (SCAN_FILL)."""
    version = sv.version
    tables = sv.tables
    per_entry = 0.0
    if pair_bytes:
        entries = version.entries + len(sv.mem) + sum(len(m) for m, _ in sv.imms)
        per_entry = 1 / entries if entries else 0.0

    def cursor(files, size):
        readers = [tables[m.number] for m in files]
        if pair_bytes:
            return cursor_class(readers, start, end, SCAN_FILL, size * per_entry)
        return cursor_class(readers, start, end, SCAN_FILL)

    # overlapping() is inclusive of `end`; an exact hit only costs a read.
    levels = version.levels
    cursors = [cursor((meta,), meta.size) for meta in version.overlapping(0, start, end)] if levels[0] else []
    for level in range(1, NUM_LEVELS):
        if levels[level]:
            files = version.overlapping(level, start, end)
            if files:
                cursors.append(cursor(files, version.level_bytes(level)))
    return cursors
