"""sqlite3 (the standard library's binding) as a key-value store: one table
``kv(k BLOB PRIMARY KEY, v BLOB)`` in WAL mode, written with an upsert.  (A
rowid table: in a WITHOUT ROWID table a 1000-byte row spills into an overflow
page, which made the file 4.5 times the data.)

Durability: ``synchronous=OFF`` (no fsync) by default, ``synchronous=FULL``
(the WAL fsynced at every commit) with ``sync``; each put is its own
transaction.  Reads go through the page cache (sqlite cannot bypass it);
memory mapping is off.  SQLite's page cache belongs to a connection, so the
configured cache bytes are split over the connections (one per thread).

Concurrency: the binding releases the GIL inside sqlite calls, so each client
thread gets its own connection.  SQLite admits one writer at a time and makes
a busy writer sleep and retry; the adapter queues writers on a lock instead so
a writer waits exactly as long as the one before it.
"""
from __future__ import annotations

import os
import sqlite3
import threading

from perf.stores.base import StoreConfig, thread_layout


def connection_count(config: StoreConfig) -> int:
    """Connections the adapter will open: one per client thread."""
    return min(config.threads or config.clients, config.clients)


class SqliteStore:
    name = "sqlite"
    concurrency_model = "threads"

    @classmethod
    def unavailable(cls) -> str | None:
        return None

    @classmethod
    def open(cls, path: str, config: StoreConfig) -> "SqliteStore":
        return cls(path, config)

    def __init__(self, path: str, config: StoreConfig):
        os.makedirs(path, exist_ok=True)
        self._file = os.path.join(path, "kv.sqlite")
        self._config = config
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._cache_per_connection = max(config.cache_bytes // connection_count(config), 256 << 10)
        self._connection().execute(
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)")

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._file, isolation_level=None, check_same_thread=False,
                                   timeout=60.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self._config.sync else 'OFF'}")
            conn.execute(f"PRAGMA cache_size=-{self._cache_per_connection // 1024}")
            conn.execute("PRAGMA mmap_size=0")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def put(self, key: bytes, value: bytes) -> None:
        conn = self._connection()
        with self._write_lock:
            conn.execute("INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                         (key, value))

    def get(self, key: bytes) -> bytes | None:
        row = self._connection().execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return row[0] if row is not None else None

    def scan(self, start: bytes, count: int) -> list[tuple[bytes, bytes]]:
        return self._connection().execute(
            "SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT ?", (start, count)).fetchall()

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def settings(self) -> dict:
        return {
            "version": f"SQLite {sqlite3.sqlite_version}",
            "durability": ("synchronous=FULL, journal_mode=WAL: WAL fsynced at every commit"
                           if self._config.sync else
                           "synchronous=OFF, journal_mode=WAL: never fsynced"),
            "cache": (f"cache_size {self._cache_per_connection} bytes per connection "
                      f"x {connection_count(self._config)} connections, mmap off"),
            "page_cache": "used (cannot bypass)",
            "io": "pread/pwrite through the page cache",
            "concurrency": thread_layout(self._config) + ", one connection each; writers queued on a lock",
        }
