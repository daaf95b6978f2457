"""A C kernel against its Python twin, in one process: the in-process
figures of docs/design.md "C kernels".

    python -m perf.kernel_ab --kernel {search,probe,decode,read}
        [--workload {gets,scans}] [--records N] [--updates U] [--ops N]
        [--rounds R] [--cache-bytes B] [--dir DIR]

Loads N records of 1,000 B (YCSB's hashed key names) from 64 coroutines
and compacts them into one level (as perf/scan_mix_bench.py does), reopens
the database with a block cache of ``--cache-bytes`` and, for scans, puts
U updates of zipfian-chosen keys into its memtable.  Then, for each of
``--rounds`` rounds, it runs ``--ops`` zipfian gets (``await
db.aio.get``) or E-like scans of 1 to 100 pairs (``await db.aio.scan(start,
limit=n).to_list()``) from 64 coroutines twice: once with the kernel, once
with its twin (``use_*_kernel``), the order alternating by round.  One
process and one database for both sides: the machine's drift from run to
run, which hides effects of a few percent between two processes, falls on
both alike.  Prints each round's µs per operation, then the medians over
the rounds after the first (which fills the caches) and their ratio
(kernel / twin: below 1 is faster).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time

import hedge
from hedge.io import ops
from hedge.lsm import block, bloom
from perf.generators import ScrambledZipfian
from perf.keys import key_name
from perf.scan_mix_bench import CLIENTS, VALUE_BYTES, _load

# kernel name -> (whether it is built, the switch between it and its twin)
KERNELS = {
    "search": (block.search_kernel_available, block.use_search_kernel),
    "probe": (bloom.probe_kernel_available, bloom.use_probe_kernel),
    "decode": (block.decode_kernel_available, block.use_decode_kernel),
    "read": (ops.read_kernel_available, ops.use_read_kernel),
}


def _runner(db, workload: str):
    """A function running a batch of operations from CLIENTS coroutines."""
    async def get_client(batch: list, first: int) -> None:
        for i in range(first, len(batch), CLIENTS):
            await db.aio.get(batch[i])

    async def scan_client(batch: list, first: int) -> None:
        for i in range(first, len(batch), CLIENTS):
            start, n = batch[i]
            await db.aio.scan(start, limit=n).to_list()

    client = get_client if workload == "gets" else scan_client

    async def run_all(batch: list) -> None:
        await hedge.gather(*[client(batch, i) for i in range(CLIENTS)])

    return lambda batch: db.run(run_all(batch))


def measure(path: str, kernel: str, workload: str, records: int, updates: int, ops_per_side: int,
            rounds: int, cache_bytes: int) -> dict[bool, list[float]]:
    """µs per operation of each round, with the kernel (True) and with its
    twin (False).  Leaves the kernel in use."""
    _available, use = KERNELS[kernel]
    rng = random.Random(5)
    zipf = ScrambledZipfian(records, rng)
    results: dict[bool, list[float]] = {True: [], False: []}
    try:
        with hedge.open(path, block_cache_bytes=cache_bytes) as db:
            if workload == "scans" and updates:
                value = os.urandom(VALUE_BYTES)
                keys = [key_name(zipf.next()) for _ in range(updates)]

                async def writer(first: int) -> None:
                    for i in range(first, updates, CLIENTS):
                        await db.aio.put(keys[i], value)

                async def write_all() -> None:
                    await hedge.gather(*[writer(i) for i in range(CLIENTS)])

                db.run(write_all())
            run = _runner(db, workload)
            for r in range(rounds):
                for enabled in ((False, True) if r % 2 else (True, False)):
                    use(enabled)
                    if workload == "gets":
                        batch = [key_name(zipf.next()) for _ in range(ops_per_side)]
                    else:
                        batch = [(key_name(zipf.next()), rng.randint(1, 100)) for _ in range(ops_per_side)]
                    t0 = time.perf_counter()
                    run(batch)
                    results[enabled].append((time.perf_counter() - t0) / ops_per_side * 1e6)
    finally:
        use(True)
    return results


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", choices=sorted(KERNELS), required=True)
    p.add_argument("--workload", choices=["gets", "scans"], default="gets")
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--updates", type=int, default=55_000,
                   help="puts into the memtable before scans (default: 55,000)")
    p.add_argument("--ops", type=int, default=50_000, help="operations per side and round (default: 50,000)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--cache-bytes", type=int, default=64 << 20)
    p.add_argument("--dir", help="where to put the database (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.rounds < 2:
        p.error("--rounds must be at least 2 (the first only fills the caches)")
    available, _use = KERNELS[args.kernel]
    if not available():
        raise SystemExit(f"the {args.kernel} kernel is not built (hedge.io._uring) or HEDGE_PURE_PYTHON is set")
    root = tempfile.mkdtemp(dir=args.dir)
    try:
        path = os.path.join(root, "db")
        t0 = time.perf_counter()
        _load(path, args.records)
        print(f"loaded {args.records:,} records of {VALUE_BYTES} B in {time.perf_counter() - t0:.1f} s")
        results = measure(path, args.kernel, args.workload, args.records, args.updates, args.ops, args.rounds,
                          args.cache_bytes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    unit = "get" if args.workload == "gets" else "scan"
    for r in range(args.rounds):
        print(f"round {r + 1}: kernel {results[True][r]:.2f}, twin {results[False][r]:.2f} µs per {unit}")
    kernel = statistics.median(results[True][1:])
    twin = statistics.median(results[False][1:])
    print(f"median µs per {unit} (rounds after the first): kernel {kernel:.2f}, twin {twin:.2f}, "
          f"ratio {kernel / twin:.3f}")


if __name__ == "__main__":
    main()
