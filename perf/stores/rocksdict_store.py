"""RocksDB (rocksdict, raw mode) as a key-value store.

Durability: WAL written without fsync by default; ``WriteOptions.sync`` with
``sync`` (the WAL fdatasynced before each write returns).  Block cache of the
configured size, a 10-bit bloom filter, no compression (values are
incompressible).  In cold mode reads use O_DIRECT (``use_direct_reads``), so
only the block cache stands between a read and the device.

Concurrency: rocksdict holds the GIL inside RocksDB calls (measured: a Python
thread spinning next to it gets no time during a get or a put), so threads
would only take turns; the clients run round-robin on one thread.
"""
from __future__ import annotations

import re
from importlib import metadata

from perf.stores.base import StoreConfig

try:
    import rocksdict
    _MISSING = None
except ImportError as exc:
    rocksdict = None
    _MISSING = f"rocksdict is not installed ({exc})"


class RocksdictStore:
    name = "rocksdict"
    concurrency_model = "single"

    @classmethod
    def unavailable(cls) -> str | None:
        return _MISSING

    @classmethod
    def open(cls, path: str, config: StoreConfig) -> "RocksdictStore":
        return cls(path, config)

    def __init__(self, path: str, config: StoreConfig):
        self._config = config
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_compression_type(rocksdict.DBCompressionType.none())
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(config.cache_bytes))
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        if config.cold:
            options.set_use_direct_reads(True)
        self._db = rocksdict.Rdict(path, options)
        write_options = rocksdict.WriteOptions()
        write_options.sync = config.sync
        self._db.set_write_options(write_options)

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def scan(self, start: bytes, count: int) -> list[tuple[bytes, bytes]]:
        out = []
        it = self._db.iter()
        it.seek(start)
        while it.valid() and len(out) < count:
            out.append((it.key(), it.value()))
            it.next()
        return out

    def close(self) -> None:
        self._db.close()

    def background_bytes_written(self) -> int | None:
        """Bytes written by flushes and compactions since open: the
        "Cumulative compaction: X GB write" line of ``rocksdb.stats`` (flushes
        count as level-0 compaction output there), to 0.01 GB."""
        return cumulative_compaction_bytes(self._db.property_value("rocksdb.stats") or "")

    def settings(self) -> dict:
        return {
            "version": f"rocksdict {metadata.version('rocksdict')}",
            "durability": ("WriteOptions.sync=True: WAL fdatasynced before each write returns"
                           if self._config.sync else "WriteOptions.sync=False: WAL written, never fsynced"),
            "cache": f"block cache {self._config.cache_bytes} bytes, bloom 10 bits/key, no compression",
            "page_cache": "bypassed for reads (use_direct_reads)" if self._config.cold else "used",
            "io": "pread" + (" with O_DIRECT" if self._config.cold else " through the page cache"),
            "concurrency": "one thread, clients round-robin (the binding holds the GIL)",
        }


_CUMULATIVE = re.compile(r"^Cumulative compaction: ([0-9.]+) GB write", re.MULTILINE)


def cumulative_compaction_bytes(stats: str) -> int | None:
    """Bytes from the "Cumulative compaction" line of RocksDB's stats text,
    or None when it has none."""
    match = _CUMULATIVE.search(stats)
    return None if match is None else int(float(match.group(1)) * (1 << 30))
