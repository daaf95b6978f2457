"""What the benchmark's own clients cost per operation, so that a store's
throughput in ``perf.ycsb`` can be turned into what the store itself costs.

    python -m perf.client_cost [--workloads A,B,C,E,F] [--records N]
        [--operations N] [--clients N] [--value-size B] [--rounds R]

Runs the client programs ``perf.ycsb`` runs (perf/client.py: the same
operation streams, key choosers, value making and latency histograms)
against a store that answers every request at once: a get finds nothing, a
put stores nothing, a scan returns no pairs.  Each workload runs under the
two runners the stores use: round-robin on one thread (``single``:
rocksdict's) and one coroutine per client on a hedge executor
(``coroutines``: hedge's), alternated for ``--rounds`` rounds.  Prints each
runner's median µs per operation.

A store's own cost per operation is then ``1e6 / (its ops/s) - the
client's µs``: one request is in flight under ``single`` and the executor
runs one coroutine at a time, so the client's work and the store's add up
on one thread.  (A store that answers nothing gives its scans' clients no
pairs to count: their cost is the same, since no client looks at the pairs
unless ``--verify`` is on.)
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import hedge
from perf.client import Client, Program, Shared, drive_coroutines, drive_round_robin, run_programs
from perf.generators import InsertCounter
from perf.keys import KeySpace
from perf.values import ValueFactory
from perf.workload import Workload, standard

RUNNERS = ("single", "coroutines")


class AnswerAtOnce:
    """A store that does nothing: gets find nothing, puts store nothing,
    scans return no pairs.  Counts the requests it was given.  Coroutine
    forms for the ``coroutines`` runner, on the executor of ``db`` (a hedge
    database, only for its executor)."""

    def __init__(self, db) -> None:
        self._db = db
        self.requests = 0

    def get(self, key: bytes) -> None:
        self.requests += 1

    def put(self, key: bytes, value: bytes) -> None:
        self.requests += 1

    def scan(self, start: bytes, count: int) -> list:
        self.requests += 1
        return []

    async def aget(self, key: bytes) -> None:
        self.requests += 1

    async def aput(self, key: bytes, value: bytes) -> None:
        self.requests += 1

    async def ascan(self, start: bytes, count: int) -> list:
        self.requests += 1
        return []

    def run_concurrently(self, coroutines: list) -> None:
        async def main() -> None:
            await hedge.gather(*coroutines)

        self._db.run(main())


def programs_for(workload: Workload, records: int, operations: int, clients: int,
                 value_size: int, seed: int) -> list[Program]:
    """The client programs ``perf.ycsb`` runs for ``workload`` after a load
    of ``records`` records (``run_programs``, as perf/driver.py does)."""
    shared = Shared(KeySpace("hashed"), ValueFactory(value_size), InsertCounter(records), None)
    return run_programs([Client(i, seed, workload.name) for i in range(clients)], shared, workload, operations)


def time_runner(store: AnswerAtOnce, runner: str, programs: list[Program]) -> float:
    """Seconds ``runner`` takes to carry ``programs`` to ``store``."""
    t0 = time.perf_counter()
    if runner == "single":
        drive_round_robin(store, programs)
    else:
        drive_coroutines(store, programs)
    return time.perf_counter() - t0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf.client_cost", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="A,B,C,E,F")
    p.add_argument("--records", type=int, default=200_000, help="records the key choosers draw from")
    p.add_argument("--operations", type=int, default=100_000, help="operations per workload and round")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--value-size", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.records, args.operations, args.clients, args.rounds) < 1:
        parser.error("--records, --operations, --clients and --rounds must be at least 1")
    try:
        workloads = standard(args.workloads)
    except ValueError as e:
        parser.error(str(e))
    directory = tempfile.mkdtemp(prefix="hedge-client-cost-")
    try:
        db = hedge.open(directory, create=True)
        try:
            store = AnswerAtOnce(db)
            print(f"client µs per operation against a store that answers at once "
                  f"({args.clients} clients, {args.operations:,} operations, median of {args.rounds} rounds)")
            print(f"{'workload':<9}" + "".join(f"{r:>12}" for r in RUNNERS))
            for workload in workloads:
                times: dict[str, list[float]] = {r: [] for r in RUNNERS}
                for round_ in range(args.rounds):
                    for runner in (RUNNERS if round_ % 2 == 0 else RUNNERS[::-1]):
                        programs = programs_for(workload, args.records, args.operations, args.clients,
                                                args.value_size, args.seed)
                        before = store.requests
                        seconds = time_runner(store, runner, programs)
                        done = store.requests - before
                        if done < args.operations:      # a read-modify-write makes two
                            raise RuntimeError(f"the {runner} runner made {done:,} requests for "
                                               f"{args.operations:,} operations")
                        times[runner].append(1e6 * seconds / args.operations)
                print(f"{workload.name:<9}" + "".join(f"{statistics.median(times[r]):>12.2f}" for r in RUNNERS))
        finally:
            db.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
