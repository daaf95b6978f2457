"""LMDB (py-lmdb) as a key-value store: one environment, the main database.

Durability: ``sync=False, metasync=False`` (commits reach the OS, never
fsynced) by default; with ``sync`` LMDB's own default, every commit fsyncs
the data and then the meta page.  Each put is its own write transaction
(LMDB admits one writer at a time), each get and scan a read transaction.
Reads go through the memory map, so through the page cache; LMDB cannot
bypass it and has no cache of its own.

Concurrency: the binding releases the GIL inside LMDB calls, so clients run
as threads.
"""
from __future__ import annotations

import os

from perf.stores.base import StoreConfig, thread_layout

try:
    import lmdb
    _MISSING = None
except ImportError as exc:
    lmdb = None
    _MISSING = f"py-lmdb is not installed ({exc})"


class LmdbStore:
    name = "lmdb"
    concurrency_model = "threads"

    @classmethod
    def unavailable(cls) -> str | None:
        return _MISSING

    @classmethod
    def open(cls, path: str, config: StoreConfig) -> "LmdbStore":
        return cls(path, config)

    def __init__(self, path: str, config: StoreConfig):
        os.makedirs(path, exist_ok=True)
        self._config = config
        # The map is address space, not memory: leave room for B-tree overhead.
        map_size = max(4 * config.expected_bytes, 1 << 30)
        self._env = lmdb.open(path, map_size=map_size, sync=config.sync, metasync=config.sync,
                              max_readers=max(126, 2 * config.clients + 8), readahead=not config.cold)

    def put(self, key: bytes, value: bytes) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(key, value)

    def get(self, key: bytes) -> bytes | None:
        with self._env.begin() as txn:
            return txn.get(key)

    def scan(self, start: bytes, count: int) -> list[tuple[bytes, bytes]]:
        out = []
        with self._env.begin() as txn:
            cursor = txn.cursor()
            if not cursor.set_range(start):
                return out
            for item in cursor:
                out.append(item)
                if len(out) >= count:
                    break
        return out

    def close(self) -> None:
        self._env.close()

    def settings(self) -> dict:
        return {
            "version": f"LMDB {'.'.join(map(str, lmdb.version()))}, py-lmdb {lmdb.__version__}",
            "durability": ("sync=True, metasync=True: every commit fsynced" if self._config.sync
                           else "sync=False, metasync=False: commits never fsynced"),
            "cache": "none of its own (memory map)",
            "page_cache": "used (cannot bypass)" + ("; readahead off" if self._config.cold else ""),
            "io": "memory map (page faults), writes through the map's file",
            "concurrency": thread_layout(self._config) + "; one writer at a time",
        }
