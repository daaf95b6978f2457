"""The benchmark of one store: load phase, then one run phase per workload.

- Load: the store is opened without per-write durability, ``records``
  records are inserted by the clients (record numbers from a shared counter,
  every value version 0), the bytes its flushes and compactions wrote are
  read from the store's own statistics where it has them
  (``background_bytes_written``), and the store is closed (so it flushes)
  and its size on disk measured.  Write amplification = those bytes / the
  logical bytes the clients wrote (keys and values); space amplification =
  the size on disk / the logical bytes of the records.
- Run: the store is reopened in the run's mode (``sync``, ``cold``); before
  each workload of a cold run the page cache is dropped; each workload runs
  ``operations`` operations split over the clients (or stops at ``seconds``).

Records inserted by one workload stay for the next (E's inserts are there
for F), as do the verifier's versions.

Thread safety: call from the main thread; the clients run on the threads or
executor the store's concurrency model asks for.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from perf.client import (Client, Program, Shared, drive_coroutines, drive_round_robin, drive_threads,
                         load_program, run_programs)
from perf.environment import drop_page_cache
from perf.generators import InsertCounter
from perf.histogram import Histogram
from perf.keys import KeySpace
from perf.progress import Progress, live_wanted
from perf.stores.base import StoreConfig
from perf.values import ValueFactory
from perf.verify import Verifier
from perf.workload import Workload


@dataclass(frozen=True)
class RunConfig:
    """What every store of a run is given."""

    records: int = 200_000
    operations: int = 100_000
    # Per-workload time limit; None: only the operation count bounds it.
    seconds: float | None = None
    value_size: int = 1000
    insert_order: str = "hashed"
    seed: int = 1
    # Check every read against the versions written (slower; for tests).
    verify: bool = False
    # auto | always | never: the live progress bar.
    progress: str = "auto"
    store: StoreConfig = field(default_factory=StoreConfig)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class PhaseResult:
    phase: str
    description: str
    operations: int
    elapsed_s: float
    histograms: dict[str, Histogram]
    verify: dict | None = None
    note: str = ""

    def throughput(self) -> float:
        return self.operations / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict:
        ops = {}
        for op, h in sorted(self.histograms.items()):
            summary = h.summary_us()
            summary["throughput_ops_s"] = round(h.count / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0
            ops[op] = summary
        return {
            "phase": self.phase,
            "description": self.description,
            "operations": self.operations,
            "elapsed_s": round(self.elapsed_s, 4),
            "throughput_ops_s": round(self.throughput(), 1),
            "ops": ops,
            "verify": self.verify,
            "note": self.note,
        }


@dataclass
class StoreResult:
    name: str
    status: str  # "ok", "skipped" or "failed"
    reason: str = ""
    settings: dict = field(default_factory=dict)
    load_durability: str = ""
    disk_bytes_after_load: int | None = None
    # Bytes the store's flushes and compactions wrote during the load (None: it does not say).
    background_bytes_after_load: int | None = None
    # Logical bytes (keys + values) the load wrote.
    logical_bytes_loaded: int | None = None
    phases: list[PhaseResult] = field(default_factory=list)

    def write_amplification(self) -> float | None:
        """Flush + compaction bytes / logical bytes written, for the load."""
        if self.background_bytes_after_load is None or not self.logical_bytes_loaded:
            return None
        return self.background_bytes_after_load / self.logical_bytes_loaded

    def space_amplification(self) -> float | None:
        """Bytes on disk after the load / logical bytes of the records."""
        if self.disk_bytes_after_load is None or not self.logical_bytes_loaded:
            return None
        return self.disk_bytes_after_load / self.logical_bytes_loaded

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "settings": self.settings,
            "load_durability": self.load_durability,
            "disk_bytes_after_load": self.disk_bytes_after_load,
            "background_bytes_after_load": self.background_bytes_after_load,
            "logical_bytes_loaded": self.logical_bytes_loaded,
            "write_amplification": _rounded(self.write_amplification()),
            "space_amplification": _rounded(self.space_amplification()),
            "phases": [p.as_dict() for p in self.phases],
        }


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def disk_bytes(path: str) -> int:
    """Bytes allocated on disk under ``path`` (sparse files count what they use)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


class StoreBenchmark:
    """Runs the load and the workloads against one adapter class."""

    def __init__(self, adapter, config: RunConfig, keys: KeySpace, values: ValueFactory,
                 log: Callable[[str], None]):
        self.adapter = adapter
        self.config = config
        self.keys = keys
        self.values = values
        self.log = log
        self.counter = InsertCounter()
        self.verifier = Verifier(values) if config.verify else None

    def run(self, path: str, workloads: list[Workload]) -> StoreResult:
        """Load, then run each workload.  A store that fails is reported as
        failed with the error; the exception does not escape."""
        result = StoreResult(self.adapter.name, "ok")
        try:
            self._load(path, result)
            store = self.adapter.open(path, self.config.store)
            try:
                result.settings = store.settings()
                self.log(f"{self.adapter.name}: {result.settings.get('durability', '')}")
                for workload in workloads:
                    note = ""
                    if self.config.store.cold:
                        _, note = drop_page_cache()
                    result.phases.append(self._workload(store, workload, note))
            finally:
                store.close()
        except Exception as exc:  # reported, and the next store runs
            result.status = "failed"
            result.reason = f"{type(exc).__name__}: {exc}"
            self.log(f"{self.adapter.name}: failed: {result.reason}")
        return result

    def _clients(self, phase: str) -> list[Client]:
        return [Client(i, self.config.seed, phase) for i in range(self.config.store.clients)]

    def _shared(self) -> Shared:
        return Shared(self.keys, self.values, self.counter, self.verifier)

    def _load(self, path: str, result: StoreResult) -> None:
        load_config = dataclasses.replace(self.config.store, sync=False, cold=False)
        store = self.adapter.open(path, load_config)
        try:
            result.load_durability = store.settings().get("durability", "")
            clients = self._clients("load")
            shared = self._shared()
            programs = [load_program(c, shared, self.config.records) for c in clients]
            phase = self._phase(store, "load", f"insert {self.config.records:,} records",
                                programs, clients, self.config.records, shared, "")
            result.phases.append(phase)
            result.logical_bytes_loaded = sum(
                len(self.keys.name(i)) for i in range(self.config.records)) + self.config.records * self.config.value_size
            written = getattr(store, "background_bytes_written", None)
            result.background_bytes_after_load = written() if written is not None else None
        finally:
            store.close()
        result.disk_bytes_after_load = disk_bytes(path)

    def _workload(self, store, workload: Workload, note: str) -> PhaseResult:
        operations = self.config.operations
        clients = self._clients(workload.name)
        shared = self._shared()
        programs = run_programs(clients, shared, workload, operations)
        return self._phase(store, workload.name, workload.describe(), programs, clients, operations,
                           shared, note)

    def _drive(self, store, programs: list[Program]) -> None:
        model = self.adapter.concurrency_model
        if model == "coroutines":
            drive_coroutines(store, programs)
        elif model == "threads":
            drive_threads(store, programs, self.config.store.threads or len(programs))
        elif model == "single":
            drive_round_robin(store, programs)
        else:
            raise ValueError(f"{self.adapter.name}: unknown concurrency model {model!r}")

    def _phase(self, store, phase: str, description: str, programs: list[Program],
               clients: list[Client], total: int, shared: Shared, note: str) -> PhaseResult:
        label = f"{self.adapter.name} {phase}"
        mismatches_before = self.verifier.report.mismatches if self.verifier else 0
        checked_before = self.verifier.report.reads_checked if self.verifier else 0
        live = live_wanted(self.config.progress, sys.stderr)
        with Progress(label, total, lambda: sum(c.done for c in clients), live) as progress:
            if self.config.seconds is not None and phase != "load":
                shared.deadline_ns = time.perf_counter_ns() + int(self.config.seconds * 1e9)
            started = time.perf_counter()
            self._drive(store, programs)
            elapsed = time.perf_counter() - started
        histograms: dict[str, Histogram] = {}
        for c in clients:
            for op, h in c.histograms.items():
                histograms.setdefault(op, Histogram()).merge(h)
        histograms = {op: h for op, h in histograms.items() if h.count}
        operations = sum(c.done for c in clients)
        verify = None
        extra = f"  ({note})" if note else ""
        if self.verifier is not None:
            report = self.verifier.report
            verify = {"reads_checked": report.reads_checked - checked_before,
                      "mismatches": report.mismatches - mismatches_before,
                      "examples": list(report.examples)}
            if verify["reads_checked"] or verify["mismatches"]:
                extra += f"  verified {verify['reads_checked']:,} reads, {verify['mismatches']} mismatches"
        progress.summary(operations, elapsed, extra)
        return PhaseResult(phase, description, operations, elapsed, histograms, verify, note)

