"""Pools: the foreground and background groups of executor threads.

A ``Pool`` is a fixed set of executors, each pinned (before it creates its
ring) to the cpu set the layout gave it.  Work from any thread goes to the
least-loaded executor (fewest live tasks plus queued messages; ties broken
round-robin); a task then stays on its executor for its whole life, since
rings are single-issuer.

``Pools`` builds both groups from the machine's topology (hedge/exec/
topology.py) and the options, and logs the layout in one line.

Threads: every public method may be called from any thread, except ``close``
from one of the pool's own executor threads.  After os.fork() a pool created
before the fork raises ForkError in the child.
"""
from __future__ import annotations

import itertools
import logging
import threading

from hedge.errors import ClosedError, ForkError
from hedge.exec import forkguard
from hedge.exec.executor import Executor, current_executor_or_none
from hedge.exec.task import SyncHandle
from hedge.exec.topology import Layout, plan_layout, read_topology
from hedge.io.backend import SUBMIT_MIN

log = logging.getLogger("hedge")


class Pool:
    def __init__(self, name: str, cpu_sets, io_method: str = "auto", ring_entries: int = 256,
                 submit_min: int = SUBMIT_MIN):
        """``cpu_sets``: one entry per thread, a frozenset of CPUs to pin it
        to, or None for no pinning."""
        if not cpu_sets:
            raise ValueError(f"pool {name} needs at least one thread")
        self.name = name
        self._generation = forkguard.generation()
        self._rr = itertools.count()
        self.executors = [
            Executor(io_method=io_method, ring_entries=ring_entries, name=f"hedge-{name}-{i}", cpus=cpus,
                     submit_min=submit_min)
            for i, cpus in enumerate(cpu_sets)
        ]
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> "Pool":
        started = []
        try:
            for ex in self.executors:
                ex.start()
                started.append(ex)
        except BaseException:
            for ex in started:
                ex.close()
            self._closed = True
            raise
        return self

    def _check(self) -> None:
        if forkguard.generation() != self._generation:
            raise ForkError(f"pool {self.name} was created before os.fork(); the child process "
                            "must open its own database or pool")
        if self._closed:
            raise ClosedError(f"pool {self.name} is closed")

    def pick(self) -> Executor:
        """The executor that should take the next piece of work."""
        executors = self.executors
        n = len(executors)
        if n == 1:
            return executors[0]
        start = next(self._rr) % n
        best = executors[start]
        best_load = len(best._tasks) + len(best._inbox)
        for i in range(1, n):
            ex = executors[(start + i) % n]
            load = len(ex._tasks) + len(ex._inbox)
            if load < best_load:
                best, best_load = ex, load
        return best

    def submit(self, coro, name: str | None = None) -> SyncHandle:
        """Schedule ``coro`` on one of the pool's executors (any thread)."""
        try:
            self._check()
        except BaseException:
            coro.close()
            raise
        return self.pick().submit(coro, name)

    def run_sync(self, coro):
        """Run ``coro`` on the pool and block the calling thread for its
        result.  From one of this pool's own threads, use ``await`` instead."""
        try:
            self._check()
        except BaseException:
            coro.close()
            raise
        here = current_executor_or_none()
        if here is not None and here in self.executors:
            coro.close()
            from hedge.errors import WrongThreadError

            raise WrongThreadError(f"run_sync() called from a thread of pool {self.name}; await instead")
        return self.pick().submit(coro).wait()

    def stats(self) -> list[dict]:
        return [ex.stats() for ex in self.executors]

    def close(self) -> None:
        """Cancel queued and running tasks, wait for in-flight I/O, join the
        threads, close the rings.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if forkguard.generation() != self._generation:
            return  # the threads and rings belong to the parent process
        for ex in self.executors:
            ex.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Pool":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class Pools:
    """The foreground and background pools of one database, laid out on the
    machine's cores (P-cores / E-cores, or a split of one kind)."""

    def __init__(self, io_method: str = "auto", ring_entries: int = 256,
                 foreground_threads: int | None = None, background_threads: int | None = None,
                 pin: bool = True, foreground_cpus=None, background_cpus=None,
                 layout: Layout | None = None, submit_min: int = SUBMIT_MIN):
        if layout is None:
            layout = plan_layout(read_topology(), foreground_threads=foreground_threads,
                                 background_threads=background_threads, pin=pin,
                                 foreground_cpus=foreground_cpus, background_cpus=background_cpus)
        self.layout = layout
        pinned = layout.pinned
        fg_sets = [s if pinned else None for s in layout.foreground]
        bg_sets = [s if pinned else None for s in layout.background]
        self.foreground = Pool("fg", fg_sets, io_method, ring_entries, submit_min)
        self.background = Pool("bg", bg_sets, io_method, ring_entries, submit_min)

    def start(self) -> "Pools":
        self.foreground.start()
        try:
            self.background.start()
        except BaseException:
            self.foreground.close()
            raise
        log.info("hedge: %s", self.layout.describe())
        return self

    def close(self) -> None:
        """Background first (it may be writing tables), then foreground."""
        try:
            self.background.close()
        finally:
            self.foreground.close()

    def stats(self) -> dict:
        return {
            "layout": self.layout.describe(),
            "foreground": self.foreground.stats(),
            "background": self.background.stats(),
        }

    def __enter__(self) -> "Pools":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
