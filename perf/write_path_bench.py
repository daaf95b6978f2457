"""What a put and a flush cost: the figures of docs/design.md "Keeping up
with the writers" and "Writes: group commit".

    python -m perf.write_path_bench [--puts N] [--rounds R] [--dir DIR]

Prints, for ``--rounds`` rounds:
  - puts: N puts of 1,000 B under random keys from 64 coroutines in a
    hedge task (``db.aio.put``), µs per put, first with the default
    options (memtables flushed as they fill; the writers' pacing waits
    and the flushes' times are shown), then into one memtable large
    enough that nothing is flushed (the put path alone);
  - flush job: the flush worker's job (replay the WAL, build and write
    the table, fdatasync) on the WAL of one full default memtable of such
    writes, run in this process on an executor; best of five, µs per
    write.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time

import hedge
from hedge.exec import Executor
from hedge.lsm.batch import WriteBatch
from hedge.lsm.compaction.worker import FlushJob, _flush_job
from hedge.lsm.wal.writer import WalWriter
from hedge.options import Options

VALUE_BYTES = 1000
CLIENTS = 64


def _keys(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [b"user%012d" % rng.randrange(10**12) for _ in range(n)]


def puts(directory: str, n: int, **options) -> tuple[float, dict]:
    """µs per put of ``n`` puts from CLIENTS coroutines, and the database's
    compaction stats."""
    shutil.rmtree(directory, ignore_errors=True)
    keys = _keys(n, 7)
    value = os.urandom(VALUE_BYTES)
    with hedge.open(directory, **options) as db:
        async def client(first: int) -> None:
            for i in range(first, n, CLIENTS):
                await db.aio.put(keys[i], value)

        async def main() -> None:
            await hedge.gather(*[client(c) for c in range(CLIENTS)])

        started = time.perf_counter()
        db.run(main())
        elapsed = time.perf_counter() - started
        stats = db.stats()["compaction"]
    return elapsed / n * 1e6, stats


def write_wal(executor: Executor, path: str, writes: int) -> None:
    """A WAL of ``writes`` puts, group-committed 64 to a record."""
    async def run() -> None:
        wal = await WalWriter.create(path, 1)
        keys = _keys(writes, 3)
        value = os.urandom(VALUE_BYTES)
        seq = 1
        try:
            for start in range(0, writes, CLIENTS):
                payload = []
                for key in keys[start:start + CLIENTS]:
                    batch = WriteBatch()
                    batch.put(key, value)
                    payload.append(batch.encode(seq))
                    seq += 1
                wal.append(b"".join(payload))
        finally:
            wal.close()

    executor.run_sync(run())


def flush_job(executor: Executor, directory: str, writes: int, repeat: int = 5) -> float:
    """Best seconds of ``repeat`` flush jobs of the WAL in ``directory``."""
    opts = Options()
    job = FlushJob(directory=directory, wal_number=1, entries=writes, max_seq=writes,
                   block_bytes=opts.block_bytes, bloom_bits_per_key=opts.bloom_bits_per_key,
                   compression=opts.compression, output_number=2, oldest_snapshot_seq=writes)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        executor.run_sync(_flush_job(job))
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where to put the databases (default: a temporary directory)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="hedge-write-path-", dir=args.dir)
    opts = Options()
    # The writes of one full default memtable.
    writes = opts.memtable_bytes // (len(b"user") + 12 + VALUE_BYTES + 16) + 1
    executor = Executor(name="flush-bench").start()
    try:
        wal_dir = os.path.join(root, "wal")
        os.makedirs(wal_dir)
        write_wal(executor, os.path.join(wal_dir, "000001.wal"), writes)
        for r in range(args.rounds):
            per_put, stats = puts(os.path.join(root, "db"), args.puts)
            print(f"round {r}: puts, default options   {per_put:6.2f} us/put  "
                  f"(paced {stats['stall_slowdown_seconds']:.2f} s, {stats['flushes']} flushes)")
            per_put, _ = puts(os.path.join(root, "db"), args.puts, memtable_bytes=4 << 30)
            print(f"round {r}: puts, one memtable       {per_put:6.2f} us/put")
            best = flush_job(executor, wal_dir, writes)
            print(f"round {r}: flush job, {writes:,} writes  {best * 1e3:6.1f} ms  "
                  f"({best / writes * 1e6:.2f} us/write)")
    finally:
        executor.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
