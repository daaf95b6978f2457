"""Load throughput with compaction merges (or, with ``--option
flush_process``, flushes) in a worker process vs in the background thread
(Options.compaction_process, Options.flush_process), side by side in one
run.

Each round loads the same records (hashed key order, like YCSB's load) into
a fresh database from 64 client coroutines (sync=False), once with the
worker process and once without, alternating which goes first; then waits
for compaction to settle.  Prints every run (with the CPU seconds of the
database process and of the worker) and the medians:

    python -m perf.compaction_process_bench [--records 200000] [--value-size 1000] [--rounds 3]
        [--option compaction_process|flush_process]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time

import hedge
from hedge.exec import gather

CLIENTS = 64


def key_of(i: int) -> bytes:
    return b"user%020d" % ((i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)


def run_once(directory: str, records: int, value: bytes, on: bool, pin: bool = True,
             option: str = "compaction_process") -> dict:
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    db = hedge.open(directory, pin=pin, **{option: on})
    try:
        counter = iter(range(records))

        async def client():
            for i in counter:
                await db.aio.put(key_of(i), value)

        t0 = time.perf_counter()
        db.run(gather(*(client() for _ in range(CLIENTS))))
        load = time.perf_counter() - t0
        db.compact()
        settled = time.perf_counter() - t0
        c = db.stats()["compaction"]
    finally:
        db.close()
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime
    worker_cpu = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
    return {"on": on, "seconds": settled, "cpu": cpu, "worker_cpu": worker_cpu, "puts_per_s": records / load, "settled_puts_per_s": records / settled,
            "compactions": c["count"], "write_amp": c["write_amplification"],
            "stall_slowdowns": c["stall_slowdowns"], "stall_stops": c["stall_stops"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--value-size", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-pin", action="store_true", help="open with pin=False (no thread or worker pinning)")
    ap.add_argument("--dir", default=None, help="parent directory for the databases")
    ap.add_argument("--option", choices=("compaction_process", "flush_process"), default="compaction_process",
                    help="the option turned on and off (the other keeps its default)")
    args = ap.parse_args()
    value = os.urandom(args.value_size)
    parent = tempfile.mkdtemp(prefix="hedge-cpbench-", dir=args.dir)
    print(f"{args.records:,} records of {args.value_size:,} bytes, {CLIENTS} clients, cpus available: "
          f"{len(os.sched_getaffinity(0))}, pin={not args.no_pin}, toggling {args.option}")
    runs = []
    try:
        for r in range(args.rounds):
            for on in ((True, False) if r % 2 == 0 else (False, True)):
                path = os.path.join(parent, f"db-{r}-{on}")
                res = run_once(path, args.records, value, on, pin=not args.no_pin, option=args.option)
                shutil.rmtree(path)
                runs.append(res)
                print(f"round {r} process={'on ' if on else 'off'}  load {res['puts_per_s']:9,.0f} puts/s   "
                      f"load+settle {res['settled_puts_per_s']:9,.0f} puts/s   compactions {res['compactions']:3d}  "
                      f"wa {res['write_amp']:.2f}  stalls {res['stall_slowdowns']}/{res['stall_stops']}  "
                      f"cpu s: db process {res['cpu']:.1f} worker {res['worker_cpu']:.1f} "
                      f"of {res['seconds']:.1f} s", flush=True)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    med = {on: {k: statistics.median(r[k] for r in runs if r["on"] == on)
                for k in ("puts_per_s", "settled_puts_per_s")} for on in (True, False)}
    for k, label in (("puts_per_s", "load"), ("settled_puts_per_s", "load+settle")):
        print(f"median {label:12s}: process on {med[True][k]:9,.0f}  off {med[False][k]:9,.0f}  "
              f"ratio {med[True][k] / med[False][k]:.2f}")


if __name__ == "__main__":
    main()
