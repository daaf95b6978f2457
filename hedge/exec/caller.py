"""Caller executors: the engine's coroutines run on the thread that calls.

A thread that calls the blocking API (``db.get`` ...) runs the engine
coroutine itself, on a ``CallerExecutor`` of its own: a ring (or another
backend) created on that thread at its first call, not pinned, driven only
while a call is in progress.  ``run(coro)`` first steps the coroutine in
place; one that finishes without awaiting I/O (a memtable hit, a cached
block) never becomes a task, and one that awaits one request at a time (a
block read, a WAL sync) is driven in place too: stage, submit-and-wait, send
the result.  Only a coroutine that parks (a commit follower) or starts
tasks of its own (multi_get) becomes a task, and the thread then runs the
executor loop (hedge/exec/executor.py) until that task is done and nothing
it started is still in flight.  Between calls the ring is quiet.

The same executor serves an asyncio event loop running on its thread
(``start_in_loop``): the loop is told about completions through a file
descriptor the backend makes readable (for io_uring an eventfd registered
with the ring, for the others their completion eventfd), and runs the
executor's steps from its callbacks (``_drive``), never blocking in the
kernel.  Requests staged by many asyncio tasks in one loop iteration go to
the kernel in one submission.  A blocking call made on the loop's thread
drives the same executor synchronously, so a commit leader started from an
asyncio task still progresses while that call waits for it.

``CallerExecutors`` keeps one executor per thread for one owner (a
database): created on first use, released when its thread ends (the
thread-local holder is dropped on that thread) or when the owner closes
them all (``close``), which waits for calls in progress to end.

Threads: ``run``, ``start_in_loop`` and ``_drive`` on the owning thread
only; ``wake`` (through ``Task.wake``) and ``close`` from any thread.
"""
from __future__ import annotations

import logging
import threading

from hedge.errors import ClosedError, ForkError, WrongThreadError
from hedge.exec import forkguard
from hedge.exec.executor import DONE, RUNNING, Executor, current_executor_or_none, set_current_executor
from hedge.exec.task import Task
from hedge.io.backend import SUBMIT_MIN
from hedge.io.traps import TRAP_IO

log = logging.getLogger("hedge")

# Task steps one loop callback runs before it lets the loop's other callbacks
# run, and coroutines started in place per loop iteration (beyond them a
# coroutine starts as a ready task): bounds the loop lag a burst of calls or
# completions can cause.
LOOP_STEP_LIMIT = 64


class CallerExecutor(Executor):
    """An executor owned by the thread that creates it and driven by it."""

    def __init__(self, io_method: str = "auto", ring_entries: int = 256, name: str | None = None,
                 submit_min: int = SUBMIT_MIN):
        super().__init__(io_method=io_method, ring_entries=ring_entries, name=name, submit_min=submit_min)
        self._attach()
        self._active = False          # a run() is in progress (read by close from other threads)
        self._idle_event: threading.Event | None = None
        self._loop = None             # the asyncio loop attached to this executor, if any
        self._loop_fd = -1
        self._drive_pending = False
        self._timer = None
        self._start_budget = LOOP_STEP_LIMIT

    # -- the blocking API -------------------------------------------------------
    def run(self, coro):
        """Run ``coro`` to its end on the calling thread and return its
        result (or raise its exception).  REQUIRES: the owning thread, not
        from inside a task of any executor."""
        if self._thread_id != threading.get_ident():
            coro.close()
            raise WrongThreadError(f"{self.name} belongs to another thread")
        self._active = True
        if self._closed:
            self._end_run()
            coro.close()
            raise ClosedError("the database is closed")
        if forkguard.generation() != self._generation:
            self._end_run()
            coro.close()
            raise ForkError("this thread's executor was created before os.fork()")
        previous = set_current_executor(self)
        try:
            try:
                trap = coro.send(None)
                # While this call is all the executor has to do and it waits
                # for one request at a time, drive it without a task.
                while (type(trap) is tuple and trap[0] == TRAP_IO and not self._ready and not self._tasks
                       and not self._inflight and not self._inbox):
                    result, error = self._request_inline(trap)
                    trap = coro.send(result) if error is None else coro.throw(error)
            except StopIteration as e:
                return e.value
            task = Task(coro, self, None)
            self._tasks.add(task)
            self.tasks_spawned += 1
            task._state = RUNNING
            self._dispatch(task, trap)
            step = self._step
            try:
                while task._state != DONE or self._inflight:
                    step(task)
            except BaseException:
                # Interrupted (KeyboardInterrupt in the wait): cancel the call
                # and let what it started finish, so the ring is quiet again.
                task.cancel()
                while task._state != DONE or self._inflight:
                    step(task)
                raise
            return task.result()
        finally:
            set_current_executor(previous)
            self._end_run()

    def _request_inline(self, trap) -> tuple:
        """Stage the request of ``trap`` and wait for its completion; return
        (result, None), or (None, exception) when it could not be staged.
        REQUIRES: nothing else in flight.  An interrupt while waiting waits
        on for the completion (the kernel may still use the buffer), then
        is returned as the exception."""
        _, op, file, fd, obj, start, length, offset, flags = trap
        ud = self._next_ud
        self._next_ud = ud + 1
        backend = self._backend
        try:
            backend.stage(ud, op, fd, obj, start, length, offset, flags)
        except BaseException as e:  # noqa: BLE001 - thrown into the coroutine
            return None, e
        if file is not None:
            file._inflight += 1
        self.io_requests += 1
        interrupted = None
        try:
            while True:
                try:
                    for done_ud, result in backend.enter(True):
                        if done_ud == ud:
                            return result, interrupted
                except BaseException as e:  # noqa: BLE001 - see the docstring
                    interrupted = e
        finally:
            if file is not None:
                file._release()

    def _end_run(self) -> None:
        self._active = False
        event = self._idle_event
        if event is not None:
            event.set()

    # -- asyncio ----------------------------------------------------------------
    def attach_loop(self, loop) -> None:
        """REQUIRES: the owning thread, ``loop`` running on it.  From now on
        completions and wake-ups reach this executor through ``loop``."""
        if self._loop is loop:
            return
        self.detach_loop()
        fd = self._backend.completion_fd()
        loop.add_reader(fd, self._on_completion_fd)
        self._loop = loop
        self._loop_fd = fd
        # Requests staged by many tasks in one loop iteration are submitted
        # together at its end (_drive), not piecemeal.
        self._backend.set_submit_min(0)

    def detach_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not loop.is_closed():
            loop.remove_reader(self._loop_fd)
        self._loop_fd = -1
        self._backend.set_submit_min(self.submit_min)

    def start_in_loop(self, coro):
        """Start ``coro`` for an asyncio task on this thread's attached loop
        and return an awaitable of its result: a finished one when the
        coroutine completes without waiting, else an asyncio future.
        Cancelling the future cancels the hedge task; a request it has in
        flight keeps its buffer until its completion arrives."""
        if self._closed:
            coro.close()
            raise ClosedError("the database is closed")
        trap = None
        if self.take_in_place():
            previous = set_current_executor(self)
            try:
                trap = coro.send(None)
            except StopIteration as e:
                return e.value, None
            finally:
                set_current_executor(previous)
        loop = self._loop
        future = loop.create_future()
        task = Task(coro, self, None)
        task._handle = _FutureHandle(future)
        self._tasks.add(task)
        self.tasks_spawned += 1
        if trap is None:
            self._ready.append((task, None, None))
        else:
            task._state = RUNNING
            self._dispatch(task, trap)
        future.add_done_callback(lambda f: self._on_future_done(f, task))
        self._schedule_drive()
        return None, future

    def take_in_place(self) -> bool:
        """Whether the loop iteration's budget of calls answered in place
        has one left, taking it: a coroutine ``start_in_loop`` runs to its
        first wait, or an asyncio task's call answered without a coroutine
        on this executor (``db.aio.get`` of a cached key).  When it has
        none, the call starts as a task, so the asyncio task gives the
        loop its turn.  REQUIRES: the owning thread, a loop attached."""
        if self._start_budget > 0 and not self._closed:
            self._start_budget -= 1
            return True
        return False

    def _on_future_done(self, future, task: Task) -> None:
        if future.cancelled() and not task.done():
            task.cancel()
            self._schedule_drive()

    def _schedule_drive(self) -> None:
        if not self._drive_pending and self._loop is not None:
            self._drive_pending = True
            self._loop.call_soon(self._drive)

    def _post(self, msg) -> None:
        self._inbox.append(msg)
        if self._sleeping:
            self._backend.wake()
        elif self._loop is not None and not self._drive_pending:
            self._drive_pending = True
            try:
                self._loop.call_soon_threadsafe(self._drive)
            except RuntimeError:  # the loop is closed; the next run or close drains the inbox
                self._drive_pending = False

    def _on_completion_fd(self) -> None:
        self._backend.ack_completion_fd()
        self._drive()

    def _drive(self) -> None:
        """A loop callback: run ready tasks, take the inbox, submit what is
        staged and reap completions without sleeping; give the loop back
        after LOOP_STEP_LIMIT task steps."""
        self._drive_pending = False
        self._start_budget = LOOP_STEP_LIMIT
        if self._active or self._closed_backend:
            return      # a blocking run on this thread drives the executor now
        previous = set_current_executor(self)
        try:
            ready = self._ready
            if ready:
                self._run_ready(LOOP_STEP_LIMIT)
            if self._inbox:
                self._drain_inbox()
            if self._yielded:
                ready.extend(self._yielded)
                self._yielded.clear()
            completions = self._backend.enter(False)
            if completions:
                self._complete(completions)
            if ready or self._inbox:
                self._schedule_drive()
        finally:
            set_current_executor(previous)
        self._arm_timer()
        if self._idle_event is not None and not self._tasks and not self._inflight:
            self._idle_event.set()

    def _arm_timer(self) -> None:
        """Backends without a kernel timer (threads, sync) keep timeouts in
        a heap: ask the loop to call back at the first deadline."""
        deadline = self._backend.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._drive)

    # -- closing ------------------------------------------------------------------
    _closed_backend = False

    def close(self, timeout: float | None = 30.0) -> None:
        """Release the ring once no call is in progress.  Any thread;
        idempotent.  From another thread, an executor attached to an asyncio
        loop is closed by that loop (a callback), waiting up to ``timeout``."""
        if forkguard.generation() != self._generation:
            self._closed = True     # the ring belongs to the parent process
            return
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        if threading.get_ident() == self._thread_id:
            self._close_here()
            return
        event = self._idle_event = threading.Event()
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._close_here)
            except RuntimeError:    # its loop is closed: nobody drives it any more
                if not self._active:
                    self._close_backend()
                return
            if not event.wait(timeout):
                log.error("hedge: %s: its asyncio loop did not let it close within %ss", self.name, timeout)
            return
        if self._active and not event.wait(timeout):
            log.error("hedge: %s: a call still runs on its thread after %ss; its ring stays open",
                      self.name, timeout)
            return
        self._close_backend()

    def _close_here(self) -> None:
        """On the owning thread: cancel what is left, wait for in-flight
        requests, release the backend."""
        previous = set_current_executor(self)
        try:
            self.detach_loop()
            for task in list(self._tasks):
                task.cancel()
            while self._ready or self._tasks or self._inflight or self._inbox:
                self._closing = True
                self._step()
        finally:
            set_current_executor(previous)
        self._close_backend()
        if self._idle_event is not None:
            self._idle_event.set()

    def _close_backend(self) -> None:
        if not self._closed_backend:
            self._closed_backend = True
            self._backend.close()


class _FutureHandle:
    """The result slot of a task started for an asyncio caller: resolves
    its future on the loop's thread (the executor's own)."""

    __slots__ = ("_future", "task")

    def __init__(self, future):
        self._future = future
        self.task = None

    def set(self, result, exc: BaseException | None) -> None:
        future = self._future
        if future.cancelled():
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)


class _Holder:
    """Thread-local owner of one thread's executor: dropped on that thread
    when it ends, which releases the ring."""

    __slots__ = ("executor", "owners")

    def __init__(self, executor: CallerExecutor, owners: "CallerExecutors"):
        self.executor = executor
        self.owners = owners

    def __del__(self):
        self.owners._forget(self.executor)
        try:
            self.executor.close()
        except Exception:  # noqa: BLE001 - thread teardown
            pass


class CallerExecutors:
    """One CallerExecutor per thread for one owner (a database)."""

    def __init__(self, io_method: str = "auto", ring_entries: int = 256, submit_min: int = SUBMIT_MIN,
                 name: str = "hedge-caller"):
        self.io_method = io_method
        self.ring_entries = ring_entries
        self.submit_min = submit_min
        self.name = name
        self._local = threading.local()
        self._lock = threading.Lock()
        self._live: set[CallerExecutor] = set()
        self._closed = False
        self.created = 0

    def current(self) -> CallerExecutor:
        """The calling thread's executor, made on first use.  Raises
        ClosedError once ``close`` ran, WrongThreadError on a thread that
        runs a hedge task right now (it must await, not block)."""
        try:
            executor = self._local.holder.executor
        except AttributeError:
            executor = self._create()
        if current_executor_or_none() is not None:
            raise WrongThreadError("a blocking hedge call from code running on a hedge executor would "
                                   "block that executor; await the db.aio form instead")
        return executor

    def _create(self) -> CallerExecutor:
        with self._lock:
            if self._closed:
                raise ClosedError("the database is closed")
            self.created += 1
            name = f"{self.name}-{self.created}"
        executor = CallerExecutor(self.io_method, self.ring_entries, name, self.submit_min)
        with self._lock:
            closed = self._closed
            if not closed:
                self._live.add(executor)
        if closed:
            executor.close()
            raise ClosedError("the database is closed")
        self._local.holder = _Holder(executor, self)
        return executor

    def _forget(self, executor: CallerExecutor) -> None:
        with self._lock:
            self._live.discard(executor)

    def stats(self) -> list[dict]:
        with self._lock:
            live = list(self._live)
        return [ex.stats() for ex in live]

    def __len__(self) -> int:
        return len(self._live)

    def close(self, timeout: float | None = 30.0) -> None:
        """Close every thread's executor, waiting for calls in progress.
        Idempotent; any thread."""
        with self._lock:
            self._closed = True
            live, self._live = list(self._live), set()
        for executor in live:
            executor.close(timeout)
