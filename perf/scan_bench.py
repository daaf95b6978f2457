"""Scan figures, forward and reverse, through the blocking API.

Loads N records (16-byte keys spread over the key space, 100-byte values),
compacts, then overwrites every 7th key so scans merge L0 tables, the
memtable and L1.  Prints the environment, the levels, then per round:
  - full: entries/s of one whole scan, forward and reverse;
  - scan50: scans/s of 50 pairs from random keys (reverse: the 50 below);
  - cursor: steps/s of a cursor walking 50 keys on and 50 back from random
    seeks (each walk switches direction once);
  - aio scan50: forward scan50 through db.aio in one task, stepped with
    ``async for`` and taken with ``to_list()``.
Rates are per second of the scanning thread's CPU time (the box is shared:
wall time mostly measures the neighbours), of the process's for the aio
rows (db.run runs them on an executor thread); the block cache holds the
data.

    python -m perf.scan_bench [--records N] [--rounds R] [--dir DIR]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time

import hedge
from perf.environment import collect


def key_of(i: int) -> bytes:
    return b"k%015d" % ((i * 2654435761) % 10**15)


def per_cpu_second(fn, clock=time.thread_time) -> float:
    t0 = clock()
    n = fn()
    return n / max(1e-9, clock() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scans", type=int, default=3_000)
    p.add_argument("--dir", help="where to put the database (default: a temporary directory)")
    args = p.parse_args(argv)
    path = tempfile.mkdtemp(dir=args.dir)
    try:
        with hedge.open(path, pin=False, memtable_bytes=1 << 20, block_cache_bytes=256 << 20) as db:
            print(json.dumps(collect(path)))
            for i in range(args.records):
                db.put(key_of(i), b"v" * 100)
            db.compact()
            for i in range(0, args.records, 7):
                db.put(key_of(i), b"w" * 100)
            print("levels (files):", [level["files"] for level in db.stats()["levels"]])
            rng = random.Random(1)
            keys = [k for k, _ in db.scan()]
            starts = [rng.choice(keys) for _ in range(args.scans)]

            def full(reverse: bool):
                return lambda: sum(1 for _ in db.scan(reverse=reverse))

            def short(reverse: bool):
                def run() -> int:
                    for s in starts:
                        it = db.scan(None, s, reverse=True) if reverse else db.scan(s)
                        for j, _ in enumerate(it):
                            if j == 49:
                                break
                        it.close()
                    return len(starts)
                return run

            def aio_short(to_list: bool):
                async def scans() -> None:
                    for s in starts:
                        if to_list:
                            await db.aio.scan(s, limit=50).to_list()
                        else:
                            [item async for item in db.aio.scan(s, limit=50)]

                def run() -> int:
                    db.run(scans())
                    return len(starts)
                return run

            def walks() -> int:
                steps = 0
                with db.cursor() as cursor:
                    for s in starts:
                        cursor.seek(s)
                        for _ in range(50):
                            steps += 1
                            if not cursor.next():
                                break
                        cursor.seek(s)
                        for _ in range(50):
                            steps += 1
                            if not cursor.prev():
                                break
                return steps

            for _ in range(args.rounds):
                print(f"forward: full {per_cpu_second(full(False)):>9,.0f} entries/s  "
                      f"scan50 {per_cpu_second(short(False)):>7,.0f}/s   "
                      f"reverse: full {per_cpu_second(full(True)):>9,.0f} entries/s  "
                      f"scan50 {per_cpu_second(short(True)):>7,.0f}/s   "
                      f"cursor {per_cpu_second(walks):>9,.0f} steps/s   "
                      f"aio scan50: async for {per_cpu_second(aio_short(False), time.process_time):>7,.0f}/s  "
                      f"to_list {per_cpu_second(aio_short(True), time.process_time):>7,.0f}/s", flush=True)
    finally:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
