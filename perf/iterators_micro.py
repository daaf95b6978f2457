"""Micro benchmark: merge (two-way and tuple heap) against heapq.merge with a
key function, and visible() over the merged stream.

Run: PYTHONPATH=. python -m perf.iterators_micro [N]
"""
from __future__ import annotations

import heapq
import os
import platform
import random
import sys
import time

from hedge.lsm.iterators import merge, visible
from hedge.lsm.keys import Kind, entry_order


def _heapq_merge(sources):
    """The alternative: heapq.merge with a key, then drop repeated (key, seq)."""
    prev = None
    for e in heapq.merge(*sources, key=entry_order):
        if prev is not None and e[1] == prev[1] and e[0] == prev[0]:
            continue
        prev = e
        yield e


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(f"python {platform.python_version()}  {platform.machine()}  cpus={os.cpu_count()}  entries={n}")
    rng = random.Random(1)
    keys = [rng.randbytes(16) for _ in range(n // 2)]
    entries = [(rng.choice(keys), seq, Kind.PUT if rng.random() < 0.9 else Kind.DELETE, b"v")
               for seq in range(1, n + 1)]
    for nsrc in (1, 2, 4, 8):
        sources = [[] for _ in range(nsrc)]
        for e in entries:
            sources[rng.randrange(nsrc)].append(e)
        for s in sources:
            s.sort(key=entry_order)
        line = [f"{nsrc} sources:"]
        for name, fn in (("merge", merge), ("heapq.merge", _heapq_merge)):
            t0 = time.perf_counter()
            count = sum(1 for _ in fn(sources))
            dt = time.perf_counter() - t0
            assert count == n
            line.append(f"{name} {dt / n * 1e6:.3f} us/entry")
        t0 = time.perf_counter()
        for _ in visible(merge(sources), n // 2):
            pass
        line.append(f"merge+visible {(time.perf_counter() - t0) / n * 1e6:.3f} us/entry")
        print("  ".join(line))


if __name__ == "__main__":
    main()
