"""The public database API: ``hedge.open`` -> ``DB``.

``DB`` methods are plain blocking calls usable from any thread that is not
one of the database's own executor threads: each hands its coroutine to the
foreground pool and waits for the result.  ``db.aio`` has the same
operations as coroutines, for code already running on a foreground executor
(inside ``db.run(...)``), where requests from many coroutines overlap.

Lifecycle: open takes the directory lock (flock on LOCK; a second open
anywhere fails with LockError; the kernel drops the lock of a killed
process), starts the pools, recovers (hedge/lsm/recovery.py) and starts the
maintenance task.  ``close`` refuses new calls, waits for in-progress
writes, syncs the WAL, stops maintenance, closes every file and thread and
releases the lock.  After close every call raises ClosedError.  In a child
process forked while the database was open every call raises ForkError, and
close returns at once (hedge/directory.py checks and locks the directory).
"""
from __future__ import annotations

import logging
import os
import threading

from hedge import directory as dbdir
from hedge.errors import Cancelled, ClosedError, ForkError, HedgeError
from hedge.exec import forkguard
from hedge.exec.pool import Pools
from hedge.io.backend import resolve_method
from hedge.lsm.batch import WriteBatch
from hedge.lsm.cache import BlockCache
from hedge.lsm.engine import Engine
from hedge.lsm.keys import check_key
from hedge.lsm.recovery import recover
from hedge.options import Options

log = logging.getLogger("hedge")

SCAN_CHUNK = 256


def open(path, create: bool = True, **options) -> "DB":  # noqa: A001 - the API's name
    """Open (or create) the database in directory ``path``.

    Options are keywords (see hedge.Options); an unknown one or a value of
    the wrong type is a TypeError, a value out of range a ValueError.
    Raises LockError when the database is open elsewhere, CorruptionError
    when its files are damaged, HedgeIOError for I/O failures and for a path
    that cannot hold a database (errno and path kept), HedgeError when it
    does not exist and create=False, exists and error_if_exists=True, or
    would be created among files that are not hedge's (without
    allow_foreign_files=True).
    """
    opts = Options(create=create, **options).validate()
    return DB._open(os.fspath(path), opts)


class DB:
    def __init__(self, directory: str, options: Options, lock, pools: Pools, engine: Engine,
                 maintenance, recovery: dict):
        self.directory = directory
        self.options = options
        self._lock = lock
        self._generation = forkguard.generation()
        self._pools = pools
        self._fg = pools.foreground
        self._engine = engine
        self._maintenance = maintenance
        self.recovery = recovery
        self._closed = False
        self._close_lock = threading.Lock()
        self.aio = AsyncDB(self)

    @classmethod
    def _open(cls, directory: str, options: Options) -> "DB":
        dbdir.prepare(directory, options)
        lock = dbdir.lock(directory)
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
            engine = Engine(directory, options, pools, cache)
            engine.io_method = io_method
            summary = pools.background.run_sync(recover(engine))
            maintenance = pools.background.submit(engine.maintain(), name="maintenance")
        except BaseException:
            if pools is not None:
                pools.close()
            lock.close()
            raise
        return cls(directory, options, lock, pools, engine, maintenance, summary)

    # -- helpers ----------------------------------------------------------------
    def _call(self, coro):
        try:
            self._check()
        except BaseException:
            coro.close()
            raise
        return self._fg.run_sync(coro)

    def _check(self) -> None:
        if forkguard.generation() != self._generation:
            raise ForkError("this database was opened before os.fork(); the child process must open its own")
        if self._closed:
            raise ClosedError("the database is closed")

    # -- the API --------------------------------------------------------------------
    def put(self, key, value, sync: bool = False) -> None:
        """Store ``value`` under ``key``.  With sync=True the write is on
        stable storage when put returns; otherwise it has reached the OS
        (survives a process crash, not a power loss)."""
        batch = WriteBatch()
        batch.put(key, value)
        self._call(self._engine.write(batch, sync))

    def get(self, key) -> bytes | None:
        """The value stored under ``key``, or None."""
        check_key(key)
        return self._call(self._engine.get(key))

    def remove(self, key, sync: bool = False) -> None:
        """Delete ``key`` (a tombstone; absent keys are fine)."""
        batch = WriteBatch()
        batch.remove(key)
        self._call(self._engine.write(batch, sync))

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        """Apply every operation of ``batch`` atomically."""
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"write() takes a hedge.WriteBatch, not {type(batch).__name__}")
        self._call(self._engine.write(batch, sync))

    def multi_get(self, keys) -> list:
        """Values for ``keys`` (None where absent), looked up concurrently."""
        keys = [check_key(k) for k in keys]
        return self._call(self._engine.multi_get(keys))

    def scan(self, start=None, end=None):
        """Iterate (key, value) pairs with start <= key < end (None:
        unbounded) in key order, over the snapshot taken now."""
        self._check()
        if start is not None:
            start = check_key(start)
        if end is not None:
            end = check_key(end)
        executor = self._fg.pick()
        agen = self._engine.scan(start, end)
        # Take the snapshot now, not at the first next().
        first = executor.run_sync(_take(agen, SCAN_CHUNK))
        return _ScanIterator(self, executor, agen, first)

    def flush(self) -> None:
        """Write the memtable(s) to tables now; return when durable."""
        self._call(self._engine.flush())

    def compact(self) -> None:
        """Flush, then run compactions until none is due."""
        self._call(self._engine.compact())

    def run(self, coro):
        """Run ``coro`` on a foreground executor; return its result."""
        return self._call(coro)

    def stats(self) -> dict:
        """Levels, memtables, WAL and compaction counters, cache and
        per-executor I/O counters, and the pinning layout."""
        self._check()
        out = self._engine.stats()
        pools = self._pools.stats()
        out["layout"] = pools["layout"]
        out["foreground"] = pools["foreground"]
        out["background"] = pools["background"]
        out["io_method"] = self._engine.io_method
        out["options"] = {"direct_io": self.options.direct_io,
                          "block_cache_bytes": self.options.block_cache_bytes,
                          "memtable_bytes": self.options.memtable_bytes}
        return out

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the database (idempotent).  Unsynced writes are synced first.
        In a child process forked after open, close returns at once and
        touches nothing of the parent's: it only closes the child's copy of
        the lock's descriptor (the parent keeps the lock)."""
        if forkguard.generation() != self._generation:
            if not self._closed:
                self._closed = True
                self._lock.close()
            return
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        engine = self._engine
        engine.mark_closing()
        try:
            try:
                self._fg.run_sync(engine.quiesce_writers())
                self._fg.run_sync(engine.close_wal())
            except HedgeError as e:
                log.error("hedge: closing the WAL failed: %s", e)
            if self._maintenance.task is not None:
                self._maintenance.task.cancel()
            try:
                self._maintenance.wait(timeout=60)
            except (Cancelled, ClosedError):
                pass
            except HedgeError as e:
                log.error("hedge: maintenance ended with an error: %s", e)
            engine.close_files()
        finally:
            try:
                engine.stop_worker()
            finally:
                self._pools.close()
            self._lock.close()

    def __enter__(self) -> "DB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<hedge.DB {self.directory!r} {'closed' if self._closed else 'open'}>"


class _ScanIterator:
    """Sync iterator over an engine scan, fetching SCAN_CHUNK pairs per
    round trip to the executor the scan lives on."""

    def __init__(self, db: DB, executor, agen, first: tuple[list, bool]):
        self._db = db
        self._executor = executor
        self._agen = agen
        self._chunk, self._exhausted = first
        self._pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._pos >= len(self._chunk):
            if self._exhausted:
                raise StopIteration
            self._db._check()
            self._chunk, self._exhausted = self._executor.run_sync(_take(self._agen, SCAN_CHUNK))
            self._pos = 0
            if not self._chunk:
                raise StopIteration
        item = self._chunk[self._pos]
        self._pos += 1
        return item

    def close(self) -> None:
        if not self._exhausted:
            self._exhausted = True
            try:
                self._executor.run_sync(self._agen.aclose())
            except (ClosedError, HedgeError):
                pass

    def __del__(self):
        if not self._exhausted and not self._db._closed:
            try:
                self._executor.submit(self._agen.aclose())
            except Exception:  # noqa: BLE001
                pass


async def _take(agen, n: int) -> tuple[list, bool]:
    out = []
    try:
        while len(out) < n:
            out.append(await agen.__anext__())
    except StopAsyncIteration:
        return out, True
    return out, False


class AsyncDB:
    """Coroutine forms of the DB operations (``db.aio``), for code running
    on a foreground executor."""

    def __init__(self, db: DB):
        self._db = db
        self._engine = db._engine

    async def put(self, key, value, sync: bool = False) -> None:
        self._db._check()
        await self._engine.put(key, value, sync)

    async def get(self, key) -> bytes | None:
        self._db._check()
        return await self._engine.get(key)

    async def remove(self, key, sync: bool = False) -> None:
        self._db._check()
        await self._engine.remove(key, sync)

    async def write(self, batch: WriteBatch, sync: bool = False) -> None:
        self._db._check()
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"write() takes a hedge.WriteBatch, not {type(batch).__name__}")
        await self._engine.write(batch, sync)

    async def multi_get(self, keys) -> list:
        self._db._check()
        return await self._engine.multi_get(keys)

    def scan(self, start=None, end=None):
        """``async for key, value in db.aio.scan(a, b)``."""
        self._db._check()
        if start is not None:
            start = check_key(start)
        if end is not None:
            end = check_key(end)
        return self._engine.scan(start, end)

    async def flush(self) -> None:
        self._db._check()
        await self._engine.flush()

    async def compact(self) -> None:
        self._db._check()
        await self._engine.compact()


def _cpu_set(cpus) -> frozenset[int] | None:
    return None if cpus is None else frozenset(cpus)
