"""Task: a coroutine scheduled on one executor.

A task stays on the executor that spawned it for its whole life (rings are
single-issuer).  Its state changes only on that executor's thread.  Awaiting
a task (from any executor) joins it: the joiner gets its result or its
exception, with the original traceback.
"""
from __future__ import annotations

import threading

from hedge.errors import Cancelled
from hedge.io.traps import suspend


class State:
    """Task states.  A task is in exactly one of them."""

    READY = 0       # in the executor's ready queue
    RUNNING = 1     # its coroutine is executing right now
    IO = 2          # waiting for the completion of request ``_wait_ud``
    SUSPENDED = 3   # parked by TRAP_SUSPEND until resumed
    BLOCKED = 4     # its request waits for room in the ring
    DONE = 5


class Task:
    __slots__ = ("_coro", "_executor", "name", "_state", "_wait_ud", "_result", "_exc",
                 "_waiters", "_handle", "_cancel_requested", "__weakref__")

    def __init__(self, coro, executor, name: str | None = None):
        self._coro = coro
        self._executor = executor
        self.name = name or getattr(coro, "__qualname__", "task")
        self._state = State.READY
        self._wait_ud = 0
        self._result = None
        self._exc: BaseException | None = None
        self._waiters: list | None = None
        self._handle: "SyncHandle | None" = None
        self._cancel_requested = False

    # -- inspection ----------------------------------------------------------
    def done(self) -> bool:
        return self._state == State.DONE

    def cancelled(self) -> bool:
        return self._state == State.DONE and isinstance(self._exc, Cancelled)

    def result(self):
        """REQUIRES: done().  Return the result or raise the task's exception."""
        if self._state != State.DONE:
            raise RuntimeError(f"task {self.name} is not done")
        if self._exc is not None:
            raise self._exc
        return self._result

    def exception(self) -> BaseException | None:
        if self._state != State.DONE:
            raise RuntimeError(f"task {self.name} is not done")
        return self._exc

    # -- control -------------------------------------------------------------
    def cancel(self) -> bool:
        """Ask the task to stop: Cancelled is raised inside it at its current
        (or next) await.  A request it was waiting for stays owned by the
        executor until its completion arrives.  Returns False when the task
        is already done.  Any thread may call it."""
        if self._state == State.DONE:
            return False
        self._executor._cancel_threadsafe(self)
        return True

    def wake(self, value=None, exc: BaseException | None = None) -> None:
        """Any thread: resume this task, parked by TRAP_SUSPEND (see
        hedge/io/traps.py), with ``value`` or with ``exc`` thrown into it.
        A task no longer parked (cancelled meanwhile) is left alone."""
        self._executor.wake(self, value, exc)

    def __await__(self):
        """Join: wait for the task and return its result (or raise)."""
        if self._state != State.DONE:
            yield from suspend(self._add_waiter)
        return self.result()

    def _add_waiter(self, waiter: "Task") -> None:
        if self._state == State.DONE:
            # Finished between the check and the trap (another thread).
            waiter.wake()
            return
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)

    def __repr__(self) -> str:
        return f"<Task {self.name} state={self._state}>"


class SyncHandle:
    """Result slot for a coroutine submitted from another thread.

    ``wait()`` blocks the calling thread (not an executor thread) until the
    task finishes; the lock is the cheapest cross-thread hand-off CPython
    has.  ``set`` is called once, by the executor thread.
    """

    __slots__ = ("_lock", "_result", "_exc", "task", "done")

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()
        self._result = None
        self._exc: BaseException | None = None
        self.task: Task | None = None
        self.done = False

    def set(self, result, exc: BaseException | None) -> None:
        self._result = result
        self._exc = exc
        self.done = True
        self._lock.release()

    def wait(self, timeout: float | None = None):
        """Block until the result is there; return it or raise the task's
        exception (its traceback includes the frames on the executor)."""
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("the submitted coroutine did not finish in time")
        self._lock.release()
        if self._exc is not None:
            exc = self._exc
            raise exc
        return self._result
