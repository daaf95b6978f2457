"""Maintenance: the background scheduler that flushes immutable memtables
and runs compactions.

One maintenance task per database, on a background executor.  It loops:
flush the oldest immutable memtable when there is one; otherwise run the
compaction the pure policy picks (hedge/lsm/compaction/policy.py);
otherwise sleep until ``wake``.  Each job writes its tables (fdatasync'ed),
opens them, then hands one edit to ``VersionSet.log_and_apply``, whose
install callback swaps the engine's super version; files the edit made
obsolete (the flushed WAL, compaction inputs) are removed afterwards.

A compaction's input tables are removed once released (TableCache): when
the last reader of an older super version lets go of one, on whatever
thread, the loop closes its file and unlinks it (``_remove_released``).
The last close of an unlinked file frees its blocks synchronously, and the
foreground thread must not wait for that.  The loop takes released tables
at the end of each compaction and whenever it wakes; while some dropped
table is still held, a timer wakes it after RELEASE_POLL_FIRST seconds,
doubling up to RELEASE_POLL_MAX.

With the compaction worker process (Options.compaction_process) a
compaction runs as a task of its own beside the loop (one at a time) and
flushes go on while the worker merges; log_and_apply makes their installs
take turns.  With the flush worker (Options.flush_process) a second
process builds each flushed table from the memtable's WAL; the loop waits
for it and installs the table as its own, and flushes the memtable itself
when the worker fails.  That process is started once the first memtable
is a quarter full (``warm_flush_worker``), so the first flush does not
wait for a process start.

What it needs from the engine (``tree``): ``super_version`` (the state to
flush and compact), ``install(version, added, dropped, flushed)`` (called
inside the install turn), ``oldest_snapshot()``, ``background_error``,
``record_background_error(error, what)`` and the ``changed`` Signal it
announces idleness on.

Manual range compactions (``request_range``, from ``db.compact(start,
end)``) come before the compactions the policy picks: one task per level,
from L0 down to ``policy.range_last_level`` (LevelDB's CompactRange).
Memtable flushes still go first.

Deletion holds (``hold_deletions``, from ``db.checkpoint``): while one is
held, the input tables a compaction drops are not unlinked (their names
are queued); the loop removes them once the last hold is released, so a
checkpoint can hard-link every table of the version it took.

Errors: a failed job becomes the engine's background error (recorded once;
nothing is retried) and the loop then only waits to be stopped.  Any error
that would end the task itself is recorded the same way, so callers waiting
on flushes or compactions see BackgroundError instead of hanging.

Stopping (``stop``, from the thread closing the database): the loop ends
at its next safe point; a running job gives up at its next chunk boundary
(``_check_stop``), closing and removing the table it was writing.  The task
is never cancelled in the middle of I/O that creates a file, so no new
table's descriptor can be left open; only a compaction waiting on the
worker process is cancelled, which kills the worker.  Cancelling the task
is the last resort after STOP_SECONDS.

Threads: the task, and everything named ``_...`` here, run on its
background executor; ``wake``, ``stop``, ``stats`` and the properties may
be called from any thread.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque

from hedge.errors import Cancelled, ClosedError
from hedge.exec import forkguard, spawn
from hedge.exec.signal import Signal
from hedge.io import ops
from hedge.lsm import filenames
from hedge.lsm.compaction import policy
from hedge.lsm.compaction.merge import flush_entries
from hedge.lsm.compaction.runner import merge_tables, unlink_quietly
from hedge.lsm.compaction.worker import CompactionJob, CompactionWorker, FlushJob, WorkerConfig, reserve_count
from hedge.lsm.manifest import fsync_directory
from hedge.lsm.table_cache import TableCache
from hedge.lsm.table_io import write_table
from hedge.lsm.version_edit import VersionEdit
from hedge.lsm.version_set import VersionSet
from hedge.options import Options

log = logging.getLogger("hedge")

STOP_SECONDS = 60           # how long stop() waits for the task before cancelling it
RELEASE_POLL_FIRST = 0.01   # first wait for a dropped table's last reader (s), doubling ...
RELEASE_POLL_MAX = 1.0      # ... up to this


class _Stopped(ClosedError):
    """Raised inside a job at its next safe point once a stop is requested."""


class RangeRequest:
    """One manual compaction of the key range [start, end] (None:
    unbounded): ``level`` is the next level to compact, ``last_level`` the
    level the data ends in (set at the first step).  ``done`` becomes True
    when every level is compacted or the request was abandoned by an error
    (the engine's background error says which)."""

    __slots__ = ("start", "end", "level", "last_level", "done")

    def __init__(self, start: bytes | None, end: bytes | None):
        self.start = start
        self.end = end
        self.level = 0
        self.last_level: int | None = None
        self.done = False


# Scans that pay for L0 (Options.l0_scan_compaction): one per L0_SCAN_BYTES
# of L0 tables, at least L0_SCAN_MIN.  LevelDB allows a table one seek per
# 16 KiB before compacting it: a seek costs about what compacting 40 KB
# does.  A scan pays at least a block read or lookup, its decoding and a
# place in the merge for each L0 table.
L0_SCAN_BYTES = 16 << 10
L0_SCAN_MIN = 100


class L0ScanCharge:
    """The scans of one version with L0 tables (every scan merges each L0
    table its range overlaps; one that overlaps none counts too), and how
    many pay for compacting them (``budget``; 0: L0 is empty).  Counted
    without a lock by any thread: a lost count only delays the compaction."""

    __slots__ = ("version", "scans", "budget")

    def __init__(self, version):
        self.version = version
        self.scans = 0
        l0_bytes = version.level_bytes(0)
        self.budget = max(L0_SCAN_MIN, l0_bytes // L0_SCAN_BYTES) if l0_bytes else 0

    def paid_for(self, version) -> bool:
        """Whether scans have paid for compacting ``version``'s L0."""
        return self.version is version and 0 < self.budget <= self.scans


class Maintenance:
    def __init__(self, tree, versions: VersionSet, tables: TableCache, options: Options,
                 worker_config: WorkerConfig):
        self._tree = tree
        self._versions = versions
        self._tables = tables
        self._options = options
        self._worker_config = worker_config
        self._work = Signal()           # something may be due
        self._stopping = False
        self._handle = None             # the task's SyncHandle once started
        self._generation = forkguard.generation()
        self._idle_epoch = 0            # bumped each time the loop finds nothing to do
        self._compacting = None         # the compaction Task running beside flushes (worker process)
        self._on_worker = False         # that task is waiting on the worker (the one safe place to cancel it)
        self._worker: CompactionWorker | None = None
        self._flush_worker: CompactionWorker | None = None     # flushes (Options.flush_process)
        self._warm_flush = False        # start the flush worker ahead of the first flush
        self._manual: deque[RangeRequest] = deque()
        self._l0_charge = L0ScanCharge(tree.super_version.version)   # Options.l0_scan_compaction
        self._holds = 0                 # deletion holds taken (checkpoints in progress)
        self._held: list[str] = []      # tables dropped while a hold was taken, to remove later
        self._hold_lock = threading.Lock()
        self._release_timer = None      # the Task that wakes the loop while dropped tables are held
        self._release_poll = RELEASE_POLL_FIRST
        self.counters = {"flushes": 0, "flush_bytes": 0, "flush_worker_failures": 0, "compactions": 0,
                         "trivial_moves": 0, "compaction_bytes_read": 0, "compaction_bytes_written": 0}

    # -- control (any thread) ---------------------------------------------------------
    def start(self, pool) -> None:
        """Start the task on ``pool`` (the background pool)."""
        self._handle = pool.submit(self._run(), name="maintenance")

    def wake(self) -> None:
        """Something may be due (a memtable to flush, a new version)."""
        self._work.notify()

    def warm_flush_worker(self) -> None:
        """Any thread: have the loop start the flush worker process now,
        ahead of the first flush (Options.flush_process; nothing otherwise,
        or once it runs).  A process start takes about 0.2 s, which the
        first flush would spend while writers fill the next memtable and
        then wait for it."""
        if self._options.flush_process and self._flush_worker is None:
            self._warm_flush = True
            self.wake()

    def charge_scan(self, version) -> None:
        """Any thread: count a scan of ``version`` toward compacting its L0
        tables; once they are paid for, compact L0 while it is still that
        version's (policy.pick's ``l0_scans_due``)."""
        charge = self._l0_charge
        if charge.version is not version:
            charge = self._l0_charge = L0ScanCharge(version)
        if charge.budget:
            charge.scans += 1
            if charge.scans == charge.budget:
                self._work.notify()

    def request_range(self, start: bytes | None, end: bytes | None) -> RangeRequest:
        """Queue a manual compaction of [start, end]; the caller waits on
        the engine's ``changed`` signal for ``done``."""
        request = RangeRequest(start, end)
        self._manual.append(request)
        self._work.notify()
        return request

    @contextlib.contextmanager
    def hold_deletions(self):
        """While inside, no table a compaction drops is unlinked (see the
        module docstring)."""
        with self._hold_lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._hold_lock:
                self._holds -= 1
                release = self._holds == 0 and bool(self._held)
            if release:
                self._work.notify()

    def stop(self) -> None:
        """Stop the task and wait for it to end (see the module docstring).
        REQUIRES: called from a thread that is not the task's executor."""
        self._stopping = True
        handle = self._handle
        if handle is None or forkguard.generation() != self._generation:
            return          # never started, or the task belongs to the parent process
        self._work.notify()
        try:
            try:
                handle.wait(timeout=STOP_SECONDS)
            except TimeoutError:
                log.error("hedge: maintenance did not stop within %d s; cancelling it", STOP_SECONDS)
                if handle.task is not None:
                    handle.task.cancel()
                handle.wait(timeout=STOP_SECONDS)
        except (Cancelled, ClosedError):
            pass

    def stop_worker(self) -> None:
        """Stop the compaction and flush workers, if they run (never hangs).
        REQUIRES: the task has ended."""
        for worker in (self._worker, self._flush_worker):
            if worker is not None:
                worker.stop()
        self._worker = self._flush_worker = None

    @property
    def worker(self) -> CompactionWorker | None:
        """The compaction worker process's handle, once started."""
        return self._worker

    def settled_since(self, epoch: int) -> bool:
        """Whether the loop went idle after ``epoch`` (an ``idle_epoch``
        read earlier) and nothing is due now."""
        if self._idle_epoch <= epoch or self._compacting is not None or self._warm_flush:
            return False
        sv = self._tree.super_version
        return not sv.imms and self._pick(sv.version) is None

    @property
    def idle_epoch(self) -> int:
        return self._idle_epoch

    def stats(self) -> dict:
        c = self.counters
        return {"count": c["compactions"], "trivial_moves": c["trivial_moves"], "flushes": c["flushes"],
                "flush_bytes": c["flush_bytes"], "flush_worker_failures": c["flush_worker_failures"],
                "bytes_read": c["compaction_bytes_read"],
                "bytes_written": c["compaction_bytes_written"],
                "worker_pid": self._worker.pid if self._worker is not None else None,
                "flush_worker_pid": self._flush_worker.pid if self._flush_worker is not None else None}

    # -- the task --------------------------------------------------------------------
    async def _run(self) -> None:
        tree = self._tree
        try:
            await self._loop()
        except Cancelled:
            raise
        except BaseException as e:  # noqa: BLE001 - a dead task must not leave callers waiting
            tree.record_background_error(e, "the maintenance task")
        finally:
            await self._end_compacting()
            await self._end_release_timer()
            try:
                await self._remove_released()
            except Cancelled:
                raise
            except BaseException as e:  # noqa: BLE001 - orphans are removed at the next open
                log.warning("hedge: could not remove released tables: %s", e)
            tree.changed.notify()

    async def _loop(self) -> None:
        tree = self._tree
        while not self._stopping:
            gen = self._work.generation
            job = self._next_job()
            if job is None:
                if self._compacting is None:
                    self._idle_epoch += 1
                if self._tables.unreleased and self._release_timer is None:
                    self._release_timer = spawn(self._release_wake(), name="release-timer")
                tree.changed.notify()
                await self._work.wait(gen)
                continue
            try:
                await job()
            except Cancelled:
                raise
            except _Stopped:
                break
            except BaseException as e:  # noqa: BLE001
                tree.record_background_error(e, "background flush/compaction")
            tree.changed.notify()

    def _next_job(self):
        """The job due now (a coroutine function), or None.  A compaction for
        the worker process starts here as a task beside the loop."""
        tree = self._tree
        if tree.background_error is not None:
            return None
        sv = tree.super_version
        if sv.imms:
            return self._flush_oldest
        if self._warm_flush:
            return self._start_flush_worker
        if self._tables.has_released:
            return self._remove_released
        if self._held and not self._holds:
            return self._remove_held
        if self._compacting is not None:
            return None
        if self._manual:
            return self._range_step
        task = self._pick(sv.version)
        if task is None:
            return None
        if self._options.compaction_process and not task.trivial_move:
            self._compacting = spawn(self._compact_beside(task), name="compaction")
            return None
        return lambda: self._compact(task)

    def _pick(self, version):
        """The automatic compaction due on ``version``, or None."""
        return policy.pick(version, self._options, self._versions.current.compact_pointers,
                           self._l0_charge.paid_for(version))

    async def _end_compacting(self) -> None:
        """Wait for the compaction beside the loop; cancel it only while it
        waits on the worker process (which kills the worker)."""
        compacting = self._compacting
        if compacting is None:
            return
        if self._on_worker:
            compacting.cancel()
        await _join_quietly(compacting)

    async def _release_wake(self) -> None:
        """Wake the loop after the current poll interval (then doubled), so
        that it takes the tables released meanwhile."""
        try:
            await ops.sleep(self._release_poll)
            self._release_poll = min(self._release_poll * 2, RELEASE_POLL_MAX)
        finally:
            self._release_timer = None
        self._work.notify()

    async def _end_release_timer(self) -> None:
        timer = self._release_timer
        if timer is not None:
            timer.cancel()
            await _join_quietly(timer)

    async def _remove_released(self) -> None:
        """Close, then unlink, each dropped table whose readers are all gone
        (see the module docstring)."""
        released = self._tables.take_released()
        if released:
            self._release_poll = RELEASE_POLL_FIRST
        for number, file in released:
            if file is not None:
                file.close()
            await self._remove_table(number)

    async def _compact_beside(self, task) -> None:
        try:
            await self._compact(task)
        except (Cancelled, _Stopped):
            pass
        except BaseException as e:  # noqa: BLE001
            self._tree.record_background_error(e, "background compaction")
        finally:
            self._compacting = None
            self._work.notify()

    def _check_stop(self) -> None:
        if self._stopping:
            raise _Stopped("the database is closing")

    def _path(self, name: str) -> str:
        return filenames.join(self._versions.directory, name)

    # -- jobs --------------------------------------------------------------------------
    async def _range_step(self) -> None:
        """One level of the oldest manual compaction request."""
        request = self._manual[0]
        try:
            version = self._tree.super_version.version
            if request.last_level is None:
                request.last_level = policy.range_last_level(version, request.start, request.end)
            task = None
            while task is None and request.level < request.last_level:
                task = policy.pick_range(version, self._options, request.level, request.start, request.end)
                request.level += 1
            if task is not None:
                await self._compact(task)
        except BaseException:
            self._finish_request()
            raise
        if request.level >= request.last_level:
            self._finish_request()

    def _finish_request(self) -> None:
        self._manual.popleft().done = True
        self._tree.changed.notify()

    async def _remove_table(self, number: int) -> None:
        """Unlink a table a compaction dropped, or queue it while a deletion
        hold is taken."""
        path = self._tables.path(number)
        with self._hold_lock:
            if self._holds:
                self._held.append(path)
                return
        await _unlink_logged(path)

    async def _remove_held(self) -> None:
        with self._hold_lock:
            if self._holds:
                return
            paths, self._held = self._held, []
        for path in paths:
            await _unlink_logged(path)

    async def _flush_oldest(self) -> None:
        sv = self._tree.super_version
        mem, wal_number = sv.imms[-1]
        opts = self._options
        number = self._versions.new_file_number()
        # Versions no reader can see are dropped, as a compaction drops
        # them: a hot key's overwrites would otherwise fill an L0 table,
        # and every scan that crosses the key would read them all.
        oldest = self._tree.oldest_snapshot()
        built = await self._flush_in_worker(mem, wal_number, number, oldest) if opts.flush_process else None
        if built is None:
            built = await write_table(self._tables.path(number), number, flush_entries(mem, oldest),
                                      opts.block_bytes, opts.bloom_bits_per_key, opts.compression,
                                      check=self._check_stop)
        meta, written = built
        # WALs older than the oldest memtable still unflushed are obsolete.
        remaining = sv.imms[:-1]
        next_wal = remaining[-1][1] if remaining else sv.mem_wal
        edit = VersionEdit(wal_number=next_wal)
        edit.add_file(0, meta)
        await self._install(edit, flushed=mem, counts={"flushes": 1, "flush_bytes": written})
        await _unlink_logged(self._path(filenames.wal_name(wal_number)))

    async def _start_flush_worker(self) -> None:
        """``warm_flush_worker``'s job.  A process that cannot start is left
        to the first flush, which tries again and flushes in this thread
        when that fails too (and says so)."""
        try:
            self._flush_worker = self._usable(self._flush_worker)
        except Exception as e:  # noqa: BLE001 - see the docstring
            log.debug("hedge: the flush worker did not start ahead of the first flush: %s", e)
        finally:
            self._warm_flush = False    # after the worker is in place: other threads see one or the other

    def _usable(self, worker: CompactionWorker | None) -> CompactionWorker:
        """``worker`` when its process still serves, else a new worker
        process (the old one killed)."""
        if worker is not None:
            if worker.usable:
                return worker
            worker.kill()
        return CompactionWorker(self._worker_config)

    async def _flush_in_worker(self, mem, wal_number: int, number: int, oldest_snapshot_seq: int) -> tuple | None:
        """The table of ``mem`` as table ``number`` (FileMeta, bytes
        written), built by the flush worker process from ``mem``'s WAL
        (started on first use); the task waits by polling its socket
        through the ring.  None when the worker failed (or could not
        start): its partial output is removed and the caller flushes the
        memtable itself, which is the truth the WAL must match."""
        opts = self._options
        job = FlushJob(directory=self._versions.directory, wal_number=wal_number, entries=len(mem),
                       max_seq=mem.max_seq, block_bytes=opts.block_bytes,
                       bloom_bits_per_key=opts.bloom_bits_per_key, compression=opts.compression,
                       output_number=number, oldest_snapshot_seq=oldest_snapshot_seq)
        try:
            worker = self._flush_worker = self._usable(self._flush_worker)
            outputs, written = await worker.run(job, _no_more_numbers)
        except Cancelled:
            raise               # stopping: a partial output is an orphan, removed at the next open
        except BaseException as e:  # noqa: BLE001 - the flush goes on in this thread
            log.warning("hedge: the flush worker failed (%s: %s); flushing in the maintenance thread",
                        type(e).__name__, e)
            self.counters["flush_worker_failures"] += 1
            await unlink_quietly(self._tables.path(number))
            return None
        return outputs[0], written

    async def _compact(self, task) -> None:
        tree = self._tree
        if task.trivial_move:
            await self._install(policy.apply(tree.super_version.version, task, []), counts={"trivial_moves": 1})
            return
        inputs = [meta for _level, files in task.inputs() for meta in files]
        oldest = tree.oldest_snapshot()
        opts = self._options
        if opts.compaction_process:
            outputs, written = await self._merge_in_worker(task, inputs, oldest)
        else:
            versions = self._versions

            async def new_number() -> int:
                return versions.new_file_number()

            # No reference to the super version outlives the merge: its
            # inputs are released as soon as the last reader lets go.
            tables = tree.super_version.tables
            readers = [tables[meta.number] for meta in inputs]
            del tables
            outputs, written = await merge_tables(
                readers, directory=versions.directory,
                bottommost=task.bottommost, oldest_snapshot_seq=oldest, max_output_bytes=task.max_output_bytes,
                block_bytes=opts.block_bytes, bloom_bits_per_key=opts.bloom_bits_per_key,
                compression=opts.compression, new_number=new_number,
                check=self._check_stop)
            del readers
        # Flushes may have added L0 tables meanwhile (worker process): the
        # edit is checked against the current version.
        edit = policy.apply(tree.super_version.version, task, outputs)
        await self._install(edit, counts={"compactions": 1, "compaction_bytes_written": written,
                                          "compaction_bytes_read": sum(meta.size for meta in inputs)})
        cache = self._tables.block_cache
        if cache is not None:
            cache.retire_tables(meta.number for meta in inputs)
        await self._remove_released()

    async def _merge_in_worker(self, task, inputs: list, oldest: int) -> tuple[list, int]:
        """The merge of ``_compact`` in the worker process (started on first
        use); the task waits by polling its socket through the ring.  When
        the job fails, every output number reserved for it is removed (a
        dead worker may have left partial tables)."""
        worker = self._worker = self._usable(self._worker)
        versions = self._versions
        reserved = [versions.new_file_number()
                    for _ in range(reserve_count(sum(m.size for m in inputs), task.max_output_bytes))]

        def more(n: int) -> list[int]:
            extra = [versions.new_file_number() for _ in range(n)]
            reserved.extend(extra)
            return extra

        opts = self._options
        job = CompactionJob(directory=versions.directory, inputs=tuple(m.number for m in inputs),
                            direct_io=opts.direct_io, bottommost=task.bottommost, oldest_snapshot_seq=oldest,
                            max_output_bytes=task.max_output_bytes, block_bytes=opts.block_bytes,
                            bloom_bits_per_key=opts.bloom_bits_per_key, compression=opts.compression,
                            output_numbers=tuple(reserved))
        self._on_worker = True
        try:
            return await worker.run(job, more)
        except Cancelled:
            raise               # stopping: partial outputs are orphans, removed at the next open
        except BaseException:
            for number in reserved:
                await unlink_quietly(self._tables.path(number))
            raise
        finally:
            self._on_worker = False

    async def _install(self, edit: VersionEdit, flushed=None, counts: dict | None = None) -> None:
        """Open the tables ``edit`` adds, make it durable and current, and
        swap the super version (dropping the ``flushed`` memtable); the
        tables it deletes leave the table cache.  ``counts`` are added to
        the counters before the swap, so a caller woken by it sees them."""
        tables = self._tables
        current = self._tree.super_version.tables
        added = {}
        pinned = []
        try:
            for _level, meta in edit.added_files:
                if meta.number not in current:      # a trivial move keeps its reader
                    added[meta.number] = await tables.open(meta.number)
            kept = {meta.number for _level, meta in edit.added_files}
            dropped = [number for _level, number in edit.deleted_files if number not in kept]
            # Readers of older super versions may still read the dropped
            # tables after their files are unlinked: keep the files open.
            pinned = await tables.pin(dropped)
            if added:
                # The new tables' names are durable before the edit naming
                # them (a power loss must not keep the edit and lose a name).
                await fsync_directory(self._versions.directory)

            def install(state) -> None:
                for name, n in (counts or {}).items():
                    self.counters[name] += n
                self._tree.install(state.version, added, dropped, flushed)
                for number in dropped:
                    tables.drop(number)

            await self._versions.log_and_apply(edit, install)
        except BaseException:
            for number in added:
                tables.discard(number)
            raise
        finally:
            tables.unpin(pinned)


async def _join_quietly(task) -> None:
    """Wait for ``task`` to end, whatever it raises (the loop is stopping)."""
    try:
        await task
    except BaseException:  # noqa: BLE001 - being stopped
        pass


async def _unlink_logged(path: str) -> None:
    try:
        await ops.unlink(path)
    except Exception as e:  # noqa: BLE001 - an orphan is removed on the next open
        log.warning("hedge: could not remove %s: %s", path, e)


def _no_more_numbers(n: int) -> list[int]:
    """A flush job's answer to a request for more output numbers: none (it
    writes the one it was given)."""
    return []
