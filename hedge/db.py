"""The public database API: ``hedge.open`` -> ``DB``.

``DB`` methods are plain blocking calls usable from any thread that is not
running a hedge task: the calling thread runs the engine coroutine itself,
on an executor and ring of its own (hedge/exec/caller.py), with no hop to
another thread.  ``db.aio`` has the same operations as coroutines: awaited
by a task on a hedge executor (inside ``db.run(...)``, ``hedge.spawn``) they
run there; awaited from an asyncio task they run on the loop thread's
executor, whose completions wake the loop.  ``db.run(coro)`` runs a whole
program on the pinned foreground pool.

Lifecycle: open takes the directory lock (flock on LOCK; a second open
anywhere fails with LockError; the kernel drops the lock of a killed
process), starts the pools, recovers (hedge/lsm/recovery.py) and starts the
maintenance task.  ``close`` refuses new calls, waits for in-progress
writes, syncs the WAL, stops maintenance, closes every file and thread and
releases the lock.  After close every call raises ClosedError.  In a child
process forked while the database was open every call raises ForkError, and
close returns at once (hedge/directory.py checks and locks the directory).

Read-only (``read_only=True``): the lock is taken shared (other read-only
opens, in any process, may hold it too; a writer's exclusive lock fails
while any does, and a read-only open fails while a writer holds it);
recovery replays the WALs into memory and writes nothing; no maintenance
task runs; every write (put, remove, write, write_batch, flush, compact,
on the blocking API and db.aio) raises ReadOnlyError before anything
changes.  Reads, snapshots, properties and checkpoint work.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable, Iterator
from time import perf_counter_ns
from typing import Any, Generic, Literal, Self, TypeAlias, TypeVar, overload

from hedge import directory as dbdir
from hedge.cursor import AsyncCursor, Cursor
from hedge.errors import ClosedError, ForkError, HedgeError, ReadOnlyError, WrongThreadError
from hedge.exec import forkguard
from hedge.exec.caller import CallerExecutors
from hedge.exec.executor import current_executor_or_none
from hedge.exec.pool import Pools
from hedge.io.backend import resolve_method
from hedge.io.traps import reschedule
from hedge.lsm.batch import WriteBatch
from hedge.lsm.cache import BlockCache
from hedge.lsm.cursor import SCAN_CHUNK_MAX, SCAN_CHUNK_MIN, EngineCursor
from hedge.lsm.engine import Engine
from hedge.lsm.keys import check_key, key_after, prefix_end
from hedge.lsm.lookup import NeedsIO
from hedge.lsm.properties import approximate_size, get_property
from hedge.options import Options

log = logging.getLogger("hedge")

# The asyncio loop running on this thread, or None (asyncio.get_running_loop
# without the exception when there is none: the asyncio paths ask on every call).
_running_loop = asyncio._get_running_loop

# What a scan yields.
PAIRS, KEYS, VALUES = 0, 1, 2

BytesLike: TypeAlias = bytes | bytearray | memoryview      # keys and values; stored and returned as bytes
StrPath: TypeAlias = str | os.PathLike[str]
T = TypeVar("T")
Item = TypeVar("Item")     # what a scan yields: (key, value) pairs, keys or values


def open(path: StrPath, create: bool = True, **options: Any) -> "DB":  # noqa: A001 - the API's name
    """Open (or create) the database in directory ``path``.

    Options are keywords (see hedge.Options); an unknown one or a value of
    the wrong type is a TypeError, a value out of range a ValueError.
    With read_only=True the database must exist (it is never created) and
    nothing is written (see the module docstring).
    Raises LockError when the database is open elsewhere (for read_only,
    when a writer has it open), CorruptionError
    when its files are damaged, HedgeIOError for I/O failures and for a path
    that cannot hold a database (errno and path kept), HedgeError when it
    does not exist and create=False, exists and error_if_exists=True, or
    would be created among files that are not hedge's (without
    allow_foreign_files=True).
    """
    opts = Options(create=create, **options).validate()
    return DB._open(os.fspath(path), opts)


class DB:
    def __init__(self, directory: str, options: Options, lock, pools: Pools, engine: Engine, io_method: str):
        self.directory = directory
        self.options = options
        self._lock = lock
        self._generation = forkguard.generation()
        self._pools = pools
        self._fg = pools.foreground
        self._calls = _Calls(engine, CallerExecutors(io_method, options.ring_entries, options.ring_submit_min),
                             self._generation)
        self._callers = self._calls.callers
        self._engine = engine
        self._inline_writers = threading.Lock()    # DB._write: one blocking write_now at a time
        self.recovery = engine.recovery
        self._close_lock = threading.Lock()
        self.aio = AsyncDB(self._calls, pools, options)

    @classmethod
    def _open(cls, directory: str, options: Options) -> "DB":
        dbdir.prepare(directory, options)
        lock = dbdir.lock(directory, shared=options.read_only)
        pools = None
        try:
            io_method = resolve_method(options.io_method)
            pools = Pools(io_method=io_method, ring_entries=options.ring_entries,
                          foreground_threads=options.foreground_threads,
                          background_threads=options.background_threads, pin=options.pin,
                          foreground_cpus=_cpu_set(options.foreground_cpus),
                          background_cpus=_cpu_set(options.background_cpus),
                          submit_min=options.ring_submit_min).start()
            cache = BlockCache(options.block_cache_bytes) if options.block_cache_bytes else None
            engine = Engine.open(directory, options, pools, cache, io_method)
        except BaseException:
            if pools is not None:
                pools.close()
            lock.close()
            raise
        return cls(directory, options, lock, pools, engine, io_method)

    # -- helpers ----------------------------------------------------------------
    def _call(self, coro):
        return self._calls.call(coro)

    def _check(self) -> None:
        self._calls.check()

    def _write(self, batch: WriteBatch, sync: bool) -> None:
        """Commit ``batch`` in place when nothing needs to wait (no sync, no
        other writer, no memtable switch or stall: Engine.write_now), else
        through the engine coroutine on this thread's executor.

        Blocking unsynced writers take turns on ``_inline_writers`` for
        ``write_now``: a writer that finds another thread's write in place
        (which gives up the GIL in its WAL ``pwrite``) waits for it to end,
        on a lock, instead of finding the commit queue busy and parking in
        its ring, which every later writer then had to do too
        (docs/design.md, "Blocking writers from many threads")."""
        calls = self._calls
        calls.check_writable()
        calls.check_blocking()
        if not sync:
            with self._inline_writers:
                if self._engine.write_now(batch):
                    return
        calls.call(self._engine.write(batch, sync))

    def _check_writable(self) -> None:
        self._calls.check_writable()

    @property
    def read_only(self) -> bool:
        """Whether the database was opened with ``read_only=True``."""
        return self.options.read_only

    # -- the API --------------------------------------------------------------------
    def put(self, key: BytesLike, value: BytesLike, sync: bool = False) -> None:
        """Store ``value`` under ``key``.  With sync=True the write is on
        stable storage when put returns; otherwise it has reached the OS
        (survives a process crash, not a power loss)."""
        batch = WriteBatch()
        batch.put(key, value)
        self._write(batch, sync)

    @overload
    def get(self, key: BytesLike) -> bytes | None: ...
    @overload
    def get(self, key: BytesLike, default: T) -> bytes | T: ...

    def get(self, key: BytesLike, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` (None) when absent."""
        self._calls.check_blocking()
        value = self._engine.get_now(key)
        if type(value) is NeedsIO:
            value = self._calls.call(value.finish())
        return default if value is None else value

    def remove(self, key: BytesLike, sync: bool = False) -> None:
        """Delete ``key`` (a tombstone; absent keys are fine)."""
        batch = WriteBatch()
        batch.remove(key)
        self._write(batch, sync)

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        """Apply every operation of ``batch`` atomically."""
        self._check_writable()
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"write() takes a hedge.WriteBatch, not {type(batch).__name__}")
        self._write(batch, sync)

    def multi_get(self, keys: Iterable[BytesLike]) -> list[bytes | None]:
        """Values for ``keys`` (None where absent), looked up concurrently."""
        keys = [check_key(k) for k in keys]
        self._calls.check_blocking()
        return self._calls.finish_gets(self._engine.multi_get_now(keys))

    @overload
    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: Literal[True] = True, include_value: Literal[True] = True, reverse: bool = False,
             limit: int | None = None) -> "ScanIterator[tuple[bytes, bytes]]": ...
    @overload
    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: bool = True, include_value: bool = True, reverse: bool = False,
             limit: int | None = None) -> "ScanIterator[bytes]": ...

    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: bool = True, include_value: bool = True, reverse: bool = False,
             limit: int | None = None) -> "ScanIterator[Any]":
        """Iterate (key, value) pairs in key order over the snapshot taken
        now: keys from ``start`` (inclusive unless include_start=False) to
        ``end`` (exclusive unless include_end=True), None meaning unbounded,
        and starting with ``prefix`` when given.  With include_value=False
        it yields keys only, with include_key=False values only (plyvel's
        names).  With reverse=True the keys come in descending order (same
        range).  With ``limit``, at most that many items come, and the scan
        reads no further than they need.  ``close()`` the iterator to stop
        early: later ``next()`` calls raise StopIteration (ClosedError after
        ``db.close()``).  Raises TypeError or ValueError for a bad option,
        before reading anything."""
        self._check()
        start, end, shape = _scan_args(start, end, prefix, include_start, include_end, include_key, include_value)
        # The first chunk takes the snapshot now, not at the first next().
        return _blocking_scan(self._calls, self._engine, start, end, None, reverse, shape, limit)

    def cursor(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
               prefix: BytesLike | None = None, include_start: bool = True,
               include_end: bool = False) -> Cursor:
        """A cursor over a snapshot taken now, limited to the range ``scan``
        takes (same options), not positioned yet: seek(key),
        seek_for_prev(key), seek_to_first(), seek_to_last(), next(), prev(),
        valid(), key(), value(), item(), close() (hedge/cursor.py).  It pins
        its snapshot until closed."""
        self._check()
        lower, upper = _cursor_range(start, end, prefix, include_start, include_end)
        sid, seq = self._engine.acquire_snapshot()
        return Cursor(self._calls, EngineCursor(self._engine, seq, lower, upper), self._calls.check, sid)

    def flush(self) -> None:
        """Write the memtable(s) to tables now; return when durable."""
        self._check_writable()
        self._call(self._engine.flush())

    def compact(self, start: BytesLike | None = None, end: BytesLike | None = None) -> None:
        """Flush, then compact.  With no range, run the compactions the
        policy finds due until none is.  With a range (either bound given;
        None: unbounded on that side), first merge every table overlapping
        [start, end] level by level, from L0 down to the deepest level
        holding any of the range (LevelDB's CompactRange), dropping its
        tombstones there when nothing lies below; then as without a range.
        Raises ValueError when start > end."""
        self._check_writable()
        start, end = _key_range(start, end)
        self._call(self._engine.compact(start, end))

    def checkpoint(self, path: StrPath) -> None:
        """Write a consistent copy of the database into directory ``path``
        (missing or empty) that opens as a database of its own, while this
        one goes on: every write acknowledged before the call is in it.
        Flushes first, then hard-links the tables (copies them across file
        systems) and writes a fresh manifest and CURRENT; no WAL is copied.
        Raises HedgeError when ``path`` is not an empty directory,
        HedgeIOError, BackgroundError."""
        target = os.fspath(path)
        self._call(self._engine.checkpoint(target))

    def approximate_size(self, start: BytesLike | None = None, end: BytesLike | None = None,
                         include_memtables: bool = True) -> int:
        """Approximate bytes the keys in [start, end) take (None: unbounded):
        the table blocks that may hold them (whole tables when the range
        covers them; from the tables' in-memory indexes, no I/O) plus, with
        ``include_memtables``, a share of the memtables' approximate bytes.
        Old versions and tombstones count until compaction drops them."""
        self._check()
        start, end = _key_range(start, end)
        return approximate_size(self._engine.super_version, start, end, include_memtables)


    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run the coroutine ``coro`` on a foreground executor thread (where
        it may spawn and gather hedge tasks) and return its result.  Raises
        TypeError for anything but a coroutine object."""
        if not (hasattr(coro, "send") and hasattr(coro, "throw") and hasattr(coro, "close")):
            hint = " (call it: db.run(job()))" if callable(coro) else ""
            raise TypeError(f"db.run() takes a coroutine object, not {type(coro).__name__}{hint}")
        try:
            self._check()
        except BaseException:
            coro.close()
            raise
        return self._fg.run_sync(coro)

    def stats(self) -> dict[str, Any]:
        """Levels, memtables, WAL and compaction counters, cache and
        per-executor I/O counters, and the pinning layout."""
        self._check()
        return _stats(self._calls, self._pools, self.options)

    def snapshot(self) -> "Snapshot":
        """A read-only view of the database as it is now: get, multi_get and
        scan on it see no later write.  Release it with ``close()`` (or use
        it as a context manager); until then compactions keep what it sees."""
        self._check()
        return _snapshot(self._calls)

    # -- the dict face ----------------------------------------------------------------
    def __getitem__(self, key: BytesLike) -> bytes:
        """``db[key]``: the value, or KeyError when absent."""
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: BytesLike, value: BytesLike) -> None:
        """``db[key] = value``: ``put(key, value)``."""
        self.put(key, value)

    def __delitem__(self, key: BytesLike) -> None:
        """``del db[key]``: ``remove(key)``; an absent key is no error (as in
        rocksdict: a tombstone is written without a lookup)."""
        self.remove(key)

    def __contains__(self, key: BytesLike) -> bool:
        return self.get(key) is not None

    def __iter__(self) -> Iterator[bytes]:
        """The keys, in order, over a snapshot taken now."""
        return (key for key, _ in self.scan())

    @contextlib.contextmanager
    def write_batch(self, sync: bool = False) -> Iterator[WriteBatch]:
        """``with db.write_batch(sync=...) as batch:`` collects puts and
        removes and applies them atomically when the block ends, unless an
        exception escaped it (then nothing is written)."""
        self._check_writable()
        batch = WriteBatch()
        yield batch
        self.write(batch, sync)

    @property
    def closed(self) -> bool:
        return self._calls.closed

    def __del__(self):
        calls = getattr(self, "_calls", None)
        if calls is None or calls.closed:
            return
        if sys.is_finalizing():
            # Threads may be gone already: release the lock only.  Every
            # acknowledged write has reached the OS.
            self._lock.close()
            return
        warnings.warn(f"hedge: the database at {self.directory} was not closed; closing it now",
                      ResourceWarning, source=self)
        try:
            self.close()
        except Exception as e:  # noqa: BLE001 - nowhere to raise it
            log.error("hedge: closing an abandoned database failed: %s", e)

    def close(self) -> None:
        """Close the database (idempotent).  Unsynced writes are synced first.
        Returns, from every caller, only once the directory lock is released.
        In a child process forked after open, close returns at once and
        touches nothing of the parent's: it only closes the child's copy of
        the lock's descriptor (the parent keeps the lock)."""
        if forkguard.generation() != self._generation:
            if not self._calls.closed:
                self._calls.closed = True
                self._lock.close()
            return
        with self._close_lock:
            if self._calls.closed:
                return
            self._calls.closed = True
            try:
                self._engine.close()
            finally:
                try:
                    # After the engine: calls still running on callers'
                    # threads end (ClosedError) before their rings go.
                    self._callers.close()
                    self._pools.close()
                finally:
                    self._lock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<hedge.DB {self.directory!r} {'closed' if self.closed else 'open'}>"

    # Last in the class: the name ``property`` shadows the builtin below it.
    def property(self, name: str) -> int | float:
        """The named property ``name`` (see hedge/lsm/properties.py and
        docs/api.md: level counts and sizes, table counts and bytes,
        memtable bytes, key estimate, write and space amplification).
        Raises ValueError for an unknown name."""
        self._check()
        return get_property(self._engine, name)


class Snapshot:
    """The database at one sequence number (``db.snapshot()``).  Blocking
    ``get``/``multi_get``/``scan`` here; the same as coroutines on ``aio``.
    Any thread may use it; ``close()`` releases it (idempotent)."""

    def __init__(self, calls: "_Calls", sid: int, seq: int):
        self._calls = calls
        self._engine = calls.engine
        self._sid = sid
        self.sequence = seq
        self._closed = False
        self.aio = _AsyncSnapshot(self)

    def _check(self) -> None:
        if self._closed:
            raise ClosedError("the snapshot is released")
        self._calls.check()

    @overload
    def get(self, key: BytesLike) -> bytes | None: ...
    @overload
    def get(self, key: BytesLike, default: T) -> bytes | T: ...

    def get(self, key: BytesLike, default: Any = None) -> Any:
        """The value ``key`` had when the snapshot was taken, or ``default``."""
        self._check()
        self._calls.check_blocking()
        value = self._engine.get_now(key, self.sequence)
        if type(value) is NeedsIO:
            value = self._calls.call(value.finish())
        return default if value is None else value

    def multi_get(self, keys: Iterable[BytesLike]) -> list[bytes | None]:
        """The values ``keys`` had at the snapshot (None where absent)."""
        self._check()
        keys = [check_key(k) for k in keys]
        self._calls.check_blocking()
        return self._calls.finish_gets(self._engine.multi_get_now(keys, self.sequence))

    @overload
    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: Literal[True] = True, include_value: Literal[True] = True, reverse: bool = False,
             limit: int | None = None) -> "ScanIterator[tuple[bytes, bytes]]": ...
    @overload
    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: bool = True, include_value: bool = True, reverse: bool = False,
             limit: int | None = None) -> "ScanIterator[bytes]": ...

    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: bool = True, include_value: bool = True, reverse: bool = False,
             limit: int | None = None) -> "ScanIterator[Any]":
        """``DB.scan`` as the database was at the snapshot."""
        self._check()
        start, end, shape = _scan_args(start, end, prefix, include_start, include_end, include_key, include_value)
        return _blocking_scan(self._calls, self._engine, start, end, self.sequence, reverse, shape, limit)

    def cursor(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
               prefix: BytesLike | None = None, include_start: bool = True,
               include_end: bool = False) -> Cursor:
        """``DB.cursor`` as the database was at the snapshot; its steps
        raise ClosedError once the snapshot is released."""
        self._check()
        lower, upper = _cursor_range(start, end, prefix, include_start, include_end)
        return Cursor(self._calls, EngineCursor(self._engine, self.sequence, lower, upper), self._check, None)

    def close(self) -> None:
        """Release the snapshot: compactions may drop what only it saw."""
        if not self._closed:
            self._closed = True
            self._engine.release_snapshot(self._sid)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self):
        if not getattr(self, "_closed", True):
            self.close()


def _stats(calls: "_Calls", pools: Pools, options: Options) -> dict[str, Any]:
    """``DB.stats``: the engine's figures, the pools' and callers' I/O
    counters and layout, and the options that shape them."""
    out = calls.engine.stats()
    pool_stats = pools.stats()
    out["layout"] = pool_stats["layout"]
    out["foreground"] = pool_stats["foreground"]
    out["background"] = pool_stats["background"]
    out["callers"] = calls.callers.stats()
    out["io_method"] = calls.engine.io_method
    out["options"] = {"direct_io": options.direct_io,
                      "block_cache_bytes": options.block_cache_bytes,
                      "memtable_bytes": options.memtable_bytes}
    return out


def _snapshot(calls: "_Calls") -> Snapshot:
    sid, seq = calls.engine.acquire_snapshot()
    return Snapshot(calls, sid, seq)


class _AsyncSnapshot:
    """``snapshot.aio``: the snapshot's reads as coroutines (hedge tasks or
    asyncio tasks, as ``db.aio``)."""

    def __init__(self, snapshot: Snapshot):
        self._snapshot = snapshot

    def get(self, key: BytesLike) -> Awaitable[bytes | None]:
        s = self._snapshot
        s._check()
        return s._calls.awaitable(s._engine.get(key, s.sequence))

    def multi_get(self, keys: Iterable[BytesLike]) -> Awaitable[list[bytes | None]]:
        s = self._snapshot
        s._check()
        return s._calls.awaitable(s._engine.multi_get(keys, s.sequence))

    @overload
    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: Literal[True] = True, include_value: Literal[True] = True, reverse: bool = False,
             limit: int | None = None) -> AsyncScan[tuple[bytes, bytes]]: ...
    @overload
    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: bool = True, include_value: bool = True, reverse: bool = False,
             limit: int | None = None) -> AsyncScan[bytes]: ...

    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: bool = True, include_value: bool = True, reverse: bool = False,
             limit: int | None = None) -> AsyncScan[Any]:
        s = self._snapshot
        s._check()
        start, end, shape = _scan_args(start, end, prefix, include_start, include_end, include_key, include_value)
        return AsyncScan(s._calls, (s._engine, start, end, s.sequence, reverse, shape, _check_limit(limit)))

    def cursor(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
               prefix: BytesLike | None = None, include_start: bool = True,
               include_end: bool = False) -> AsyncCursor:
        """``Snapshot.cursor`` with awaitable seeks and steps."""
        s = self._snapshot
        s._check()
        lower, upper = _cursor_range(start, end, prefix, include_start, include_end)
        return AsyncCursor(s._calls, EngineCursor(s._engine, s.sequence, lower, upper), s._check, None)


class ScanIterator(Iterator[Item], Generic[Item]):
    """Blocking iterator over an engine scan (``Engine.scan``, which hands
    out chunks).  Each refill runs the scan on the calling thread's executor
    for its next chunk: SCAN_CHUNK_MIN pairs first, doubling up to
    SCAN_CHUNK_MAX, never more than the ``limit`` leaves.  The first chunk
    is fetched at once, which takes the snapshot."""

    def __init__(self, calls: "_Calls", chunks, want: int, shape: int = PAIRS, limit: int | None = None):
        """``chunks``: ``Engine.scan`` not started yet, given ``want`` and
        ``limit``."""
        self._calls = calls
        self._chunks = chunks
        self._shape = shape
        self._want = want
        self._left = limit          # items still to hand out (None: no limit)
        self._started = False
        self._chunk: list = []
        self._pos = 0
        self._exhausted = limit == 0
        if not self._exhausted:
            self._refill()

    def _refill(self) -> None:
        want = self._want
        chunk = self._calls.call(_next_chunk(self._chunks, want if self._started else None))
        self._started = True
        self._exhausted, self._want, self._left = _after_chunk(len(chunk), want, self._left)
        self._chunk = _shaped(chunk, self._shape)
        self._pos = 0

    def __iter__(self) -> Self:
        return self

    def _refuse_if_closed(self) -> None:
        """Once the database is closed: end the iterator and raise
        ClosedError."""
        if self._calls.closed:
            self._exhausted = True
            self._chunk = []
            raise ClosedError("the database is closed")

    def __next__(self) -> Item:
        self._refuse_if_closed()
        pos = self._pos
        if pos >= len(self._chunk):
            if self._exhausted:
                raise StopIteration
            self._refill()
            if not self._chunk:
                raise StopIteration
            pos = 0
        self._pos = pos + 1
        return self._chunk[pos]

    def to_list(self) -> list[Item]:
        """The items not taken yet, in one list, without a step per item
        (``list(it)`` calls ``__next__`` for each); the scan is over after
        it.  Raises like ``next``."""
        self._refuse_if_closed()
        items = self._chunk[self._pos:]
        while not self._exhausted:
            self._refill()
            items += self._chunk
        self._chunk = []
        self._pos = 0
        return items

    def __enter__(self) -> "ScanIterator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the scan and release its snapshot."""
        if not self._exhausted:
            self._exhausted = True
            self._chunk = []
            try:
                self._calls.call(self._chunks.aclose())
            except HedgeError:
                pass


def _check_limit(limit) -> int | None:
    """``limit`` checked: None or an int >= 0.  Raises TypeError, ValueError."""
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    return limit


def _first_want(limit: int | None) -> int:
    """The size of a scan's first chunk: SCAN_CHUNK_MIN (a short scan
    merges no more than it needs), or with a limit all of it up to
    SCAN_CHUNK_MAX (the caller said how many it needs)."""
    return SCAN_CHUNK_MIN if limit is None else max(1, min(limit, SCAN_CHUNK_MAX))


def _after_chunk(n: int, want: int, left: int | None) -> tuple[bool, int, int | None]:
    """After a chunk of ``n`` items asked as ``want`` with ``left`` still
    allowed by the limit: (whether the scan is over, the next want, what
    the limit leaves)."""
    if left is not None:
        left -= n
        if left <= 0:
            return True, want, 0
    done = n < want
    want = min(want * 2, SCAN_CHUNK_MAX)
    if left is not None and left < want:
        want = left
    return done, want, left


def _blocking_scan(calls: "_Calls", engine: Engine, start, end, snap, reverse: bool, shape: int,
                   limit) -> ScanIterator:
    limit = _check_limit(limit)
    want = _first_want(limit)
    return ScanIterator(calls, engine.scan(start, end, snap, reverse, want, limit), want, shape, limit)


def _shaped(chunk: list, shape: int) -> list:
    """A chunk of pairs as the scan's shape asks: itself, or its keys or
    its values."""
    if shape == PAIRS:
        return chunk
    i = 0 if shape == KEYS else 1
    return [item[i] for item in chunk]


async def _async_scan(engine: Engine, start, end, snap, reverse: bool, shape: int, limit):
    """The items of an engine scan one by one (db.aio scans), shaped as
    the scan asks (pairs, keys or values), its chunks sized as
    ``ScanIterator`` sizes them: the first as ``_first_want`` says, then
    as ``_after_chunk`` does, until the scan or its limit ends.  Closing
    it closes the engine scan."""
    if limit == 0:
        return
    want = _first_want(limit)
    left = limit
    chunks = engine.scan(start, end, snap, reverse, want, limit)
    try:
        chunk = await chunks.__anext__()
        while True:
            for item in _shaped(chunk, shape):
                yield item
            done, want, left = _after_chunk(len(chunk), want, left)
            if done:
                return
            chunk = await chunks.asend(want)
    finally:
        await chunks.aclose()


async def _scan_list(engine: Engine, start, end, snap, reverse: bool, shape: int, limit) -> list:
    """Every item of an engine scan in one list (``AsyncScan.to_list``):
    the chunks are joined, with no step per item.  Without a limit the
    chunks are SCAN_CHUNK_MAX pairs from the first: all of them are
    wanted.  The chunk loop of ``_async_scan``, collecting instead of
    yielding: an async generator between this and the engine's scan cost
    a short scan 1.5 of its 22 µs (docs/design.md, "Scans")."""
    if limit == 0:
        return []
    want = SCAN_CHUNK_MAX if limit is None else _first_want(limit)
    items: list = []
    left = limit
    chunks = engine.scan(start, end, snap, reverse, want, limit)
    try:
        chunk = await chunks.__anext__()
        while True:
            items += _shaped(chunk, shape)
            done, want, left = _after_chunk(len(chunk), want, left)
            if done:
                break
            chunk = await chunks.asend(want)
    finally:
        await chunks.aclose()
    return items


async def _no_items():
    """An async iterator with nothing left (a scan ``to_list`` took)."""
    return
    yield


async def _rest_of(iterator) -> list:
    return [item async for item in iterator]


class AsyncScan(AsyncIterator[Item], Generic[Item]):
    """What ``db.aio.scan`` and ``snapshot.aio.scan`` return: an async
    iterator over the scan's items (``async for``), whose ``to_list()``
    takes them all at once.

    ``async for`` steps the engine's scan item by item: in a hedge task
    through one async generator, from asyncio each step on the loop
    thread's executor.  ``to_list()`` joins the scan's chunks instead, with
    no step per item, which is most of what a short scan costs once its
    blocks are in memory.  Nothing runs until the first step or
    ``to_list()``; the snapshot is taken then.  One consumer at a time."""

    __slots__ = ("_calls", "_args", "_it")

    def __init__(self, calls: "_Calls", args: tuple):
        """``args``: those of ``_async_scan`` (engine, start, end, snap,
        reverse, shape, limit)."""
        self._calls = calls
        self._args = args
        self._it = None

    def _iterator(self):
        it = self._it
        if it is None:
            it = self._it = self._calls.aiter(_async_scan(*self._args))
        return it

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._iterator()

    def __anext__(self) -> Awaitable[Item]:
        return self._iterator().__anext__()

    def aclose(self) -> Awaitable[None]:
        """Stop the scan and release its snapshot."""
        return self._iterator().aclose()

    def to_list(self) -> Awaitable[list[Item]]:
        """The items not taken yet, in one list (all of them when iteration
        has not begun); the scan is then over."""
        it = self._it
        if it is not None:
            return _rest_of(it)
        self._it = _no_items()
        return self._calls.awaitable(_scan_list(*self._args))


def _scan_args(start, end, prefix, include_start: bool, include_end: bool, include_key: bool,
               include_value: bool) -> tuple[bytes | None, bytes | None, int]:
    """The engine's half-open range [start, end) and the shape of a scan
    with ``DB.scan``'s options.  The key right after ``k`` is ``k + 0x00``
    (keys.key_after), so bounds become half-open without filtering."""
    empty = False
    if start is not None:
        start = check_key(start)
        if not include_start:
            start = key_after(start)
            empty = start is None           # nothing follows the largest key there can be
    if end is not None:
        end = check_key(end)
        if include_end:
            end = key_after(end)
    if prefix is not None:
        prefix = check_key(prefix)
        if start is None or start < prefix:
            start = prefix
        after = prefix_end(prefix)
        if after is not None and (end is None or after < end):
            end = after
    if not include_key and not include_value:
        raise ValueError("a scan needs include_key or include_value")
    if empty:
        start = end = b"\xff"
    shape = PAIRS if include_key and include_value else KEYS if include_key else VALUES
    return start, end, shape


def _cursor_range(start, end, prefix, include_start: bool, include_end: bool) -> tuple[bytes | None, bytes | None]:
    """A cursor's half-open range [lower, upper) from ``scan``'s options."""
    lower, upper, _shape = _scan_args(start, end, prefix, include_start, include_end, True, True)
    return lower, upper


async def _next_chunk(chunks, want: int | None) -> list:
    """The next chunk of an engine scan (``want``: None for the first, which
    the scan was started with)."""
    return await chunks.asend(want)


class _Calls:
    """How one open database runs engine coroutines for its callers: the
    blocking API on the calling thread's executor, db.aio in a hedge task
    or on an asyncio loop's.  DB, db.aio and iterators share it; none of
    them holds the DB, so a DB dropped without close is freed (and closed)
    at once."""

    __slots__ = ("engine", "callers", "closed", "generation")

    def __init__(self, engine: Engine, callers: CallerExecutors, generation: int):
        self.engine = engine
        self.callers = callers
        self.closed = False
        self.generation = generation      # the fork generation of the opening process

    def check(self) -> None:
        """Raise ForkError in a child forked after open, ClosedError after close."""
        if forkguard.generation() != self.generation:
            raise ForkError("this database was opened before os.fork(); the child process must open its own")
        if self.closed:
            raise ClosedError("the database is closed")

    def check_blocking(self) -> None:
        """``check``, and WrongThreadError on a thread running a hedge task
        (a blocking call there would block its executor)."""
        self.check()
        if current_executor_or_none() is not None:
            raise WrongThreadError("a blocking hedge call from code running on a hedge executor would "
                                   "block that executor; await the db.aio form instead")

    def check_writable(self) -> None:
        """``check``, then raise ReadOnlyError for a read-only database."""
        self.check()
        if self.engine.read_only:
            raise ReadOnlyError("the database was opened with read_only=True")

    def call(self, coro):
        """Run ``coro`` on the calling thread's executor; return its result."""
        try:
            self.check()
            executor = self.callers.current()
        except BaseException:
            coro.close()
            raise
        return executor.run(coro)

    def finish_gets(self, values: list) -> list:
        """``values`` of Engine.multi_get_now, with the lookups that need a
        block read run concurrently on this thread's executor."""
        for value in values:
            if type(value) is NeedsIO:
                return self.call(self.engine.finish_gets(values))
        return values

    def awaitable(self, coro):
        """For a hedge task, ``coro`` followed by a checkpoint (the other
        ready tasks of the executor get their turn); for an asyncio task, a
        coroutine running it on the loop thread's executor."""
        if forkguard.generation() != self.generation:
            coro.close()
            self.check()
        loop = _asyncio_caller_loop()
        if loop is not None:
            return self.in_loop(loop, coro)
        return _then_checkpoint(coro)

    def aiter(self, agen):
        """For a hedge task, ``agen`` (an engine async iterator) itself; for
        an asyncio task, one whose steps run on the loop thread's executor."""
        loop = _asyncio_caller_loop()
        if loop is not None:
            return _LoopScan(self, loop, agen)
        return agen

    def loop_executor(self, loop):
        """This thread's executor, attached to ``loop`` (running on this
        thread).  Raises ClosedError once the database is closed."""
        executor = self.callers.current()
        executor.attach_loop(loop)
        return executor

    async def in_loop(self, loop, coro):
        try:
            executor = self.loop_executor(loop)
        except BaseException:
            coro.close()
            raise
        value, future = executor.start_in_loop(coro)
        if future is None:
            return value
        return await future


async def _then_checkpoint(coro, executor=None):
    """Await ``coro``, then, when the task has gone on for TURN_NS with
    operations that completed without waiting (Executor.turn_over), let
    the executor's other ready tasks run: a task whose operations complete
    without waiting (a memtable hit, a write group of one) would otherwise
    keep its executor to itself.  An operation that waited (for a read, for
    its write group) gave the others their turn already.  ``executor``:
    the caller's current executor when it has looked it up (else it is
    looked up here; None outside a hedge task)."""
    if executor is None:
        executor = current_executor_or_none()
        if executor is None:
            return await coro
    steps = executor.task_steps
    started = perf_counter_ns()
    result = await coro
    if executor.task_steps == steps and executor.turn_over(started):
        await reschedule()
    return result


async def _get_then_checkpoint(executor, engine: Engine, key):
    """``_then_checkpoint(engine.get(key), executor)`` in one coroutine
    instead of two: the get a hedge task awaits most often.  Suspends only
    for the blocks that are not cached; a get that did not suspend counts
    toward the task's turn (Executor.turn_over) like any such operation.
    REQUIRES: ``executor`` is the calling task's."""
    steps = executor.task_steps
    started = perf_counter_ns()
    value = engine.get_now(key)
    if type(value) is NeedsIO:
        value = await value.finish()
    if executor.task_steps == steps and executor.turn_over(started):
        await reschedule()
    return value


def _asyncio_caller_loop():
    """The asyncio loop running on this thread when the caller is not a
    hedge task (whose calls run on its own executor), else None."""
    if current_executor_or_none() is not None:
        return None
    return _running_loop()


async def _get_in_loop(calls: _Calls, loop, key):
    """``db.aio.get`` in an asyncio task: answered in this one coroutine
    when no block needs a ring read, within the loop iteration's budget of
    calls answered in place (``CallerExecutor.take_in_place``); otherwise
    run on the loop thread's executor like any other call (``in_loop``)."""
    executor = calls.loop_executor(loop)
    engine = calls.engine
    if executor.take_in_place():
        value = engine.get_now(key)
        if type(value) is not NeedsIO:
            return value
        return await calls.in_loop(loop, value.finish())
    return await calls.in_loop(loop, engine.get(key))


async def _write_in_loop(calls: _Calls, loop, key, value, remove: bool) -> None:
    """``db.aio.put`` (or ``remove``) without sync in an asyncio task:
    committed in place (``Engine.write_now``) when no other writer leads
    and no memtable switch or stall is due, within the budget of calls
    answered in place; otherwise through the commit queue on the loop
    thread's executor.  The key and value are checked when awaited, as
    in the engine's own ``put``."""
    executor = calls.loop_executor(loop)
    engine = calls.engine
    batch = WriteBatch()
    if remove:
        batch.remove(key)
    else:
        batch.put(key, value)
    if executor.take_in_place() and engine.write_now(batch):
        return
    await calls.in_loop(loop, engine.write(batch))


class AsyncDB:
    """Coroutine forms of the DB operations (``db.aio``).

    Each method that may do I/O returns an awaitable.  Called in a task of
    a hedge executor (inside ``db.run``, ``hedge.spawn``) it is the engine's
    coroutine, run by that executor.  Called in an asyncio task it is a
    coroutine that runs the engine on the loop thread's executor: requests
    of many tasks share one submission and completions wake the loop, which
    never blocks on I/O.

    ``approximate_size``, ``property``, ``stats`` and ``snapshot`` do no I/O
    and never wait: they are plain methods here too, returning their result
    at once (as on DB), from any thread, hedge task or asyncio task.
    ``run``, ``write_batch`` and ``close`` have no counterpart (docs/api.md
    says why).  AsyncDB holds the calls, the pools and the options, never
    the DB.
    """

    def __init__(self, calls: _Calls, pools: Pools, options: Options):
        self._calls = calls
        self._engine = calls.engine
        self._pools = pools
        self._options = options

    def put(self, key: BytesLike, value: BytesLike, sync: bool = False) -> Awaitable[None]:
        calls = self._calls
        calls.check_writable()
        executor = current_executor_or_none()
        if executor is not None:
            # A hedge task (the common case): what ``awaitable`` would
            # give, without looking the executor up three times more.
            return _then_checkpoint(self._engine.put(key, value, sync), executor)
        loop = None if sync else _running_loop()
        if loop is not None:
            return _write_in_loop(calls, loop, key, value, False)
        return calls.awaitable(self._engine.put(key, value, sync))

    def get(self, key: BytesLike) -> Awaitable[bytes | None]:
        calls = self._calls
        calls.check()
        executor = current_executor_or_none()
        if executor is not None:
            return _get_then_checkpoint(executor, self._engine, key)
        loop = _running_loop()
        if loop is not None:
            return _get_in_loop(calls, loop, key)
        return calls.awaitable(self._engine.get(key))

    def remove(self, key: BytesLike, sync: bool = False) -> Awaitable[None]:
        calls = self._calls
        calls.check_writable()
        executor = current_executor_or_none()
        if executor is not None:
            return _then_checkpoint(self._engine.remove(key, sync), executor)
        loop = None if sync else _running_loop()
        if loop is not None:
            return _write_in_loop(calls, loop, key, None, True)
        return calls.awaitable(self._engine.remove(key, sync))

    def write(self, batch: WriteBatch, sync: bool = False) -> Awaitable[None]:
        self._calls.check_writable()
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"write() takes a hedge.WriteBatch, not {type(batch).__name__}")
        return self._calls.awaitable(self._engine.write(batch, sync))

    def multi_get(self, keys: Iterable[BytesLike]) -> Awaitable[list[bytes | None]]:
        self._calls.check()
        return self._calls.awaitable(self._engine.multi_get(keys))

    @overload
    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: Literal[True] = True, include_value: Literal[True] = True, reverse: bool = False,
             limit: int | None = None) -> AsyncScan[tuple[bytes, bytes]]: ...
    @overload
    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: bool = True, include_value: bool = True, reverse: bool = False,
             limit: int | None = None) -> AsyncScan[bytes]: ...

    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
             prefix: BytesLike | None = None, include_start: bool = True, include_end: bool = False,
             include_key: bool = True, include_value: bool = True, reverse: bool = False,
             limit: int | None = None) -> AsyncScan[Any]:
        """``async for key, value in db.aio.scan(a, b)``; the options of
        ``DB.scan``."""
        self._calls.check()
        start, end, shape = _scan_args(start, end, prefix, include_start, include_end, include_key, include_value)
        return AsyncScan(self._calls, (self._engine, start, end, None, reverse, shape, _check_limit(limit)))

    def cursor(self, start: BytesLike | None = None, end: BytesLike | None = None, *,
               prefix: BytesLike | None = None, include_start: bool = True,
               include_end: bool = False) -> AsyncCursor:
        """``DB.cursor`` with awaitable seeks and steps (``await
        cursor.seek(key)``, ``await cursor.next()``, ``async for key, value
        in cursor``); creating it does no I/O."""
        self._calls.check()
        lower, upper = _cursor_range(start, end, prefix, include_start, include_end)
        sid, seq = self._engine.acquire_snapshot()
        return AsyncCursor(self._calls, EngineCursor(self._engine, seq, lower, upper), self._calls.check, sid)

    def flush(self) -> Awaitable[None]:
        self._calls.check_writable()
        return self._calls.awaitable(self._engine.flush())

    def checkpoint(self, path: StrPath) -> Awaitable[None]:
        """As ``DB.checkpoint``."""
        self._calls.check()
        return self._calls.awaitable(self._engine.checkpoint(os.fspath(path)))

    def compact(self, start: BytesLike | None = None, end: BytesLike | None = None) -> Awaitable[None]:
        """As ``DB.compact``."""
        self._calls.check_writable()
        start, end = _key_range(start, end)
        return self._calls.awaitable(self._engine.compact(start, end))

    def approximate_size(self, start: BytesLike | None = None, end: BytesLike | None = None,
                         include_memtables: bool = True) -> int:
        """As ``DB.approximate_size`` (no I/O: returns the size, nothing to await)."""
        self._calls.check()
        start, end = _key_range(start, end)
        return approximate_size(self._engine.super_version, start, end, include_memtables)

    def stats(self) -> dict[str, Any]:
        """As ``DB.stats`` (no I/O: returns the dict, nothing to await)."""
        self._calls.check()
        return _stats(self._calls, self._pools, self._options)

    def snapshot(self) -> Snapshot:
        """As ``DB.snapshot``; the snapshot's reads as coroutines are on its ``aio``."""
        self._calls.check()
        return _snapshot(self._calls)

    # Last in the class: the name ``property`` shadows the builtin below it.
    def property(self, name: str) -> int | float:
        """As ``DB.property`` (no I/O: returns the value, nothing to await)."""
        self._calls.check()
        return get_property(self._engine, name)


class _LoopScan:
    """An engine scan iterated from asyncio: each step runs on the loop
    thread's executor (without suspending when the next pair is at hand)."""

    def __init__(self, calls: _Calls, loop, agen):
        self._calls = calls
        self._loop = loop
        self._agen = agen

    def __aiter__(self):
        return self

    def __anext__(self):
        return self._calls.in_loop(self._loop, self._agen.__anext__())

    def aclose(self):
        return self._calls.in_loop(self._loop, self._agen.aclose())


def _key_range(start: BytesLike | None, end: BytesLike | None) -> tuple[bytes | None, bytes | None]:
    """Checked bounds of a key range.  Raises TypeError/ValueError for a bad
    key, ValueError when start > end."""
    start = None if start is None else check_key(start)
    end = None if end is None else check_key(end)
    if start is not None and end is not None and start > end:
        raise ValueError(f"the range's start {start!r} is above its end {end!r}")
    return start, end


def _cpu_set(cpus) -> frozenset[int] | None:
    return None if cpus is None else frozenset(cpus)
