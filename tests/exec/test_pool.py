"""Pools: pinning on the real machine, cross-thread hand-off and wake-up,
spreading work, fork safety, shutdown without leaks."""
from __future__ import annotations

import os
import threading

import pytest

from hedge.errors import ClosedError, ForkError
from hedge.exec import current_executor
from hedge.exec.pool import Pool, Pools
from hedge.exec.topology import plan_layout, read_topology
from hedge.io import ops


async def _affinity():
    return frozenset(os.sched_getaffinity(0))


async def _whoami():
    await ops.nop()
    return current_executor().name


def test_each_pool_thread_runs_on_the_cpus_it_was_given(io_method):
    main_affinity = os.sched_getaffinity(0)
    with Pools(io_method=io_method, pin=True) as pools:
        layout = pools.layout
        for pool, sets in ((pools.foreground, layout.foreground), (pools.background, layout.background)):
            for ex, cpus in zip(pool.executors, sets):
                got = ex.run_sync(_affinity())
                if layout.pinned:
                    assert got == cpus
                    assert ex.stats()["cpus"] == sorted(cpus)
                else:
                    assert got == frozenset(main_affinity)
    assert os.sched_getaffinity(0) == main_affinity


def test_explicit_cpu_sets_are_applied():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs at least 2 CPUs to give the pools different sets")
    fg, bg = frozenset(cpus[:1]), frozenset(cpus[1:2])
    with Pools(io_method="sync", foreground_cpus=fg, background_cpus=bg,
               foreground_threads=2, background_threads=1) as pools:
        assert [ex.run_sync(_affinity()) for ex in pools.foreground.executors] == [fg, fg]
        assert [ex.run_sync(_affinity()) for ex in pools.background.executors] == [bg]
        assert "foreground 2 threads" in pools.stats()["layout"]


def test_synthetic_hybrid_layout_builds_pools_on_p_and_e_cores():
    here = os.path.dirname(__file__)
    layout = plan_layout(read_topology(xml_path=os.path.join(here, "data", "hybrid_4p4e.xml")))
    pools = Pools(layout=layout, io_method="sync")   # not started: CPUs 0-11 may not exist here
    assert [ex.cpus for ex in pools.foreground.executors] == list(layout.foreground)
    assert [ex.cpus for ex in pools.background.executors] == list(layout.background)
    assert all(ex.cpus <= frozenset(range(8)) for ex in pools.foreground.executors)
    assert all(ex.cpus <= frozenset(range(8, 12)) for ex in pools.background.executors)


def test_sleeping_ring_wakes_for_work_from_another_thread(io_method):
    with Pool("t", [None], io_method=io_method) as pool:
        ex = pool.executors[0]
        asleep = threading.Event()

        async def watch_the_wait():
            backend = ex._backend
            enter = backend.enter

            def enter_and_tell(wait, *args):
                if wait:
                    asleep.set()
                return enter(wait, *args)

            backend.enter = enter_and_tell

        pool.run_sync(watch_the_wait())
        assert asleep.wait(10)                    # the executor is going to sleep in its wait
        handle = pool.submit(_whoami())
        assert handle.wait(timeout=5) == ex.name  # would time out without the eventfd wake-up


def test_work_is_spread_over_the_pool(io_method):
    async def hold(seconds):
        await ops.sleep(seconds)
        return current_executor().name

    with Pool("t", [None, None, None], io_method=io_method) as pool:
        handles = [pool.submit(hold(0.2)) for _ in range(30)]
        names = [h.wait(timeout=10) for h in handles]
    counts = {name: names.count(name) for name in set(names)}
    assert len(counts) == 3
    assert max(counts.values()) - min(counts.values()) <= 2


def test_exception_crosses_threads_with_traceback():
    async def inner_failure():
        await ops.nop()
        raise LookupError("from the executor")

    with Pool("t", [None], io_method="sync") as pool:
        with pytest.raises(LookupError) as info:
            pool.run_sync(inner_failure())
    import traceback

    assert "inner_failure" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]


def test_closed_pool_raises_closed_error():
    pool = Pool("t", [None], io_method="sync").start()
    pool.close()
    coro = ops.nop()
    with pytest.raises(ClosedError):
        pool.run_sync(coro)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pool_used_in_forked_child_raises_fork_error_and_parent_is_unaffected(io_method):
    with Pool("t", [None], io_method=io_method) as pool:
        pool.run_sync(ops.nop())
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(r)
            code = b"no-error"
            try:
                pool.run_sync(ops.nop())
            except ForkError:
                code = b"fork-error"
            except BaseException as e:  # noqa: BLE001
                code = type(e).__name__.encode()
            try:
                pool.close()       # closing in the child must not touch the parent's threads
            except BaseException:  # noqa: BLE001
                code += b"+close-failed"
            os.write(w, code)
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            child_said = f.read()
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        assert child_said == b"fork-error"
        assert pool.run_sync(_whoami()) == pool.executors[0].name


def test_hundred_open_close_cycles_leak_no_threads_or_fds(io_method):
    def fds():
        return len(os.listdir("/proc/self/fd"))

    with Pools(io_method=io_method) as pools:
        pools.foreground.run_sync(ops.nop())
    fd_before, threads_before = fds(), threading.active_count()
    for _ in range(100):
        with Pools(io_method=io_method) as pools:
            pools.foreground.run_sync(ops.nop())
            pools.background.run_sync(ops.nop())
    assert fds() == fd_before
    assert threading.active_count() == threads_before
