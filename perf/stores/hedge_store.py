"""hedge as a benchmarked store, two ways: ``hedge`` runs N client
coroutines on its foreground executor, so their requests overlap on the
ring; ``hedge-threads`` runs client threads on the blocking API, the way the
peers run (each thread drives the engine on a ring of its own).

Durability: ``put(sync=False)`` (the WAL write reaches the OS, no fsync) by
default, ``put(sync=True)`` with ``sync`` (group commit: concurrent writers
share one fdatasync).  Block cache of the configured size; in cold mode
``direct_io=True``, so only the block cache stands between a read and the
device.

This module imports whether or not hedge is installed or complete;
``unavailable()`` says what is missing and the driver skips the store.
"""
from __future__ import annotations

import functools

from perf.stores.base import StoreConfig

try:
    import hedge
    _IMPORT_ERROR = None
except Exception as exc:  # absent, or a broken build of the binding
    hedge = None
    _IMPORT_ERROR = f"hedge cannot be imported ({type(exc).__name__}: {exc})"

_NEEDED = ("open", "gather")


class HedgeStore:
    name = "hedge"
    concurrency_model = "coroutines"

    @classmethod
    def unavailable(cls) -> str | None:
        if hedge is None:
            return _IMPORT_ERROR
        missing = [f"hedge.{n}" for n in _NEEDED if not hasattr(hedge, n)]
        if missing:
            return f"hedge is incomplete: no {', '.join(missing)}"
        return None

    @classmethod
    def open(cls, path: str, config: StoreConfig) -> "HedgeStore":
        return cls(path, config)

    def __init__(self, path: str, config: StoreConfig):
        self._config = config
        self._sync = config.sync
        self._db = hedge.open(path, create=True, direct_io=config.cold,
                              block_cache_bytes=config.cache_bytes, io_method=config.io_method)
        self._aio = self._db.aio
        # aput(key, value) and aget(key): db.aio's own awaitables, so no
        # coroutine of the adapter's stands between the client and hedge
        # (the peers' adapters call their bindings directly too).
        self.aget = self._aio.get
        self.aput = functools.partial(self._aio.put, sync=True) if self._sync else self._aio.put

    async def ascan(self, start: bytes, count: int) -> list[tuple[bytes, bytes]]:
        return await self._aio.scan(start, limit=count).to_list()

    def run_concurrently(self, coroutines: list) -> None:
        async def main() -> None:
            await hedge.gather(*coroutines)

        self._db.run(main())

    def close(self) -> None:
        self._db.close()

    def background_bytes_written(self) -> int | None:
        """Bytes written by flushes and compactions since open (stats());
        None when the statistics do not say (they are informative only)."""
        try:
            c = self._db.stats()["compaction"]
            return c["flush_bytes"] + c["bytes_written"]
        except Exception:  # noqa: BLE001
            return None

    def _concurrency(self) -> str:
        return f"{self._config.clients} coroutines on one foreground executor"

    def settings(self) -> dict:
        try:
            stats = self._db.stats()
        except Exception as exc:  # stats are informative only
            stats = {"error": f"stats() failed: {exc}"}
        io_method = stats.get("io_method", self._config.io_method)
        return {
            "version": f"hedge {getattr(hedge, '__version__', '?')}",
            "durability": ("put(sync=True): WAL fdatasynced before each write returns (group commit)"
                           if self._sync else "put(sync=False): WAL written to the OS, never fsynced"),
            "cache": f"block cache {self._config.cache_bytes} bytes",
            "page_cache": "bypassed (direct_io=True)" if self._config.cold else "used",
            "io": f"io_method={io_method}" + (", O_DIRECT" if self._config.cold else ""),
            "concurrency": self._concurrency(),
            "layout": stats.get("layout"),
        }


class HedgeThreadsStore(HedgeStore):
    """hedge through its blocking API from client threads."""

    name = "hedge-threads"
    concurrency_model = "threads"

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value, sync=self._sync)

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def scan(self, start: bytes, count: int) -> list[tuple[bytes, bytes]]:
        return list(self._db.scan(start, limit=count))

    def _concurrency(self) -> str:
        from perf.stores.base import thread_layout

        return f"blocking API, {thread_layout(self._config)}, each thread on its own ring"
