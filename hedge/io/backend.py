"""I/O methods: io_uring, threads, sync — one interface, chosen at run time.

A backend belongs to one executor and is created on, and used only by, that
executor's thread, except ``wake()``, which any thread may call.

Interface (what the executor relies on):
  capacity                  most requests that may be in flight at once
  stage(ud, op, fd, obj, start, length, offset, flags)
                            queue one request tagged ``ud`` (>= 1); it is in
                            flight from now on
  enter(wait, timeout_ns)   submit what is staged; when ``wait``, block until
                            at least one completion, a wake-up, or the timeout
                            (ns; -1 = none); return completions as a list of
                            (ud, result) with result >= 0 or -errno
  cancel(ud)                best effort: cancel an open-ended request
                            (TIMEOUT, POLL); it completes with -ECANCELED
  wake()                    any thread: make a blocked ``enter`` return
  completion_fd()           a descriptor that turns readable whenever a
                            completion may be waiting (for an event loop
                            that runs ``enter(False)`` when it fires); from
                            then on the backend always signals it
  ack_completion_fd()       clear that descriptor's readiness
  set_submit_min(n)         the early-submission threshold (io_uring; 0:
                            submit only at ``enter``)
  next_deadline()           monotonic seconds of the first timer the backend
                            keeps itself (threads, sync), or None
  counters()                dict of submission statistics
  close()                   REQUIRES nothing in flight; release resources

Methods:
  io_uring  hedge/io/uring.py: the ring (default on Linux).
  threads   worker threads doing the blocking calls; completions handed back
            through a deque and an eventfd.
  sync      every call made inline at stage time; for debugging and as the
            universal fallback.
Selection: ``resolve_method("auto")`` picks io_uring when the binding is
built and the kernel lets us create a ring, else threads, logging one line
saying why.  HEDGE_IO_METHOD overrides the configured method.
"""
from __future__ import annotations

import collections
import heapq
import logging
import os
import select
import threading
import time

from hedge.errors import HedgeIOError
from hedge.io import opcodes as O
from hedge.io.counters import SubmitCounters
from hedge.io.syscalls import perform

log = logging.getLogger("hedge")

METHODS = ("io_uring", "threads", "sync")

# The io_uring early-submission threshold every executor gets by default:
# staged requests go to the kernel before the ready queue drains once this
# many are staged (and they are half of what the kernel holds).  Each
# submission costs a system call and, on a virtual machine, an exit to kick
# the device: with a threshold of 2, cold gets from 64 coroutines spent 14-19
# us of system time each and ran at 1.3-1.5x rocksdict; with 16, 5-7 us and
# about 2x, while a ring of 32 reads in flight keeps its rate (docs/design.md).
SUBMIT_MIN = 16

_EFD_FLAGS = os.EFD_NONBLOCK | os.EFD_CLOEXEC


class PollingBackend(SubmitCounters):
    """Shared machinery of the threads and sync backends: a deque of
    completions, a timer heap for TIMEOUT requests, a list of POLL requests,
    and an eventfd to sleep on and to be woken through."""

    name = "polling"

    def __init__(self, entries: int):
        super().__init__()
        self.capacity = max(1, entries) * 2
        self._done: collections.deque = collections.deque()
        self._timers: list[tuple[int, int]] = []
        self._polls: list[tuple[int, int, int]] = []
        self._efd = os.eventfd(0, _EFD_FLAGS)
        self._waiting = False
        self._notify = False      # signal the eventfd on every completion (event-loop mode)
        self._closed = False
        self._batch = 0

    # -- subclass hook -------------------------------------------------
    def _start(self, ud, op, fd, obj, start, length, offset, flags) -> None:
        raise NotImplementedError

    # -- interface -----------------------------------------------------
    def stage(self, ud, op, fd, obj, start, length, offset, flags) -> None:
        self._batch += 1
        if op == O.TIMEOUT:
            heapq.heappush(self._timers, (time.monotonic_ns() + offset, ud))
        elif op == O.POLL:
            self._polls.append((ud, fd, length))
        else:
            self._start(ud, op, fd, obj, start, length, offset, flags)

    def _count_batch(self) -> None:
        if self._batch:
            self.count_batch(self._batch)
            self._batch = 0

    def _collect(self, out: list) -> None:
        done = self._done
        while done:
            out.append(done.popleft())
        if self._timers:
            now = time.monotonic_ns()
            timers = self._timers
            while timers and timers[0][0] <= now:
                out.append((heapq.heappop(timers)[1], -62))  # -ETIME, as io_uring reports it
        if self._polls:
            self._check_polls(out, 0)

    def _check_polls(self, out: list, timeout_ms) -> None:
        poller = select.poll()
        poller.register(self._efd, select.POLLIN)
        for _, fd, mask in self._polls:
            poller.register(fd, mask)
        events = dict(poller.poll(timeout_ms))
        if self._polls and events:
            remaining = []
            for ud, fd, mask in self._polls:
                revents = events.get(fd, 0) & (mask | select.POLLERR | select.POLLHUP | select.POLLNVAL)
                if revents:
                    out.append((ud, revents))
                else:
                    remaining.append((ud, fd, mask))
            self._polls = remaining

    def enter(self, wait: bool, timeout_ns: int = -1) -> list:
        self.stats_enter_calls += 1
        self._count_batch()
        out: list = []
        self._collect(out)
        if out or not wait:
            return out
        deadline = None if timeout_ns < 0 else time.monotonic_ns() + timeout_ns
        if self._timers:
            first = self._timers[0][0]
            deadline = first if deadline is None else min(deadline, first)
        timeout_ms = None if deadline is None else max(0, (deadline - time.monotonic_ns() + 999_999) // 1_000_000)
        t0 = time.perf_counter_ns()
        self._waiting = True
        try:
            if not self._done:
                self._check_polls(out, timeout_ms)
        finally:
            self._waiting = False
        self.stats_wait_ns += time.perf_counter_ns() - t0
        self.stats_waits += 1
        self._drain_eventfd()
        self._collect(out)
        return out

    def cancel(self, ud: int) -> None:
        """Cancel a pending TIMEOUT or POLL request: it completes with
        -ECANCELED.  Requests already handed to a worker run to the end."""
        for i, (_, timer_ud) in enumerate(self._timers):
            if timer_ud == ud:
                self._timers[i] = self._timers[-1]
                self._timers.pop()
                heapq.heapify(self._timers)
                self._done.append((ud, -125))
                return
        for i, (poll_ud, _, _) in enumerate(self._polls):
            if poll_ud == ud:
                del self._polls[i]
                self._done.append((ud, -125))
                return

    def wake(self) -> None:
        try:
            os.eventfd_write(self._efd, 1)
        except OSError:
            pass

    def completion_fd(self) -> int:
        self._notify = True
        return self._efd

    def ack_completion_fd(self) -> None:
        self._drain_eventfd()

    def set_submit_min(self, n: int) -> None:
        """Requests start when staged here; nothing to tune."""

    def next_deadline(self) -> float | None:
        return self._timers[0][0] / 1e9 if self._timers else None

    def _drain_eventfd(self) -> None:
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            pass

    def info(self) -> dict:
        return {"method": self.name, "capacity": self.capacity}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._efd)


class SyncBackend(PollingBackend):
    """Every request is carried out inline, at stage time, by a blocking
    system call on the executor thread.  Debugging and universal fallback."""

    name = "sync"

    def _start(self, ud, op, fd, obj, start, length, offset, flags) -> None:
        self._done.append((ud, perform(op, fd, obj, start, length, offset, flags)))


class ThreadsBackend(PollingBackend):
    """Worker threads carry out the blocking calls (pread, pwrite, fdatasync,
    ...); each posts its completion to a deque and, when the executor sleeps,
    wakes it through the eventfd.  Workers are started on demand, up to
    ``max_workers``, and stopped by ``close``."""

    name = "threads"

    def __init__(self, entries: int, max_workers: int | None = None):
        super().__init__(entries)
        import queue

        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._max_workers = max_workers or min(64, max(4, entries))

    def _start(self, ud, op, fd, obj, start, length, offset, flags) -> None:
        if len(self._workers) < self._max_workers:
            worker = threading.Thread(target=self._work, name="hedge-io-worker", daemon=True)
            self._workers.append(worker)
            worker.start()
        self._jobs.put((ud, op, fd, obj, start, length, offset, flags))

    def _work(self) -> None:
        jobs = self._jobs
        done = self._done
        while True:
            job = jobs.get()
            if job is None:
                return
            ud, op, fd, obj, start, length, offset, flags = job
            result = perform(op, fd, obj, start, length, offset, flags)
            # Drop the request's buffer before posting the completion: once
            # the executor has it, the request owns nothing any more.
            job = obj = None
            done.append((ud, result))
            if self._waiting or self._notify:
                self.wake()

    def info(self) -> dict:
        return {"method": self.name, "capacity": self.capacity, "workers": len(self._workers)}

    def close(self) -> None:
        if self._closed:
            return
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join(timeout=10)
        super().close()


# -- selection -------------------------------------------------------------

_uring_probe: tuple[bool, str] | None = None
_probe_lock = threading.Lock()
_logged_fallback = False


def uring_status() -> tuple[bool, str]:
    """(usable, reason): whether io_uring can be used in this process.
    Probes once by creating and destroying a small ring."""
    global _uring_probe
    with _probe_lock:
        if _uring_probe is None:
            _uring_probe = _probe_uring()
        return _uring_probe


def _probe_uring() -> tuple[bool, str]:
    try:
        from hedge.io import _uring  # noqa: F401
    except ImportError as e:
        return False, f"the liburing binding is not built ({e}); install liburing-dev and reinstall hedge"
    try:
        from hedge.io.uring import UringBackend

        UringBackend(4).close()
    except HedgeIOError as e:
        hint = ""
        try:
            with open("/proc/sys/kernel/io_uring_disabled") as f:
                if f.read().strip() != "0":
                    hint = " (sysctl kernel.io_uring_disabled is set)"
        except OSError:
            pass
        return False, f"the kernel refused to create a ring: {e}{hint}"
    return True, "io_uring is available"


def available_methods() -> list[str]:
    ok, _ = uring_status()
    return (["io_uring"] if ok else []) + ["threads", "sync"]


def resolve_method(requested: str) -> str:
    """Turn a configured method (or "auto") into the one to use, honouring
    HEDGE_IO_METHOD.  Raises ValueError for an unknown name and HedgeIOError
    when io_uring is asked for explicitly but cannot be used."""
    global _logged_fallback
    from hedge.options import io_method_from_env

    method = io_method_from_env(requested)
    if method == "auto":
        ok, reason = uring_status()
        if ok:
            return "io_uring"
        if not _logged_fallback:
            _logged_fallback = True
            log.warning("hedge: io_method=auto falls back to 'threads': %s", reason)
        return "threads"
    if method not in METHODS:
        raise ValueError(f"io_method must be one of {('auto',) + METHODS}, not {method!r}")
    if method == "io_uring":
        ok, reason = uring_status()
        if not ok:
            raise HedgeIOError(38, "io_uring_setup", None, reason)  # ENOSYS
    return method


def create_backend(method: str, entries: int, submit_min: int = SUBMIT_MIN):
    """REQUIRES: called on the thread that will own the backend.
    ``submit_min`` is the io_uring early-submission threshold (see
    UringBackend); the other methods start every request at once anyway."""
    method = resolve_method(method)
    if method == "io_uring":
        from hedge.io.uring import UringBackend

        return UringBackend(entries, submit_min)
    if method == "threads":
        return ThreadsBackend(entries)
    return SyncBackend(entries)
