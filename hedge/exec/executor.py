"""Executor: one thread, one ring, a ready queue and an in-flight table.

The loop step (``_step``): run every ready task until it awaits; an I/O trap
stages a request on the backend (which submits without waiting when its SQ
fills); when no task is ready, one ``enter(wait=True)`` submits the staged
batch, sleeps until a completion or a wake-up, and reaps every available
completion; the owners of the completions become ready again.

Who drives the step: an ``Executor`` runs it forever on a thread of its own
(the pools); a ``CallerExecutor`` (hedge/exec/caller.py) runs it on the
thread that calls the blocking API, until that call's coroutine is done, or
from an asyncio event loop's callbacks.  The scheduling core below is the
same for all of them.

A task may await only hedge's traps (hedge/io/traps.py).  Anything else it
yields (an asyncio future, ``asyncio.sleep``) is thrown back into it as a
TypeError naming the object; the executor goes on.

Invariants:
  - Everything but ``wake``/``Task.wake``, ``submit``, ``run_sync`` and
    ``close`` runs on the owning thread.
  - At most ``backend.capacity`` requests are in flight; a task whose
    request finds no room waits (state BLOCKED) until a completion frees one.
  - An in-flight request keeps its file and buffer (``_inflight[ud]``) until
    its completion arrives, even if its task was cancelled or finished.
  - Other threads hand work over through ``_inbox`` (a deque; appends are
    atomic) and wake a sleeping loop through the backend's eventfd, which
    the ring polls.
  - After os.fork() the child must not use an executor created before it:
    every entry point checks the fork generation and raises ForkError.
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
from time import perf_counter_ns

from hedge.errors import Cancelled, ClosedError, ForkError, WrongThreadError
from hedge.exec import forkguard
from hedge.exec.task import State, SyncHandle, Task
from hedge.io.backend import SUBMIT_MIN, create_backend
from hedge.io.opcodes import OPEN_ENDED
from hedge.io.traps import TRAP_IO, TRAP_SUSPEND, TRAP_YIELD

log = logging.getLogger("hedge")

_local = threading.local()
_ids = itertools.count(1)

READY, RUNNING, IO, SUSPENDED, BLOCKED, DONE = (
    State.READY, State.RUNNING, State.IO, State.SUSPENDED, State.BLOCKED, State.DONE)

# How long a task may go on with operations that complete in place while
# other tasks are ready, before turn_over has it yield to them.
TURN_NS = 50_000

# Inbox message kinds.
_MSG_SPAWN = 0      # (kind, coro, handle, name)
_MSG_RESUME = 1     # (kind, task, value, exc)
_MSG_CANCEL = 2     # (kind, task)
_MSG_STOP = 3       # (kind,)


def current_executor() -> "Executor":
    """The executor running the calling code.  Raises RuntimeError when the
    caller is not on an executor thread."""
    ex = getattr(_local, "executor", None)
    if ex is None:
        raise RuntimeError("not running on a hedge executor thread")
    return ex


def current_executor_or_none() -> "Executor | None":
    """The executor running the calling code, or None."""
    return getattr(_local, "executor", None)


def set_current_executor(executor: "Executor | None") -> "Executor | None":
    """Make ``executor`` the calling thread's current one; return the one
    it replaces (drivers that run an executor for a while restore it)."""
    previous = getattr(_local, "executor", None)
    _local.executor = executor
    return previous


def foreign_awaitable_message(obj) -> str:
    """What a task is told when it awaits something hedge cannot run."""
    what = "a bare yield (asyncio.sleep(0)?)" if obj is None else f"{type(obj).__qualname__} {obj!r:.80}"
    return (f"a hedge task awaited {what}: hedge's executors run only hedge awaitables "
            "(db.aio.*, hedge.io.ops, hedge.gather/spawn); run asyncio code in asyncio and call "
            "db.aio from there instead")


class Executor:
    """A thread running coroutines over one I/O backend (ring).

    ``Executor(io_method="auto", ring_entries=256, name=None, cpus=None,
    submit_min=SUBMIT_MIN)``;
    ``start()`` launches the thread (it pins itself to ``cpus`` first when
    given, then creates its ring); ``close()`` stops it.
    """

    def __init__(self, io_method: str = "auto", ring_entries: int = 256, name: str | None = None,
                 cpus: frozenset[int] | None = None, on_start=None, submit_min: int = SUBMIT_MIN):
        self.id = next(_ids)
        self.name = name or f"hedge-exec-{self.id}"
        self.io_method = io_method
        self.ring_entries = ring_entries
        self.submit_min = submit_min
        self.cpus = cpus
        self._on_start = on_start
        self._generation = forkguard.generation()
        self._backend = None
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._ready: collections.deque = collections.deque()
        self._yielded: list = []
        self._inflight: dict[int, tuple] = {}
        self._blocked: collections.deque = collections.deque()
        self._inbox: collections.deque = collections.deque()
        self._sleeping = False
        self._tasks: set[Task] = set()
        self._next_ud = 1
        self._state_lock = threading.Lock()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._closing = False
        self._closed = False
        self.pinned_cpus: frozenset[int] | None = None
        # Counters (executor thread only).
        self.tasks_spawned = 0
        # Steps run so far, counted as each starts: a task that reads it twice
        # sees it change exactly when it gave the executor up in between.
        self.task_steps = 0
        # When the running task's first operation of the step numbered
        # _turn_step began (turn_over).
        self._turn_step = 0
        self._turn_started = 0
        self.io_requests = 0
        self.io_errors = 0
        self.max_in_flight = 0
        self.blocked_on_capacity = 0

    # -- lifecycle (any thread) ----------------------------------------------
    def start(self) -> "Executor":
        self._check_fork()
        with self._state_lock:
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._thread_main, name=self.name, daemon=True)
            self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self

    def close(self, timeout: float | None = 30.0) -> None:
        """Cancel the tasks still running, wait for every in-flight request to
        complete, close the ring and join the thread.  Idempotent.  Must not
        be called from the executor's own thread."""
        if forkguard.generation() != self._generation:
            self._closed = True  # the thread and ring belong to the parent
            return
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        if threading.get_ident() == self._thread_id:
            raise WrongThreadError("an executor cannot close itself from its own thread")
        self._post((_MSG_STOP,))
        thread.join(timeout)
        if thread.is_alive():
            log.error("hedge: executor %s did not stop within %ss", self.name, timeout)

    def __enter__(self) -> "Executor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- cross-thread entry points (any thread) ------------------------------
    def submit(self, coro, name: str | None = None) -> SyncHandle:
        """Schedule ``coro`` on this executor from any thread; returns a
        handle whose ``wait()`` blocks for the result."""
        self._check_fork()
        if self._closed or self._closing:
            coro.close()
            raise ClosedError(f"executor {self.name} is closed")
        handle = SyncHandle()
        self._post((_MSG_SPAWN, coro, handle, name))
        return handle

    def run_sync(self, coro):
        """Run ``coro`` on this executor and block the calling thread for its
        result; its exception is raised here with its traceback.  REQUIRES:
        not called from this executor's thread (that would deadlock: await
        the coroutine instead)."""
        if threading.get_ident() == self._thread_id:
            coro.close()
            raise WrongThreadError("run_sync() called on the executor's own thread; await the coroutine instead")
        return self.submit(coro).wait()

    def _post(self, msg) -> None:
        self._inbox.append(msg)
        if self._sleeping:
            backend = self._backend
            if backend is not None:
                backend.wake()

    def wake(self, task: Task, value=None, exc: BaseException | None = None) -> None:
        """Any thread: resume ``task`` (parked by TRAP_SUSPEND on this
        executor) with ``value`` or ``exc``.  Task.wake is the way to call it."""
        if threading.get_ident() == self._thread_id:
            self.resume(task, value, exc)
        else:
            self._post((_MSG_RESUME, task, value, exc))

    def _cancel_threadsafe(self, task: Task) -> None:
        if threading.get_ident() == self._thread_id:
            self._cancel(task)
        else:
            self._post((_MSG_CANCEL, task))

    def turn_over(self, started_ns: int) -> bool:
        """Note that the running task completed an operation it began at
        ``started_ns`` (``time.perf_counter_ns()``) without giving the
        executor up; True when the task has now held it for TURN_NS or
        more since the first such operation of this step began, and other
        tasks are ready: it should yield to them now (the database's
        coroutine operations do).  Yielding after every such operation cost
        a task step each, about 1.5 µs of a 5-15 µs get (docs/design.md,
        "Writes: group commit").  REQUIRES: on this executor's thread, in a
        task."""
        step = self.task_steps
        if step != self._turn_step:
            self._turn_step = step
            self._turn_started = started_ns
        return perf_counter_ns() - self._turn_started >= TURN_NS and bool(self._ready or self._yielded)

    def others_ready(self) -> bool:
        """Whether a task other than the running one waits for its turn.
        REQUIRES: on this executor's thread."""
        return bool(self._ready) or bool(self._yielded)

    def _check_fork(self) -> None:
        if forkguard.generation() != self._generation:
            raise ForkError(f"executor {self.name} was created before os.fork(); "
                            "the child process must create its own")

    # -- executor-thread API -------------------------------------------------
    def spawn(self, coro, name: str | None = None) -> Task:
        """REQUIRES: on this executor's thread.  Schedule ``coro`` as a new
        task and return it; await the task to join it."""
        if threading.get_ident() != self._thread_id:
            raise WrongThreadError("spawn() must be called on the executor's thread; use submit()")
        if self._closing:
            coro.close()
            raise ClosedError(f"executor {self.name} is closing")
        task = Task(coro, self, name)
        self._tasks.add(task)
        self.tasks_spawned += 1
        self._ready.append((task, None, None))
        return task

    def resume(self, task: Task, value=None, exc: BaseException | None = None) -> None:
        """REQUIRES: on this executor's thread (else use ``wake``).  Make a SUSPENDED task ready
        with ``value`` (or ``exc`` thrown into it).  A task that is no longer
        suspended (cancelled meanwhile) is left alone."""
        if task._state == SUSPENDED:
            task._state = READY
            self._ready.append((task, value, exc))

    def _cancel(self, task: Task) -> None:
        state = task._state
        if state == DONE:
            return
        if state in (IO, SUSPENDED):
            if state == IO:
                entry = self._inflight.get(task._wait_ud)
                if entry is not None and entry[3] in OPEN_ENDED:
                    self._backend.cancel(task._wait_ud)
            task._state = READY
            task._wait_ud = 0
            self._ready.append((task, None, Cancelled()))
        elif state == BLOCKED:
            for i, (t, _trap) in enumerate(self._blocked):
                if t is task:
                    del self._blocked[i]
                    break
            task._state = READY
            self._ready.append((task, None, Cancelled()))
        else:
            # READY or RUNNING: Cancelled is thrown at its next step.
            task._cancel_requested = True

    # -- the loop ------------------------------------------------------------
    def _attach(self) -> None:
        """On the thread that will own this executor: record it and create
        the backend (ring) there, as single-issuer rings require."""
        self._thread_id = threading.get_ident()
        self._backend = create_backend(self.io_method, self.ring_entries, self.submit_min)

    def _thread_main(self) -> None:
        _local.executor = self
        try:
            if self.cpus is not None:
                from hedge.exec.topology import pin_current_thread

                self.pinned_cpus = pin_current_thread(self.cpus)
            self._attach()
            if self._on_start is not None:
                self._on_start(self)
        except BaseException as e:  # noqa: BLE001 - reported to start()
            self._start_error = e
            self._started.set()
            return
        self._started.set()
        try:
            self._loop()
        finally:
            try:
                self._backend.close()
            finally:
                _local.executor = None

    def _loop(self) -> None:
        step = self._step
        while not (self._closing and not self._tasks and not self._inflight and not self._inbox):
            step()

    def _step(self, until: Task | None = None) -> None:
        """One turn of the loop: run the ready tasks, take the inbox, then
        submit what is staged and reap completions, sleeping in the kernel
        when nothing is ready.  Never sleeps when closing with nothing left
        that could complete, nor once task ``until`` is done and nothing is
        in flight (a caller's thread then has its answer)."""
        ready = self._ready
        if ready:
            self._run_ready()
        inbox = self._inbox
        if inbox:
            self._drain_inbox()
            if ready:
                return
        if until is not None and until._state == DONE and not self._inflight:
            return
        if self._yielded:
            ready.extend(self._yielded)
            self._yielded.clear()
            wait = False
        else:
            wait = not ready
        if wait:
            if self._closing and not self._tasks and not self._inflight:
                return
            self._sleeping = True
            if inbox:
                self._sleeping = False
                return
        try:
            completions = self._backend.enter(wait)
        finally:
            self._sleeping = False
        if completions:
            self._complete(completions)

    def _complete(self, completions) -> None:
        inflight = self._inflight
        ready = self._ready
        for ud, res in completions:
            entry = inflight.pop(ud, None)
            if entry is None:
                continue
            task, file, _obj, _op = entry
            if file is not None:
                file._release()
            if res < 0 and res != -62:  # -ETIME is how a timeout ends
                self.io_errors += 1
            if task._wait_ud == ud and task._state == IO:
                task._state = READY
                task._wait_ud = 0
                ready.append((task, res, None))
        blocked = self._blocked
        while blocked and len(inflight) < self._backend.capacity:
            task, trap = blocked.popleft()
            self._stage(task, trap)

    def _stage(self, task: Task, trap) -> None:
        inflight = self._inflight
        if len(inflight) >= self._backend.capacity:
            task._state = BLOCKED
            self.blocked_on_capacity += 1
            self._blocked.append((task, trap))
            return
        _, op, file, fd, obj, start, length, offset, flags = trap
        ud = self._next_ud
        self._next_ud = ud + 1
        inflight[ud] = (task, file, obj, op)
        if file is not None:
            file._inflight += 1
        task._state = IO
        task._wait_ud = ud
        try:
            self._backend.stage(ud, op, fd, obj, start, length, offset, flags)
        except BaseException as e:  # noqa: BLE001 - the request was not staged
            del inflight[ud]
            if file is not None:
                file._release()
            task._state = READY
            task._wait_ud = 0
            self._ready.append((task, None, e))
            return
        self.io_requests += 1
        n = len(inflight)
        if n > self.max_in_flight:
            self.max_in_flight = n

    def _run_ready(self, limit: int = -1) -> None:
        """Run ready tasks until none is left (or ``limit`` steps ran)."""
        ready = self._ready
        popleft = ready.popleft
        dispatch = self._dispatch
        steps = 0
        while ready and steps != limit:
            task, value, exc = popleft()
            if task._state == DONE:
                continue
            if task._cancel_requested:
                task._cancel_requested = False
                if exc is None:
                    exc = Cancelled()
            task._state = RUNNING
            steps += 1
            self.task_steps += 1
            try:
                if exc is None:
                    trap = task._coro.send(value)
                else:
                    trap = task._coro.throw(exc)
            except StopIteration as e:
                self._finish(task, e.value, None)
                continue
            except BaseException as e:  # noqa: BLE001 - the task's outcome
                self._finish(task, None, e)
                continue
            dispatch(task, trap)

    def _dispatch(self, task: Task, trap) -> None:
        """Act on what RUNNING ``task`` yielded: stage its request, park it,
        or requeue it.  A foreign object is thrown back as a TypeError."""
        if type(trap) is tuple and trap:
            tag = trap[0]
            if tag == TRAP_IO:
                self._stage(task, trap)
                return
            if tag == TRAP_SUSPEND:
                task._state = SUSPENDED
                try:
                    trap[1](task)
                except BaseException as e:  # noqa: BLE001
                    task._state = READY
                    self._ready.append((task, None, e))
                return
            if tag == TRAP_YIELD:
                task._state = READY
                self._yielded.append((task, None, None))
                return
        task._state = READY
        self._ready.append((task, None, TypeError(foreign_awaitable_message(trap))))

    def _finish(self, task: Task, result, exc: BaseException | None) -> None:
        task._state = DONE
        task._result = result
        task._exc = exc
        task._coro = None
        self._tasks.discard(task)
        waiters = task._waiters
        if waiters:
            task._waiters = None
            for waiter in waiters:
                waiter.wake()
        handle = task._handle
        if handle is not None:
            task._handle = None
            handle.set(result, exc)
        elif exc is not None and waiters is None and not isinstance(exc, Cancelled):
            log.error("hedge: task %s failed and nobody joined it", task.name, exc_info=exc)

    def _drain_inbox(self) -> None:
        inbox = self._inbox
        while inbox:
            msg = inbox.popleft()
            kind = msg[0]
            if kind == _MSG_SPAWN:
                _, coro, handle, name = msg
                if self._closing:
                    coro.close()
                    handle.set(None, ClosedError(f"executor {self.name} is closed"))
                    continue
                task = Task(coro, self, name)
                task._handle = handle
                handle.task = task
                self._tasks.add(task)
                self.tasks_spawned += 1
                self._ready.append((task, None, None))
            elif kind == _MSG_RESUME:
                self.resume(msg[1], msg[2], msg[3])
            elif kind == _MSG_CANCEL:
                self._cancel(msg[1])
            elif kind == _MSG_STOP:
                self._closing = True
                for task in list(self._tasks):
                    self._cancel(task)

    # -- statistics ----------------------------------------------------------
    def stats(self) -> dict:
        """Counters in the spirit of pg_stat_aio.  Values are read without a
        lock; they are monotonic and approximate while the executor runs."""
        backend = self._backend
        counters = backend.counters() if backend is not None else {}
        submitted = counters.get("sqes_submitted", 0)
        calls = counters.get("submit_calls", 0)
        return {
            "name": self.name,
            "io_method": backend.name if backend is not None else None,
            "cpus": sorted(self.pinned_cpus) if self.pinned_cpus is not None else None,
            "tasks_spawned": self.tasks_spawned,
            "task_steps": self.task_steps,
            "io_requests": self.io_requests,
            "io_errors": self.io_errors,
            "sqes_submitted": submitted,
            "submit_calls": calls,
            "mean_batch": (submitted / calls) if calls else 0.0,
            "max_batch": counters.get("max_batch", 0),
            "max_in_flight": self.max_in_flight,
            "in_flight": len(self._inflight),
            "blocked_on_capacity": self.blocked_on_capacity,
            "waits": counters.get("waits", 0),
            "wait_seconds": counters.get("wait_ns", 0) / 1e9,
            "enter_calls": counters.get("enter_calls", 0),
        }

    def __repr__(self) -> str:
        return f"<Executor {self.name} {'closed' if self._closed else 'open'}>"
