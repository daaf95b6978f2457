"""Store adapters, one module per store (see ``perf.stores.base`` for the
interface).  ``load(name)`` imports an adapter; a store whose binding is
missing still imports and says why it cannot run."""
from __future__ import annotations

import importlib

ADAPTERS = {
    "hedge": ("perf.stores.hedge_store", "HedgeStore"),
    "hedge-threads": ("perf.stores.hedge_store", "HedgeThreadsStore"),
    "rocksdict": ("perf.stores.rocksdict_store", "RocksdictStore"),
    "plyvel": ("perf.stores.plyvel_store", "PlyvelStore"),
    "lmdb": ("perf.stores.lmdb_store", "LmdbStore"),
    "sqlite": ("perf.stores.sqlite_store", "SqliteStore"),
}


def load(name: str):
    """The adapter class of store ``name``.  Raises KeyError for an unknown
    name."""
    if name not in ADAPTERS:
        raise KeyError(f"unknown store {name!r}; known: {', '.join(ADAPTERS)}")
    module, cls = ADAPTERS[name]
    return getattr(importlib.import_module(module), cls)
