"""What a YCSB E scan costs, without the benchmark's driver: the figures
of docs/design.md "Scans" and of E among the known limits.

    python -m perf.scan_mix_bench [--records N] [--updates U] [--scans S]
        [--rounds R] [--cache-bytes B] [--dir DIR]

Loads N records of 1,000 B (YCSB's hashed key names) from 64 coroutines,
compacts them into one level and closes the database.  Then, for each of
``--rounds`` rounds, reopens a copy of it with a block cache of
``--cache-bytes``, puts U updates of zipfian-chosen keys into its memtable
(as after YCSB A, B and C; 0: none), and times S scans of 1 to 100 pairs
(uniform) from zipfian-chosen start keys (YCSB's scrambled zipfian), run
from 64 coroutines on the database's executor, each
``await db.aio.scan(start, limit=n).to_list()``.  Prints µs per scan for
each pass over the scans (the first pass fills the block cache), the
cache's hits and misses, and the tables each scan merged.

Compare two trees by running this script from each in turn (alternate
them: the machine is noisy).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time

import hedge
from perf.generators import ScrambledZipfian
from perf.keys import key_name

VALUE_BYTES = 1000
CLIENTS = 64
PASSES = 3


def _load(path: str, records: int) -> None:
    value = os.urandom(VALUE_BYTES)
    with hedge.open(path) as db:
        async def client(first: int) -> None:
            for i in range(first, records, CLIENTS):
                await db.aio.put(key_name(i), value)

        async def main() -> None:
            await hedge.gather(*[client(i) for i in range(CLIENTS)])

        db.run(main())
        db.compact()


def _round(base: str, work: str, records: int, updates: int, scans: int, cache_bytes: int,
           seed: int) -> tuple[list[float], dict, list]:
    """µs per scan of each pass, the cache's counters, the levels' files."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    rng = random.Random(seed)
    zipf = ScrambledZipfian(records, rng)
    value = os.urandom(VALUE_BYTES)
    with hedge.open(work, block_cache_bytes=cache_bytes) as db:
        keys = [key_name(zipf.next()) for _ in range(updates)]

        async def writer(first: int) -> None:
            for i in range(first, updates, CLIENTS):
                await db.aio.put(keys[i], value)

        async def scanner(batch: list, first: int) -> None:
            for i in range(first, len(batch), CLIENTS):
                start, n = batch[i]
                await db.aio.scan(start, limit=n).to_list()

        async def run_all(coros: list) -> None:
            await hedge.gather(*coros)

        db.run(run_all([writer(i) for i in range(CLIENTS)]))
        per_scan = []
        for _ in range(PASSES):
            batch = [(key_name(zipf.next()), rng.randint(1, 100)) for _ in range(scans)]
            t0 = time.perf_counter()
            db.run(run_all([scanner(batch, i) for i in range(CLIENTS)]))
            per_scan.append((time.perf_counter() - t0) / scans * 1e6)
        stats = db.stats()
        return per_scan, stats["cache"], [level["files"] for level in stats["levels"]]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--updates", type=int, default=20_000,
                   help="puts into the memtable before the scans (default: 20,000)")
    p.add_argument("--scans", type=int, default=20_000, help="scans per pass (default: 20,000)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cache-bytes", type=int, default=64 << 20)
    p.add_argument("--dir", help="where to put the databases (default: a temporary directory)")
    args = p.parse_args(argv)
    root = tempfile.mkdtemp(dir=args.dir)
    try:
        base = os.path.join(root, "base")
        t0 = time.perf_counter()
        _load(base, args.records)
        print(f"loaded {args.records:,} records of {VALUE_BYTES} B in {time.perf_counter() - t0:.1f} s")
        for r in range(args.rounds):
            per_scan, cache, levels = _round(base, os.path.join(root, "work"), args.records, args.updates,
                                             args.scans, args.cache_bytes, seed=r)
            print(f"round {r + 1}: µs per scan " + " ".join(f"{x:.1f}" for x in per_scan)
                  + f"; cache hits {cache['hits']:,} misses {cache['misses']:,}; tables per level {levels}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
