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

With ``--against REV``, REV's ``hedge/`` is exported to a temporary
directory (perf/ab.py) and each round runs once on
it and once on this tree, in subprocesses, alternating which goes first;
the summary gives each tree's median over the rounds of the passes after
the first, and their ratio (this tree / REV: below 1 is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time

import hedge
from perf import ab
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


def child(argv) -> int:
    """One ``_round`` in this process, with the tree first on PYTHONPATH;
    prints its figures as one JSON line."""
    per_scan, cache, levels = _round(**json.loads(argv[0]))
    print(json.dumps({"per_scan": per_scan, "hits": cache["hits"], "misses": cache["misses"], "levels": levels,
                      "hedge": os.path.dirname(os.path.dirname(os.path.abspath(hedge.__file__)))}))
    return 0


def _print_round(label: str, per_scan: list, hits: int, misses: int, levels: list) -> None:
    print(f"{label}: µs per scan " + " ".join(f"{x:.1f}" for x in per_scan)
          + f"; cache hits {hits:,} misses {misses:,}; tables per level {levels}")


def _against(rev: str, args, base: str, work: str) -> None:
    """The rounds alternated between REV's hedge/ and this tree's."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tree = ab.export_tree(rev, repo)
    runs: dict[str, list] = {rev: [], "this tree": []}
    try:
        for r in range(args.rounds):
            order = [(rev, tree), ("this tree", repo)]
            if r % 2:
                order.reverse()
            for label, path in order:
                params = {"base": base, "work": work, "records": args.records, "updates": args.updates,
                          "scans": args.scans, "cache_bytes": args.cache_bytes, "seed": r}
                out = ab.run_child("perf.scan_mix_bench", path, repo, [json.dumps(params)])
                res = json.loads(out.strip().splitlines()[-1])
                if os.path.realpath(res["hedge"]) != os.path.realpath(path):
                    raise RuntimeError(f"the round for {label} imported hedge from {res['hedge']}, not {path}")
                runs[label].append(res)
                _print_round(f"round {r + 1}, {label}", res["per_scan"], res["hits"], res["misses"], res["levels"])
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    medians = {label: statistics.median(x for res in results for x in res["per_scan"][1:])
               for label, results in runs.items()}
    print(f"median µs per scan (passes after the first): {rev} {medians[rev]:.1f}, "
          f"this tree {medians['this tree']:.1f}, ratio {medians['this tree'] / medians[rev]:.3f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--updates", type=int, default=20_000,
                   help="puts into the memtable before the scans (default: 20,000)")
    p.add_argument("--scans", type=int, default=20_000, help="scans per pass (default: 20,000)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cache-bytes", type=int, default=64 << 20)
    p.add_argument("--against", metavar="REV", help="alternate the rounds with REV's hedge/")
    p.add_argument("--dir", help="where to put the databases (default: a temporary directory)")
    args = p.parse_args(argv)
    root = tempfile.mkdtemp(dir=args.dir)
    try:
        base = os.path.join(root, "base")
        work = os.path.join(root, "work")
        t0 = time.perf_counter()
        _load(base, args.records)
        print(f"loaded {args.records:,} records of {VALUE_BYTES} B in {time.perf_counter() - t0:.1f} s")
        if args.against:
            _against(args.against, args, base, work)
            return
        for r in range(args.rounds):
            per_scan, cache, levels = _round(base, work, args.records, args.updates, args.scans,
                                             args.cache_bytes, seed=r)
            _print_round(f"round {r + 1}", per_scan, cache["hits"], cache["misses"], levels)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
