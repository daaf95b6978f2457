"""Engine figures on one dataset, side by side in one run.

Default: 1,000,000 records, 16-byte keys, 100-byte values.  Prints the
environment, then:
  - load: puts/s from 64 client coroutines (sync=False), and the write
    amplification after the load settles (bytes written by flushes and
    compactions / bytes written to the WAL);
  - get, cached: random gets/s with a block cache holding all the data;
  - get, direct_io: reopened with direct_io=True and a cache an eighth of the
    data, so most gets read a block from the device through the ring;
  - the device: 4 KiB random O_DIRECT reads at 32 in flight straight through
    the ring on the same table files (the ceiling for the line above);
  - scan: entries/s of one full scan;
  - sync put: puts/s with sync=True from 1 and from 64 concurrent writers,
    and how many fdatasyncs the 64 writers needed (group commit).

    python -m perf.engine_bench [--records N] [--dir DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time

import hedge
from hedge.exec import gather
from hedge.io import ops
from hedge.io.buffer import Buffer
from hedge.io.file import File
from perf.environment import cpu_model

KEY_BYTES = 16
VALUE_BYTES = 100
CLIENTS = 64


def key_of(i: int) -> bytes:
    # 16 bytes, spread over the key space (load order is not key order).
    return b"k%015d" % ((i * 2654435761) % 10**15)


def environment(db) -> dict:
    s = db.stats()
    return {"python": platform.python_version(), "kernel": platform.release(),
            "cpu": cpu_model(), "cores": os.cpu_count(), "io_method": s["io_method"], "layout": s["layout"]}


def _progress(label: str, done: int, total: int, t0: float) -> None:
    if sys.stderr.isatty():
        rate = done / max(1e-9, time.perf_counter() - t0)
        sys.stderr.write(f"\r{label}: {done:,}/{total:,} ({rate:,.0f}/s)   ")
        sys.stderr.flush()


async def _load(db, n: int, value: bytes) -> None:
    t0 = time.perf_counter()
    counter = iter(range(n))

    async def client():
        for i in counter:
            await db.aio.put(key_of(i), value)
            if i % 50_000 == 0:
                _progress("load", i, n, t0)

    await gather(*(client() for _ in range(CLIENTS)))


async def _gets(db, n: int, records: int, value: bytes, seed: int) -> int:
    rng = random.Random(seed)
    picks = [rng.randrange(records) for _ in range(n)]
    it = iter(picks)
    bad = 0

    async def client():
        nonlocal bad
        for i in it:
            if await db.aio.get(key_of(i)) != value:
                bad += 1

    await gather(*(client() for _ in range(CLIENTS)))
    return bad


async def _sync_puts(db, writers: int, total: int, value: bytes) -> None:
    per = total // writers

    async def writer(w):
        for j in range(per):
            await db.aio.put(key_of(w * per + j), value, sync=True)

    await gather(*(writer(w) for w in range(writers)))


async def _device_reads(paths: list[str], seconds: float, depth: int = 32) -> float:
    files = [File.open(p, os.O_RDONLY, direct=True) for p in paths]
    sizes = [f.size() // 4096 for f in files]
    rng = random.Random(7)
    stop = time.perf_counter() + seconds
    count = 0

    async def worker():
        nonlocal count
        buf = Buffer(4096)
        while time.perf_counter() < stop:
            i = rng.randrange(len(files))
            await ops.read(files[i], buf, rng.randrange(sizes[i]) * 4096, 4096)
            count += 1

    t0 = time.perf_counter()
    await gather(*(worker() for _ in range(depth)))
    elapsed = time.perf_counter() - t0
    for f in files:
        f.close()
    return count / elapsed


def run(records: int, directory: str, gets: int, seed: int = 1) -> dict:
    value = random.Random(seed).randbytes(VALUE_BYTES)
    data_bytes = records * (KEY_BYTES + VALUE_BYTES)
    results: dict = {"records": records, "key_bytes": KEY_BYTES, "value_bytes": VALUE_BYTES}

    db = hedge.open(directory, block_cache_bytes=max(64 << 20, data_bytes * 2))
    results["environment"] = environment(db)
    t0 = time.perf_counter()
    db.run(_load(db, records, value))
    results["load_puts_per_s"] = records / (time.perf_counter() - t0)
    db.compact()
    results["load_settled_s"] = time.perf_counter() - t0
    s = db.stats()
    results["write_amplification"] = s["compaction"]["write_amplification"]
    results["levels"] = [lv["files"] for lv in s["levels"]]
    db.run(_gets(db, min(gets, records), records, value, seed))      # warm the cache
    t0 = time.perf_counter()
    bad = db.run(_gets(db, gets, records, value, seed + 1))
    results["get_cached_per_s"] = gets / (time.perf_counter() - t0)
    results["get_cached_wrong"] = bad
    t0 = time.perf_counter()
    n = sum(1 for _ in db.scan())
    results["scan_entries_per_s"] = n / (time.perf_counter() - t0)
    results["scan_entries"] = n
    t0 = time.perf_counter()
    db.run(_sync_puts(db, 1, 2000, value))
    results["sync_put_1_writer_per_s"] = 2000 / (time.perf_counter() - t0)
    syncs_before = db.stats()["wal"]["syncs"]
    t0 = time.perf_counter()
    db.run(_sync_puts(db, CLIENTS, 20_000, value))
    results["sync_put_64_writers_per_s"] = 20_000 / (time.perf_counter() - t0)
    results["sync_put_64_writers_fdatasyncs"] = db.stats()["wal"]["syncs"] - syncs_before
    db.close()

    cache = max(1 << 20, data_bytes // 8)
    db = hedge.open(directory, direct_io=True, block_cache_bytes=cache)
    direct_gets = max(1000, gets // 4)
    t0 = time.perf_counter()
    bad = db.run(_gets(db, direct_gets, records, value, seed + 2))
    results["get_direct_per_s"] = direct_gets / (time.perf_counter() - t0)
    results["get_direct_wrong"] = bad
    results["get_direct_cache"] = db.stats()["cache"]
    results["direct_cache_bytes"] = cache
    tables = [os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".sst")]
    results["device_qd32_reads_per_s"] = db.run(_device_reads(tables, 3.0))
    db.close()
    return results


def report(r: dict) -> None:
    env = r["environment"]
    print(f"# hedge engine bench: {r['records']:,} records, {r['key_bytes']} B keys, {r['value_bytes']} B values")
    print(f"# {env['cpu']}, {env['cores']} cores, kernel {env['kernel']}, Python {env['python']}, "
          f"io_method {env['io_method']}")
    print(f"# {env['layout']}")
    rows = [
        ("load (64 clients, sync=False)", f"{r['load_puts_per_s']:,.0f} puts/s"),
        ("load + compaction settled", f"{r['load_settled_s']:.1f} s, levels {r['levels']}"),
        ("write amplification after load", f"{r['write_amplification']:.2f}"),
        ("get, data cached (64 clients)", f"{r['get_cached_per_s']:,.0f} gets/s"),
        ("get, direct_io, cache = data/8", f"{r['get_direct_per_s']:,.0f} gets/s "
                                           f"(hit rate {_hit_rate(r['get_direct_cache']):.0%})"),
        ("device: ring 4 KiB O_DIRECT reads, QD32", f"{r['device_qd32_reads_per_s']:,.0f} reads/s"),
        ("scan (one full scan)", f"{r['scan_entries_per_s']:,.0f} entries/s"),
        ("sync put, 1 writer", f"{r['sync_put_1_writer_per_s']:,.0f} puts/s"),
        ("sync put, 64 writers", f"{r['sync_put_64_writers_per_s']:,.0f} puts/s "
                                 f"({r['sync_put_64_writers_fdatasyncs']} fdatasyncs for 20,000 puts)"),
    ]
    for label, value in rows:
        print(f"{label:42} {value}")
    print(f"direct_io gets / device reads = {r['get_direct_per_s'] / r['device_qd32_reads_per_s']:.2f}")
    if r["get_cached_wrong"] or r["get_direct_wrong"]:
        print(f"ERROR: {r['get_cached_wrong'] + r['get_direct_wrong']} gets returned a wrong value")


def _hit_rate(cache: dict | None) -> float:
    if not cache:
        return 0.0
    total = cache["hits"] + cache["misses"]
    return cache["hits"] / total if total else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--gets", type=int, default=200_000)
    parser.add_argument("--dir", help="parent directory for the database (default: a temporary one)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    parent = tempfile.mkdtemp(prefix="hedge-engine-bench-", dir=args.dir)
    try:
        results = run(args.records, os.path.join(parent, "db"), args.gets)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if results["get_cached_wrong"] or results["get_direct_wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
