"""The executor loop: scheduling order, joins, exceptions, cancellation,
ring capacity, ownership of in-flight buffers, shutdown."""
from __future__ import annotations

import gc
import os
import threading
import time
from time import perf_counter_ns
import traceback
import weakref

import pytest

from hedge.errors import Cancelled, ClosedError, WrongThreadError
from hedge.exec import Executor, checkpoint, current_executor, gather, spawn
from hedge.exec.executor import TURN_NS
from hedge.io.backend import SUBMIT_MIN
from hedge.io import ops
from hedge.io.buffer import Buffer
from hedge.io.file import File
from hedge.io.traps import reschedule


def test_ready_tasks_run_in_spawn_order_and_yield_round_robin(executor):
    events = []

    async def worker(name):
        events.append(f"{name}1")
        await reschedule()
        events.append(f"{name}2")
        await reschedule()
        events.append(f"{name}3")

    async def main():
        tasks = [spawn(worker(n)) for n in "ABC"]
        events.append("main")
        for t in tasks:
            await t

    executor.run_sync(main())
    assert events == ["main", "A1", "B1", "C1", "A2", "B2", "C2", "A3", "B3", "C3"]


def test_checkpoint_yields_only_when_another_task_is_ready(executor):
    events = []

    async def alone():
        before = executor.task_steps
        await checkpoint()          # nothing else ready: no extra step
        events.append(("alone", executor.task_steps - before))

    async def worker(name):
        for i in range(2):
            events.append(f"{name}{i}")
            await checkpoint()

    async def main():
        await alone()
        tasks = [spawn(worker(n)) for n in "AB"]
        for t in tasks:
            await t

    executor.run_sync(main())
    assert events == [("alone", 0), "A0", "B0", "A1", "B1"]


def test_turn_over_once_the_step_held_the_executor_for_turn_ns_while_others_wait(executor):
    """turn_over measures the running task's step from the start of its
    first operation that completed in place: False while that is under
    TURN_NS ago (here: in the future) or nobody else is ready, True once
    it is TURN_NS ago and another task is ready; a new step (the task gave
    the executor up) starts a new measure."""
    answers = {}
    spinning = True
    future = perf_counter_ns() + 10**15         # a turn that began "later": never over
    past = perf_counter_ns() - 2 * TURN_NS       # a turn that began long enough ago

    async def spinner():
        while spinning:
            await reschedule()

    async def main():
        nonlocal spinning
        answers["alone"] = [executor.turn_over(past), executor.turn_over(past)]
        task = spawn(spinner())                  # ready from now on
        await reschedule()                       # a new step
        answers["young turn"] = [executor.turn_over(future), executor.turn_over(past)]
        await reschedule()
        answers["old turn"] = [executor.turn_over(past), executor.turn_over(future)]
        spinning = False
        await task

    executor.run_sync(main())
    assert answers["alone"] == [False, False]
    # The turn began with the step's first operation: a later, older-looking
    # operation does not make it older.
    assert answers["young turn"] == [False, False]
    assert answers["old turn"] == [True, True]


def test_checkpoint_off_an_executor_does_nothing():
    coro = checkpoint()
    with pytest.raises(StopIteration):
        coro.send(None)


def test_io_completions_resume_tasks_after_ready_ones(executor):
    """A task that awaits I/O yields to every task that is ready."""
    events = []

    async def io_task():
        events.append("io-start")
        await ops.nop()
        events.append("io-done")

    async def cpu_task():
        events.append("cpu-1")
        await reschedule()
        events.append("cpu-2")

    async def main():
        a = spawn(io_task())
        b = spawn(cpu_task())
        await a
        await b

    executor.run_sync(main())
    assert events.index("io-start") < events.index("cpu-1")
    assert events.index("cpu-1") < events.index("io-done")
    assert events[0] == "io-start"


def test_join_returns_result(executor):
    async def child(x):
        await ops.nop()
        return x * 2

    async def main():
        return await gather(*(child(i) for i in range(10)))

    assert executor.run_sync(main()) == [i * 2 for i in range(10)]


def test_exception_reaches_joiner_with_traceback(executor):
    async def failing_child():
        await ops.nop()
        raise KeyError("boom")

    async def main():
        t = spawn(failing_child())
        await t

    with pytest.raises(KeyError) as info:
        executor.run_sync(main())
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "failing_child" in frames


def test_gather_runs_all_and_raises_first_failure(executor):
    finished = []

    async def ok(i):
        await ops.sleep(0.01)
        finished.append(i)

    async def bad():
        raise ValueError("bad")

    async def main():
        await gather(ok(1), bad(), ok(2))

    with pytest.raises(ValueError):
        executor.run_sync(main())
    assert sorted(finished) == [1, 2]


def test_cancel_interrupts_sleep_promptly(executor):
    async def sleeper(log):
        try:
            await ops.sleep(30)
        except Cancelled:
            log.append("cancelled")
            raise

    async def main():
        log = []
        t = spawn(sleeper(log))
        await ops.nop()
        t0 = time.monotonic()
        t.cancel()
        with pytest.raises(Cancelled):
            await t
        return log, t.cancelled(), time.monotonic() - t0

    log, cancelled, elapsed = executor.run_sync(main())
    assert log == ["cancelled"]
    assert cancelled
    assert elapsed < 5
    assert executor.stats()["in_flight"] == 0 or executor.stats()["in_flight"] == 1


def test_cancelled_task_may_clean_up_with_io(executor):
    async def worker(log):
        try:
            await ops.sleep(30)
        except Cancelled:
            await ops.nop()  # cleanup still allowed to do I/O
            log.append("cleaned")
            raise

    async def main():
        log = []
        t = spawn(worker(log))
        await ops.nop()
        t.cancel()
        try:
            await t
        except Cancelled:
            pass
        return log

    assert executor.run_sync(main()) == ["cleaned"]


def test_cancelled_waiters_buffer_lives_until_its_completion(executor, data_file):
    """The executor, not the (cancelled) task, owns an in-flight request's
    buffer and file until the completion arrives.  The reader stages its read
    and the canceller, next in the same loop round (before any completion
    can be reaped), cancels it and closes the file."""
    path, data = data_file
    observed = {}

    async def reader(f, refs):
        buf = Buffer(4096)
        refs.append(weakref.ref(buf))
        await ops.read(f, buf, 0)

    async def canceller(f, t, refs):
        t.cancel()
        f.close()                   # deferred: the read is still in flight
        try:
            await t
        except Cancelled as e:
            observed["cancelled"] = True
            e.__traceback__ = None  # the traceback's frames would keep the buffer
        gc.collect()
        observed["in_flight_after_cancel"] = current_executor().stats()["in_flight"]
        observed["alive_after_cancel"] = refs[0]() is not None
        observed["fd_open_after_close"] = f.fd >= 0
        for _ in range(2000):       # until the read's completion is reaped
            if current_executor().stats()["in_flight"] == 0:
                break
            await ops.sleep(0.001)
        gc.collect()
        observed["alive_after_completion"] = refs[0]() is not None
        observed["fd_after_completion"] = f.fd

    async def main():
        f = File.open(path)
        refs = []
        t = spawn(reader(f, refs))
        await spawn(canceller(f, t, refs))

    executor.run_sync(main())
    assert observed == {"cancelled": True, "in_flight_after_cancel": 1, "alive_after_cancel": True,
                        "fd_open_after_close": True, "alive_after_completion": False,
                        "fd_after_completion": -1}


def test_more_requests_than_the_ring_holds_all_complete(io_method, data_file):
    path, data = data_file
    with Executor(io_method=io_method, ring_entries=4) as ex:
        capacity = ex.run_sync(_capacity())

        async def one(f, i):
            buf = bytearray(512)
            await ops.read_exact(f, buf, i * 512)
            return bytes(buf) == data[i * 512:(i + 1) * 512]

        async def main():
            with File.open(path) as f:
                return await gather(*(one(f, i) for i in range(capacity * 20)))

        results = ex.run_sync(main())
        stats = ex.stats()
    assert len(results) == capacity * 20 and all(results)
    assert stats["max_in_flight"] <= capacity
    assert stats["blocked_on_capacity"] > 0


async def _capacity():
    return current_executor()._backend.capacity


@pytest.mark.parametrize("submit_min", [0, 2, SUBMIT_MIN])
def test_submissions_are_batched_when_tasks_overlap(io_method, data_file, submit_min):
    """64 concurrent reads go to the kernel in batches; one task reading one
    block after another submits one request per call.  With submit_min=0
    the whole ready queue goes in one submit; with early submission
    (io_uring, submit_min > 0) batches are smaller but still about
    submit_min requests per call."""
    path, _ = data_file

    async def concurrent():
        with File.open(path) as f:
            async def one(i):
                await ops.read(f, bytearray(4096), (i % 256) * 4096)
            for _ in range(10):
                await gather(*(one(i) for i in range(64)))

    async def sequential():
        with File.open(path) as f:
            buf = bytearray(4096)
            for i in range(200):
                await ops.read(f, buf, (i % 256) * 4096)

    with Executor(io_method=io_method, submit_min=submit_min) as ex:
        ex.run_sync(concurrent())
        batched = ex.stats()
    with Executor(io_method=io_method, submit_min=submit_min) as ex:
        ex.run_sync(sequential())
        serial = ex.stats()
    if submit_min == 0 or io_method != "io_uring":
        assert batched["mean_batch"] > 16
    else:
        # Each early submit carries submit_min requests; only the last
        # submit of a loop turn may carry fewer.
        assert batched["mean_batch"] > 0.75 * submit_min
    assert batched["max_in_flight"] == 64
    assert serial["mean_batch"] == pytest.approx(1.0, abs=0.05)
    assert serial["max_in_flight"] == 1


def test_run_sync_on_own_thread_is_refused(executor):
    async def inner():
        return 1

    async def main():
        coro = inner()
        try:
            current_executor().run_sync(coro)
        except WrongThreadError as e:
            return str(e)

    assert "own thread" in executor.run_sync(main())


def test_close_cancels_tasks_and_waits_for_io(io_method):
    ex = Executor(io_method=io_method).start()
    log = []
    started = []
    all_started = threading.Event()

    async def sleeper():
        started.append(1)
        if len(started) == 5:
            all_started.set()
        try:
            await ops.sleep(60)
        except Cancelled:
            log.append("cancelled")
            raise

    handles = [ex.submit(sleeper()) for _ in range(5)]
    assert all_started.wait(10)
    t0 = time.monotonic()
    ex.close()
    assert time.monotonic() - t0 < 5
    assert log == ["cancelled"] * 5
    for h in handles:
        with pytest.raises(Cancelled):
            h.wait(timeout=1)
    with pytest.raises(ClosedError):
        ex.submit(sleeper())


def test_run_sync_from_many_threads(executor):
    async def work(i):
        await ops.nop()
        return i

    results = {}

    def client(i):
        results[i] = [executor.run_sync(work(i * 100 + j)) for j in range(50)]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [i * 100 + j for j in range(50)] for i in range(8)}


def test_executor_open_close_leaks_no_threads_or_fds(io_method):
    def fds():
        return len(os.listdir("/proc/self/fd"))

    async def touch():
        await ops.nop()

    # Warm up once so lazily created process-wide objects are not counted.
    with Executor(io_method=io_method) as ex:
        ex.run_sync(touch())
    fd_before, threads_before = fds(), threading.active_count()
    for _ in range(50):
        with Executor(io_method=io_method) as ex:
            ex.run_sync(touch())
    assert fds() == fd_before
    assert threading.active_count() == threads_before


def _uring_or_skip() -> None:
    from hedge.io.backend import uring_status
    ok, reason = uring_status()
    if not ok:
        pytest.skip(f"io_uring unavailable on this machine: {reason}")


def test_a_wait_counts_only_requests_that_complete_on_their_own():
    """The ring waits for a quarter of its reads and writes in flight, never
    for sleeps or polls, which may not complete for a long time."""
    _uring_or_skip()
    seen = {}
    r, w = os.pipe()

    async def main():
        backend = current_executor()._backend
        sleepers = [spawn(ops.sleep(60)) for _ in range(12)]
        await reschedule()
        seen["12 sleepers"] = backend.wait_target()
        with File(r, "pipe") as f:
            reads = [spawn(ops.read(f, bytearray(1), 0)) for _ in range(32)]
            await reschedule()
            seen["and 32 reads"] = backend.wait_target()
            os.close(w)                 # end of file: every read completes
            for t in reads:
                await t
        seen["after the reads"] = backend.wait_target()
        for t in sleepers:
            t.cancel()

    with Executor(io_method="io_uring") as ex:
        ex.run_sync(main())
    assert seen == {"12 sleepers": 1, "and 32 reads": 8, "after the reads": 1}


@pytest.mark.timeout(60)
def test_a_batched_wait_still_returns_when_reads_depend_on_a_ready_task():
    """32 reads on a pipe, fed one byte at a time by a task on the same ring:
    a wait for a batch of completions cannot be met until that task runs,
    so the wait's bound must hand control back.  Hangs without it."""
    _uring_or_skip()
    r, w = os.pipe()
    try:
        async def reader(f):
            buf = bytearray(1)
            return await ops.read(f, buf, 0)

        async def feeder(n):
            for _ in range(n):
                os.write(w, b"x")
                await ops.nop()

        async def main():
            with File(r, "pipe") as f:
                readers = [spawn(reader(f)) for _ in range(32)]
                await reschedule()
                await feeder(32)
                return [await t for t in readers]

        with Executor(io_method="io_uring") as ex:
            assert ex.run_sync(main()) == [1] * 32
    finally:
        os.close(w)
