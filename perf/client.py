"""Clients: one client's operation stream, written once as a generator of
requests, and the runners that carry the requests to a store.

A client program yields requests and receives each answer with the time the
store took for it:

    (GET, key)           -> (value or None, elapsed_ns)
    (PUT, key, value)    -> (None, elapsed_ns)
    (SCAN, start, count) -> (list of (key, value), elapsed_ns)

The runners time every store call with ``time.perf_counter_ns`` around the
call (or the ``await``), so latency means the same under every concurrency
model:

- ``drive_round_robin``: the calling thread takes one request from each client
  in turn (for bindings that hold the GIL: the operation streams stay the
  same as under the other models, one request is in flight);
- ``drive_threads``: several threads, each running its share of the clients
  round-robin; one thread per client by default (for bindings that release
  the GIL);
- ``drive_coroutines``: one coroutine per client, all on the store's own
  executor (hedge).

A client's random streams are seeded from (seed, phase, client index), so the
same clients issue the same operations against every store.  Which record an
insert gets, and hence what later draws may pick, depends on completion order.

Thread safety: a Client and its program belong to one runner thread; the
objects in ``Shared`` lock where they must.
"""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Generator

from perf.generators import InsertCounter, KeyChooser, OperationChooser, ScanLength
from perf.histogram import Histogram
from perf.keys import KeySpace
from perf.values import ValueFactory
from perf.verify import Verifier
from perf.workload import INSERT, READ, RMW, SCAN, UPDATE, Workload

GET, PUT, SCAN_REQUEST = 0, 1, 2

Request = tuple
Answer = tuple[Any, int]
Program = Generator[Request, Answer, None]


@dataclass
class Shared:
    """What the clients of one store share during a phase."""

    keys: KeySpace
    values: ValueFactory
    counter: InsertCounter
    verifier: Verifier | None
    deadline_ns: int | None = None


class Client:
    """One client: its random stream, its histograms and its progress count."""

    def __init__(self, index: int, seed: int, phase: str):
        self.index = index
        self.rng = random.Random(f"{seed}/{phase}/{index}")
        self.histograms: dict[str, Histogram] = {}
        self.done = 0
        self._version = 0

    def histogram(self, op: str) -> Histogram:
        h = self.histograms.get(op)
        if h is None:
            h = self.histograms[op] = Histogram()
        return h

    def unverified_version(self) -> int:
        """A fresh version number when nothing tracks versions per key."""
        self._version += 1
        return self._version


def load_program(client: Client, shared: Shared, records: int) -> Program:
    """Insert record numbers from the shared counter until ``records`` are
    taken; every value is version 0."""
    hist = client.histogram(INSERT)
    counter, keys, values, verifier = shared.counter, shared.keys, shared.values, shared.verifier
    while (n := counter.take(records)) is not None:
        key = keys.name(n)
        ticket = verifier.begin_insert(key) if verifier else None
        _, ns = yield (PUT, key, values.make(key, 0))
        if verifier:
            verifier.end_write(key, ticket)
        counter.acknowledge(n)
        hist.record(ns)
        client.done += 1


def run_program(client: Client, shared: Shared, workload: Workload, quota: int,
                expected_items: int) -> Program:
    """``quota`` operations of ``workload`` (fewer if the deadline passes).

    ``expected_items``: the record count the zipfian space is sized for
    (records present plus the inserts expected).
    """
    rng = client.rng
    proportions = workload.proportions()
    ops = OperationChooser(list(proportions), list(proportions.values()), rng)
    chooser = KeyChooser(workload.request_distribution, shared.counter, expected_items, rng)
    lengths = (ScanLength(workload.min_scan_length, workload.max_scan_length,
                          workload.scan_length_distribution, rng) if workload.scan > 0 else None)
    steps: dict[str, Callable[[], Generator[Request, Answer, int]]] = {
        READ: lambda: _read(shared, chooser),
        UPDATE: lambda: _update(client, shared, chooser),
        INSERT: lambda: _insert(shared),
        SCAN: lambda: _scan(shared, chooser, lengths),
        RMW: lambda: _read_modify_write(client, shared, chooser),
    }
    deadline = shared.deadline_ns
    histograms = {op: client.histogram(op) for op, w in proportions.items() if w > 0}
    for _ in range(quota):
        op = ops.next()
        ns = yield from steps[op]()
        histograms[op].record(ns)
        client.done += 1
        if deadline is not None and time.perf_counter_ns() >= deadline:
            return


def run_programs(clients: list[Client], shared: Shared, workload: Workload, operations: int) -> list[Program]:
    """The programs of one run phase of ``workload``: ``operations`` split
    over ``clients`` (the first ones take one more when they do not divide
    evenly), the zipfian space sized for the records present plus twice
    the inserts expected."""
    n = len(clients)
    expected = shared.counter.limit + int(operations * workload.insert * 2)
    return [run_program(c, shared, workload, operations // n + (1 if c.index < operations % n else 0), expected)
            for c in clients]


def _read(shared: Shared, chooser: KeyChooser) -> Generator[Request, Answer, int]:
    key = shared.keys.name(chooser.next())
    verifier = shared.verifier
    check = verifier.begin_read(key) if verifier else None
    value, ns = yield (GET, key)
    if verifier:
        verifier.end_read(key, check, value)
    return ns


def _write(client: Client, shared: Shared, key: bytes) -> Generator[Request, Answer, int]:
    verifier = shared.verifier
    if verifier:
        ticket = verifier.begin_write(key)
        version = ticket.version
    else:
        version = client.unverified_version()
    _, ns = yield (PUT, key, shared.values.make(key, version))
    if verifier:
        verifier.end_write(key, ticket)
    return ns


def _update(client: Client, shared: Shared, chooser: KeyChooser) -> Generator[Request, Answer, int]:
    return (yield from _write(client, shared, shared.keys.name(chooser.next())))


def _insert(shared: Shared) -> Generator[Request, Answer, int]:
    n = shared.counter.take()
    key = shared.keys.name(n)
    verifier = shared.verifier
    ticket = verifier.begin_insert(key) if verifier else None
    _, ns = yield (PUT, key, shared.values.make(key, 0))
    if verifier:
        verifier.end_write(key, ticket)
    shared.counter.acknowledge(n)
    return ns


def _scan(shared: Shared, chooser: KeyChooser, lengths: ScanLength) -> Generator[Request, Answer, int]:
    start = shared.keys.name(chooser.next())
    count = lengths.next()
    items, ns = yield (SCAN_REQUEST, start, count)
    if shared.verifier:
        shared.verifier.check_scan(start, items, count)
    return ns


def _read_modify_write(client: Client, shared: Shared, chooser: KeyChooser) -> Generator[Request, Answer, int]:
    """Read a record, then write a new version of it; the latency is the sum
    of the two store calls."""
    key = shared.keys.name(chooser.next())
    verifier = shared.verifier
    check = verifier.begin_read(key) if verifier else None
    value, read_ns = yield (GET, key)
    if verifier:
        verifier.end_read(key, check, value)
    write_ns = yield from _write(client, shared, key)
    return read_ns + write_ns


# --- runners -----------------------------------------------------------------

def drive_threads(store, programs: list[Program], threads: int) -> None:
    """``threads`` threads, each running its share of the programs (every
    threads-th one) round-robin; re-raises the first exception of a thread."""
    errors: list[BaseException] = []

    def body(share: list[Program]) -> None:
        try:
            drive_round_robin(store, share)
        except BaseException as exc:  # carried to the caller below
            errors.append(exc)

    shares = [programs[i::threads] for i in range(min(threads, len(programs)))]
    workers = [threading.Thread(target=body, args=(share,), name=f"client-thread-{i}", daemon=True)
               for i, share in enumerate(shares)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]


def drive_round_robin(store, programs: list[Program]) -> None:
    """All programs on the calling thread, one request of each in turn."""
    get, put, scan = store.get, store.put, store.scan
    clock = time.perf_counter_ns
    ready: deque[tuple[Program, Request]] = deque()
    for program in programs:
        try:
            ready.append((program, next(program)))
        except StopIteration:
            pass
    while ready:
        program, request = ready.popleft()
        kind = request[0]
        t0 = clock()
        if kind == GET:
            result = get(request[1])
        elif kind == PUT:
            result = put(request[1], request[2])
        else:
            result = scan(request[1], request[2])
        elapsed = clock() - t0
        try:
            ready.append((program, program.send((result, elapsed))))
        except StopIteration:
            pass


async def _drive_async(store, program: Program) -> None:
    clock = time.perf_counter_ns
    try:
        request = next(program)
        while True:
            kind = request[0]
            if kind == GET:
                t0 = clock()
                result = await store.aget(request[1])
            elif kind == PUT:
                t0 = clock()
                result = await store.aput(request[1], request[2])
            else:
                t0 = clock()
                result = await store.ascan(request[1], request[2])
            request = program.send((result, clock() - t0))
    except StopIteration:
        return


def drive_coroutines(store, programs: list[Program]) -> None:
    """One coroutine per program, run together on the store's executor."""
    store.run_concurrently([_drive_async(store, p) for p in programs])

