"""The blocking API beside the peers, and hedge from asyncio.

    python -m perf.api_bench                   # everything, default sizes
    python -m perf.api_bench --keys 20000 --parts threads

Parts (``--parts``, comma-separated):

  threads   hedge's blocking API beside rocksdict, plyvel and lmdb in one
            run: 100,000 keys x 100 B put in random order from one thread,
            warm gets of every key in another random order, scans of 50
            pairs from random starts; then the same split over 8 threads
            (total throughput).  Ratios hedge / rocksdict.
  asyncio   1,000 concurrent ``await db.aio.get`` of keys in tables (no block
            cache, so every get reads a block through the ring) from asyncio
            tasks, with a 1 ms ticker measuring the loop's worst lag; the
            loop thread's executor counts SQEs per submit.
  calls     what one call of hedge's API costs, in µs of the calling
            thread: a blocking ``db.get`` and an ``await db.aio.get`` in a
            hedge task (``db.run``), of keys in the memtable and of keys in
            a table whose blocks are cached; best of several passes over
            every key.
  stall     blocking gets from a user thread while the maintenance task
            compacts a backlog of L0 tables (loaded with compaction held
            off, then reopened): p50/p99/p99.9/max get latency, with the
            merges in-process and in the worker process
            (Options.compaction_process).

Each figure comes from one run on this machine; compare ratios, not
absolute numbers, on a shared machine.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

from perf import environment
from perf.stores import load as load_adapter
from perf.stores.base import StoreConfig

PEERS = ("rocksdict", "plyvel", "lmdb")


# -- the stores, behind one small interface -------------------------------------

class HedgeBlocking:
    name = "hedge"

    def __init__(self, path: str, cache_bytes: int, **options):
        import hedge

        self.db = hedge.open(path, create=True, block_cache_bytes=cache_bytes, **options)

    def put(self, key, value):
        self.db.put(key, value)

    def get(self, key):
        return self.db.get(key)

    def scan(self, start, count):
        out = []
        items = self.db.scan(start)
        for item in items:
            out.append(item)
            if len(out) >= count:
                break
        items.close()
        return out

    def close(self):
        self.db.close()


class Peer:
    def __init__(self, name: str, path: str, cache_bytes: int, expected_bytes: int):
        adapter = load_adapter(name)
        reason = adapter.unavailable()
        if reason:
            raise RuntimeError(reason)
        self.name = name
        self.store = adapter.open(path, StoreConfig(cache_bytes=cache_bytes, clients=1,
                                                    expected_bytes=expected_bytes))
        self.put = self.store.put
        self.get = self.store.get
        self.scan = self.store.scan

    def close(self):
        self.store.close()


# -- the threads part -------------------------------------------------------------

def _timed(fn, parts: list) -> float:
    """Run fn(part) for each part, one thread each (inline for one part);
    return the wall seconds."""
    t0 = time.perf_counter()
    if len(parts) == 1:
        fn(parts[0])
    else:
        errors = []

        def body(part):
            try:
                fn(part)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=body, args=(p,)) for p in parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    return time.perf_counter() - t0


def _split(items: list, n: int) -> list[list]:
    return [items[i::n] for i in range(n)]


def run_store(store, keys: list[bytes], value: bytes, scans: int, threads: int, rng: random.Random) -> dict:
    order = keys[:]
    rng.shuffle(order)
    put_s = _timed(lambda part: [store.put(k, value) for k in part], _split(order, threads))
    rng.shuffle(order)
    for k in order[: len(order) // 10]:        # warm up
        store.get(k)
    missing = []

    def gets(part):
        for k in part:
            if store.get(k) is None:
                missing.append(k)

    get_s = _timed(gets, _split(order, threads))
    if missing:
        raise AssertionError(f"{store.name}: {len(missing)} keys missing, e.g. {missing[0]!r}")
    starts = [rng.choice(keys) for _ in range(scans)]
    short = []

    def scan_part(part):
        for s in part:
            if len(store.scan(s, 50)) < 1:
                short.append(s)

    scan_s = _timed(scan_part, _split(starts, threads))
    if short:
        raise AssertionError(f"{store.name}: empty scans")
    return {"put": len(keys) / put_s, "get": len(keys) / get_s, "scan50": scans / scan_s}


def part_threads(args, root: str) -> dict:
    rng = random.Random(7)
    keys = [b"user%012d" % i for i in range(args.keys)]
    value = os.urandom(args.value_bytes)
    results: dict[str, dict] = {}
    names = ["hedge"] + [p for p in args.stores.split(",") if p and p != "hedge"]
    for threads in args.threads:
        for name in names:
            path = os.path.join(root, f"{name}-{threads}")
            try:
                store = (HedgeBlocking(path, args.cache_bytes, pin=args.pin) if name == "hedge"
                         else Peer(name, path, args.cache_bytes, args.keys * (args.value_bytes + 64) * 4))
            except RuntimeError as e:
                print(f"  {name}: skipped ({e})")
                continue
            try:
                r = run_store(store, keys, value, args.scans, threads, random.Random(threads))
            finally:
                store.close()
                shutil.rmtree(path, ignore_errors=True)
            results.setdefault(str(threads), {})[name] = r
            print(f"  {threads} thread(s) {name:10s} put {r['put']:>10,.0f}/s  get {r['get']:>10,.0f}/s  "
                  f"scan(50) {r['scan50']:>8,.0f}/s", flush=True)
    print()
    print("hedge / rocksdict:")
    for threads, row in results.items():
        if "hedge" in row and "rocksdict" in row:
            h, r = row["hedge"], row["rocksdict"]
            print(f"  {threads} thread(s): put {h['put'] / r['put']:.2f}  get {h['get'] / r['get']:.2f}  "
                  f"scan(50) {h['scan50'] / r['scan50']:.2f}")
    if len(results) > 1 and all("hedge" in row for row in results.values()):
        first, last = list(results.values())[0]["hedge"], list(results.values())[-1]["hedge"]
        print(f"hedge {args.threads[-1]} threads / {args.threads[0]}: "
              + "  ".join(f"{op} {last[op] / first[op]:.2f}" for op in ("put", "get", "scan50")))
    return results


# -- the asyncio part ---------------------------------------------------------------

def part_asyncio(args, root: str) -> dict:
    import hedge

    path = os.path.join(root, "hedge-asyncio")
    db = hedge.open(path, create=True, block_cache_bytes=0, pin=args.pin)
    n = max(args.concurrent * 4, 20_000)
    keys = [b"user%012d" % i for i in range(n)]
    value = os.urandom(args.value_bytes)
    batch = hedge.WriteBatch()
    for k in keys:
        batch.put(k, value)
    db.write(batch)
    db.flush()
    rng = random.Random(3)
    wanted = rng.sample(keys, args.concurrent)

    async def main():
        loop = asyncio.get_running_loop()
        lags = []
        running = True

        async def ticker():
            while running:
                t = loop.time()
                await asyncio.sleep(0.001)
                lags.append(loop.time() - t - 0.001)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        await db.aio.get(wanted[0])          # attach the loop thread's executor
        ex = db._callers.current()
        before = ex.stats()
        t0 = time.perf_counter()
        values = await asyncio.gather(*(db.aio.get(k) for k in wanted))
        elapsed = time.perf_counter() - t0
        after = ex.stats()
        running = False
        await tick
        assert values == [value] * len(wanted), "wrong values"
        sqes = after["sqes_submitted"] - before["sqes_submitted"]
        calls = after["submit_calls"] - before["submit_calls"]
        return {"gets": len(wanted), "seconds": elapsed, "gets_per_second": len(wanted) / elapsed,
                "sqes": sqes, "submit_calls": calls, "sqes_per_submit": sqes / calls if calls else 0.0,
                "io_method": after["io_method"], "worst_loop_lag_ms": max(lags) * 1e3 if lags else 0.0}

    try:
        out = asyncio.run(main())
    finally:
        db.close()
        shutil.rmtree(path, ignore_errors=True)
    print(f"  {out['gets']:,} concurrent gets from asyncio ({out['io_method']}): {out['gets_per_second']:,.0f}/s, "
          f"{out['sqes']:,} SQEs in {out['submit_calls']:,} submits = {out['sqes_per_submit']:.1f} per submit, "
          f"worst loop lag {out['worst_loop_lag_ms']:.2f} ms (1 ms ticker)")
    return out


# -- the calls part --------------------------------------------------------------------

def part_calls(args, root: str) -> dict:
    import hedge

    path = os.path.join(root, "hedge-calls")
    db = hedge.open(path, create=True, pin=args.pin)
    n = min(args.keys, 20_000)
    value = os.urandom(args.value_bytes)
    in_table = [b"table%012d" % i for i in range(n)]
    in_memtable = [b"mem%012d" % i for i in range(n)]
    for k in in_table:
        db.put(k, value)
    db.flush()
    for k in in_memtable:
        db.put(k, value)
    rounds = 5

    def blocking(keys):
        get = db.get
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            for k in keys:
                get(k)
            best = min(best, time.perf_counter() - t0)
        return best / len(keys) * 1e6

    def in_task(keys):
        async def main():
            get = db.aio.get
            best = float("inf")
            for _ in range(rounds):
                t0 = time.perf_counter()
                for k in keys:
                    await get(k)
                best = min(best, time.perf_counter() - t0)
            return best
        return db.run(main()) / len(keys) * 1e6

    try:
        out = {}
        for where, keys in (("memtable", in_memtable), ("cached table", in_table)):
            assert db.get(keys[0]) == value, "wrong value"
            out[f"db.get, {where}"] = blocking(keys)
            out[f"await db.aio.get in a task, {where}"] = in_task(keys)
    finally:
        db.close()
        shutil.rmtree(path, ignore_errors=True)
    for name, us in out.items():
        print(f"  {name:<45} {us:6.2f} us")
    return out


# -- the stall part -------------------------------------------------------------------

def _percentiles(samples: list[float]) -> dict:
    s = sorted(samples)

    def at(q):
        return s[min(len(s) - 1, int(q * len(s)))] * 1e3

    return {"count": len(s), "p50_ms": at(0.50), "p99_ms": at(0.99), "p999_ms": at(0.999), "max_ms": s[-1] * 1e3}


def part_stall(args, root: str) -> dict:
    """Load into L0 with compaction held off (a high trigger), reopen with
    the default triggers, and time blocking gets from this thread while the
    maintenance task compacts the backlog."""
    import hedge

    out = {}
    keys = [b"user%012d" % i for i in range(args.keys)]
    value = os.urandom(args.value_bytes)
    small = dict(memtable_bytes=1 << 20, table_bytes=4 << 20, level1_bytes=64 << 20)
    for label, options in (("in-process merges", dict(compaction_process=False)),
                           ("worker-process merges", dict(compaction_process=True))):
        path = os.path.join(root, "hedge-stall")
        with hedge.open(path, create=True, pin=args.pin, l0_compaction_trigger=1000, l0_slowdown_trigger=1000,
                        l0_stop_trigger=1000, **small) as db:
            order = keys[:]
            random.Random(1).shuffle(order)
            for k in order:
                db.put(k, value)
            db.flush()
            l0 = db.stats()["levels"][0]["files"]
        db = hedge.open(path, pin=args.pin, **small, **options)
        rng = random.Random(5)
        lat = []
        t0 = time.perf_counter()
        while True:
            for _ in range(500):
                k = rng.choice(keys)
                t = time.perf_counter()
                db.get(k)
                lat.append(time.perf_counter() - t)
            stats = db.stats()
            if stats["levels"][0]["files"] == 0 or time.perf_counter() - t0 > 120:
                break
        elapsed = time.perf_counter() - t0
        compactions = stats["compaction"]["count"]
        db.close()
        shutil.rmtree(path, ignore_errors=True)
        r = _percentiles(lat)
        r.update(l0_tables=l0, compactions=compactions, seconds=elapsed)
        out[label] = r
        print(f"  {label:22s}: {r['count']:,} gets while {l0} L0 tables were compacted ({compactions} "
              f"compactions, {elapsed:.1f} s): p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
              f"p99.9 {r['p999_ms']:.3f} ms  max {r['max_ms']:.1f} ms", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.api_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="threads,asyncio,calls,stall")
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument("--scans", type=int, default=5_000)
    p.add_argument("--threads", default="1,8", help="thread counts to run the threads part with")
    p.add_argument("--stores", default="hedge," + ",".join(PEERS))
    p.add_argument("--cache-bytes", type=int, default=64 << 20)
    p.add_argument("--concurrent", type=int, default=1000, help="concurrent gets of the asyncio part")
    p.add_argument("--stall-seconds", type=float, default=5.0)
    p.add_argument("--no-pin", dest="pin", action="store_false")
    p.add_argument("--db-dir", help="where the stores live (default: a temporary directory)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    root = tempfile.mkdtemp(prefix="hedge-api-bench-", dir=args.db_dir)
    env = environment.collect(root)
    print(f"environment: {env['cpu']}, {env['cores']} cores, {env['kernel'].split()[1]}, {env['python']}, "
          f"liburing {env['liburing']}, {env['file_system']}")
    results = {"environment": env}
    try:
        for part in parts:
            print(f"\n== {part}")
            results[part] = {"threads": part_threads, "asyncio": part_asyncio, "calls": part_calls,
                             "stall": part_stall}[part](args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
