"""LevelDB (plyvel) as a key-value store.

Durability: ``sync=False`` writes (the log write reaches the OS, no fsync) by
default, ``sync=True`` with ``sync``; LevelDB batches concurrent writers into
one log write (and one fsync).  Block cache (LRU) of the configured size, a
10-bit bloom filter, no compression (values are incompressible).  Reads go
through the page cache; LevelDB cannot bypass it.

Concurrency: plyvel releases the GIL inside LevelDB calls, so clients run as
threads.
"""
from __future__ import annotations

import itertools

from perf.stores.base import StoreConfig, thread_layout

try:
    import plyvel
    _MISSING = None
except ImportError as exc:
    plyvel = None
    _MISSING = f"plyvel is not installed ({exc})"


class PlyvelStore:
    name = "plyvel"
    concurrency_model = "threads"

    @classmethod
    def unavailable(cls) -> str | None:
        return _MISSING

    @classmethod
    def open(cls, path: str, config: StoreConfig) -> "PlyvelStore":
        return cls(path, config)

    def __init__(self, path: str, config: StoreConfig):
        self._config = config
        self._sync = config.sync
        self._db = plyvel.DB(path, create_if_missing=True, lru_cache_size=config.cache_bytes,
                             bloom_filter_bits=10, compression=None)

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value, sync=self._sync)

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def scan(self, start: bytes, count: int) -> list[tuple[bytes, bytes]]:
        it = self._db.iterator(start=start)
        try:
            return list(itertools.islice(it, count))
        finally:
            it.close()

    def close(self) -> None:
        self._db.close()

    def background_bytes_written(self) -> int | None:
        """Bytes written by flushes and compactions since open: the sum of
        the Write(MB) column of ``leveldb.stats`` (memtable flushes count as
        level-0 output there), to 1 MB per level."""
        return leveldb_written_bytes((self._db.get_property(b"leveldb.stats") or b"").decode())

    def settings(self) -> dict:
        return {
            "version": f"plyvel {plyvel.__version__}, LevelDB {plyvel.__leveldb_version__}",
            "durability": ("put(sync=True): log fsynced before each write returns (group commit)"
                           if self._sync else "put(sync=False): log written to the OS, never fsynced"),
            "cache": f"LRU block cache {self._config.cache_bytes} bytes, bloom 10 bits/key, no compression",
            "page_cache": "used (cannot bypass)",
            "io": "tables memory-mapped (LevelDB's default on 64-bit) or pread, through the page cache",
            "concurrency": thread_layout(self._config),
        }


def leveldb_written_bytes(stats: str) -> int | None:
    """The Write(MB) column of LevelDB's stats table, summed, in bytes; None
    when the text has no such table."""
    lines = stats.splitlines()
    header = next((i for i, line in enumerate(lines) if "Write(MB)" in line), None)
    if header is None:
        return None
    total = 0
    for line in lines[header + 1:]:
        fields = line.split()
        if len(fields) == 6 and fields[0].isdigit():
            total += int(fields[5])
    return total << 20
