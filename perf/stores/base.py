"""The store adapter interface: what the driver needs from a key-value store.

An adapter is a class with

    name: str                          # as in --stores and reports
    concurrency_model: str             # "threads" | "coroutines" | "single"
    unavailable() -> str | None        # classmethod: why it cannot run here
    open(path, config) -> adapter      # classmethod; creates the database
    put(key, value) / get(key) -> bytes | None / scan(start, count) -> list
    close()
    settings() -> dict                 # durability, cache, page cache, I/O
    background_bytes_written() -> int | None   # optional: bytes written by
                                       # flushes and compactions since open

``scan(start, count)`` returns up to ``count`` (key, value) pairs with
key >= start, in key order.  ``put`` is durable before it returns when the
adapter was opened with ``config.sync``.

Coroutine adapters (``concurrency_model = "coroutines"``) provide
``aput/aget/ascan`` instead of the synchronous calls, and
``run_concurrently(coroutines)``, which runs them together on the store's own
executor and returns when all have finished.

A "threads" adapter is called from many threads at once (its binding
releases the GIL); a "single" adapter only ever from one.
"""
from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class StoreConfig:
    """How every store of a run is opened."""

    # Every write durable (fsync/fdatasync) before it is acknowledged.
    sync: bool = False
    # Bypass the page cache where the store can (direct reads).
    cold: bool = False
    # Bytes of block cache (or page cache pages for sqlite) each store gets.
    cache_bytes: int = 64 << 20
    # Concurrent clients (operation streams).
    clients: int = 64
    # Threads of a "threads" adapter, each running its share of the clients
    # round-robin; None: one per client.
    threads: int | None = None
    # hedge only: io_uring, threads, sync or auto.
    io_method: str = "auto"
    # Upper bound of the data the store will hold (sizes lmdb's map).
    expected_bytes: int = 1 << 30



def thread_layout(config: StoreConfig) -> str:
    """How a "threads" adapter's clients map to threads, for its settings."""
    threads = min(config.threads or config.clients, config.clients)
    if threads == config.clients:
        return f"a thread per client ({threads} threads)"
    return f"{threads} threads, each running its share of the {config.clients} clients round-robin"
