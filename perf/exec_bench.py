"""Cost of crossing threads and of small tasks on the executors.

Prints, for each I/O method: one run_sync round trip (caller thread ->
executor -> caller) in µs, a batch of 1,000 small tasks spawned and joined
on one executor (µs per task), and 1,000 run_sync calls from 4 threads at
once.  The store's sync API is built on run_sync, so this is the floor of a
sync get/put.

    python -m perf.exec_bench [--rounds N]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time

from hedge.exec import Executor, gather
from hedge.io import ops
from hedge.io.backend import available_methods


async def _noop():
    return None


async def _small_task():
    await ops.nop()


async def _batch(n):
    await gather(*(_small_task() for _ in range(n)))


def measure(method: str, rounds: int) -> dict:
    with Executor(io_method=method) as ex:
        for _ in range(200):
            ex.run_sync(_noop())
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            ex.run_sync(_noop())
            samples.append(time.perf_counter_ns() - t0)
        t0 = time.perf_counter_ns()
        ex.run_sync(_batch(1000))
        batch_ns = time.perf_counter_ns() - t0

        def client():
            for _ in range(250):
                ex.run_sync(_noop())

        threads = [threading.Thread(target=client) for _ in range(4)]
        t0 = time.perf_counter_ns()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        threaded_ns = time.perf_counter_ns() - t0
    samples.sort()
    return {
        "method": method,
        "run_sync_median_us": statistics.median(samples) / 1000,
        "run_sync_p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "task_with_nop_us": batch_ns / 1000 / 1000,
        "run_sync_4_threads_us_per_call": threaded_ns / 1000 / 1000,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args(argv)
    print(f"# python {platform.python_version()}, kernel {platform.release()}, {os.cpu_count()} cpus")
    print(f"{'method':10} {'run_sync p50 µs':>16} {'p99 µs':>8} {'task+nop µs':>12} {'4-thread µs/call':>17}")
    for method in available_methods():
        r = measure(method, args.rounds)
        print(f"{r['method']:10} {r['run_sync_median_us']:16.1f} {r['run_sync_p99_us']:8.1f} "
              f"{r['task_with_nop_us']:12.2f} {r['run_sync_4_threads_us_per_call']:17.1f}")


if __name__ == "__main__":
    main()
