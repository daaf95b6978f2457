"""Micro benchmark: Memtable add/get/scan, and the dict's worth for point
lookups (against a SortedList of (key, -seq) entries with no dict).

Run: PYTHONPATH=. python -m perf.memtable_micro [N]
"""
from __future__ import annotations

import os
import platform
import random
import sys
import time

from sortedcontainers import SortedList

from hedge.lsm.keys import Kind
from hedge.lsm.memtable import Memtable


def _keys(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(16) for _ in range(n)]


def _us_per_op(t0: float, t1: float, n: int) -> float:
    return (t1 - t0) / n * 1e6


def bench_memtable(keys: list[bytes], value: bytes) -> dict[str, float]:
    mt = Memtable()
    put = Kind.PUT
    t0 = time.perf_counter()
    for seq, k in enumerate(keys, 1):
        mt.add(k, seq, put, value)
    t1 = time.perf_counter()
    snap = len(keys)
    lookups = keys[:]
    random.Random(2).shuffle(lookups)
    t2 = time.perf_counter()
    for k in lookups:
        mt.get(k, snap)
    t3 = time.perf_counter()
    count = sum(1 for _ in mt.entries())
    t4 = time.perf_counter()
    assert count == len(keys)
    return {"add": _us_per_op(t0, t1, len(keys)), "get": _us_per_op(t2, t3, len(keys)),
            "scan": _us_per_op(t3, t4, len(keys))}


def bench_sortedlist_only(keys: list[bytes], value: bytes) -> dict[str, float]:
    """The alternative without a dict: entries as (key, -seq, kind, value)."""
    sl = SortedList()
    put = Kind.PUT
    t0 = time.perf_counter()
    for seq, k in enumerate(keys, 1):
        sl.add((k, -seq, put, value))
    t1 = time.perf_counter()
    snap = len(keys)
    lookups = keys[:]
    random.Random(2).shuffle(lookups)
    n = len(sl)
    t2 = time.perf_counter()
    for k in lookups:
        i = sl.bisect_left((k, -snap))
        if i < n:
            e = sl[i]
            if e[0] == k:
                (e[1], e[2], e[3])
    t3 = time.perf_counter()
    return {"add": _us_per_op(t0, t1, len(keys)), "get": _us_per_op(t2, t3, len(keys))}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(f"python {platform.python_version()}  {platform.machine()}  cpus={os.cpu_count()}  entries={n} key=16B value=100B")
    keys = _keys(n)
    value = b"v" * 100
    for name, fn in (("Memtable (dict + SortedList of keys)", bench_memtable),
                     ("SortedList of entries, no dict", bench_sortedlist_only)):
        res = fn(keys, value)
        print(f"{name:40s} " + "  ".join(f"{op} {us:.2f} us/op" for op, us in res.items()))


if __name__ == "__main__":
    main()
