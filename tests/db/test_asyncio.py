"""db.aio from asyncio tasks: every operation on memtable and table keys,
scans, batching of concurrent reads into few submissions, cancellation,
a blocking call on the loop's thread while asyncio writers are mid-commit,
close while tasks are mid-call, and the loop thread's ring released."""
from __future__ import annotations

import asyncio
import gc
import os
import threading
import weakref

import pytest

import hedge
from hedge.errors import ClosedError
from hedge.exec.caller import LOOP_STEP_LIMIT, CallerExecutor
from hedge.io import ops
from hedge.io.buffer import Buffer
from hedge.io.file import File
from tests.db.helpers import SMALL, open_db

pytestmark = pytest.mark.timeout(180)


def _loaded(tmp_path, io_method, n=2000, **options):
    db = open_db(tmp_path / "db", io_method, **options)
    batch = hedge.WriteBatch()
    for i in range(n):
        batch.put(b"k%05d" % i, b"v%05d" % i)
    db.write(batch)
    db.flush()
    return db


def test_every_operation_from_asyncio_tasks(tmp_path, io_method):
    db = _loaded(tmp_path, io_method, block_cache_bytes=0, inline_reads=False)  # table keys read blocks through the ring

    async def main():
        assert await db.aio.get(b"k00007") == b"v00007"        # in a table
        await db.aio.put(b"m", b"1")
        assert await db.aio.get(b"m") == b"1"                  # in the memtable
        await db.aio.remove(b"k00008", sync=True)
        batch = hedge.WriteBatch()
        batch.put(b"n", b"2")
        batch.remove(b"m")
        await db.aio.write(batch, sync=True)
        assert await db.aio.multi_get([b"k00008", b"m", b"n", b"k01999"]) == [None, None, b"2", b"v01999"]
        got = [k async for k, _ in db.aio.scan(b"k00005", b"k00010")]
        assert got == [b"k00005", b"k00006", b"k00007", b"k00009"]
        task = asyncio.create_task(db.aio.get(b"k00100"))       # a real coroutine: create_task takes it
        assert await task == b"v00100"
        await db.aio.flush()
        assert await db.aio.get(b"n") == b"2"
        with pytest.raises(TypeError):
            await db.aio.get("not bytes")
        return True

    try:
        assert asyncio.run(main())
        assert db.get(b"n") == b"2" and db.get(b"k00008") is None
    finally:
        db.close()


def test_concurrent_gets_share_submissions(tmp_path, io_method):
    db = _loaded(tmp_path, io_method, n=5000, block_cache_bytes=0, inline_reads=False)  # ring reads

    async def main():
        await db.aio.get(b"k00000")
        ex = db._callers.current()
        before = ex.stats()
        keys = [b"k%05d" % i for i in range(0, 5000, 5)]
        values = await asyncio.gather(*(db.aio.get(k) for k in keys))
        after = ex.stats()
        assert values == [b"v" + k[1:] for k in keys]
        return after["sqes_submitted"] - before["sqes_submitted"], after["submit_calls"] - before["submit_calls"]

    try:
        sqes, calls = asyncio.run(main())
    finally:
        db.close()
    assert sqes >= 1000                                       # every get read its block
    if io_method == "io_uring":
        assert sqes / calls >= 8, (sqes, calls)


def test_scan_from_asyncio_sees_its_snapshot(tmp_path, io_method):
    db = _loaded(tmp_path, io_method, n=500, **SMALL)

    async def main():
        it = db.aio.scan(b"k00100", b"k00200")
        first = await it.__anext__()
        await db.aio.put(b"k00150", b"changed")
        await db.aio.remove(b"k00160")
        rest = [item async for item in it]
        return [first] + rest

    try:
        got = asyncio.run(main())
        assert got == [(b"k%05d" % i, b"v%05d" % i) for i in range(100, 200)]
        assert db.get(b"k00150") == b"changed"
    finally:
        db.close()


def test_cancelling_an_asyncio_get_mid_read(tmp_path, io_method):
    db = _loaded(tmp_path, io_method, block_cache_bytes=0, inline_reads=False)  # ring reads

    async def main():
        task = asyncio.create_task(db.aio.get(b"k01234"))
        await asyncio.sleep(0)               # started: its block read is staged or in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await db.aio.get(b"k01235")

    try:
        assert asyncio.run(main()) == b"v01235"
        assert db.get(b"k01234") == b"v01234"
    finally:
        db.close()


def test_a_cancelled_request_keeps_its_buffer_until_completion(tmp_path, io_method):
    """The executor owns an in-flight request's buffer after its asyncio
    waiter is cancelled, until the completion is reaped."""
    path = tmp_path / "data"
    path.write_bytes(os.urandom(1 << 16))

    async def main():
        ex = CallerExecutor(io_method)
        ex.attach_loop(asyncio.get_running_loop())
        f = File.open(str(path))
        buf = Buffer(1 << 16)
        ref = weakref.ref(buf)
        value, future = ex.start_in_loop(ops.read(f, buf, 0))
        assert future is not None
        del buf
        future.cancel()
        gc.collect()
        alive_while_in_flight = ref() is not None and len(ex._inflight) == 1
        while ex._inflight or ex._tasks:
            await asyncio.sleep(0)           # the loop drives the executor until the completion is reaped
        gc.collect()
        dead_after = ref() is None
        f.close()
        ex.close()
        return alive_while_in_flight, dead_after

    assert asyncio.run(main()) == (True, True)


def test_calls_answered_in_place_still_give_the_loop_its_turns(tmp_path, io_method):
    """Gets of memtable keys and unsynced puts complete without waiting,
    answered in the asyncio task's own coroutine; one in every
    LOOP_STEP_LIMIT + 1 still starts as a task, so a task issuing nothing
    else lets the loop run its other tasks that often."""
    db = open_db(tmp_path / "db", io_method)
    calls = 2000

    async def main():
        turns = 0
        stop = False

        async def ticker():
            nonlocal turns
            while not stop:
                turns += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = turns
        for i in range(calls):
            await db.aio.put(b"k%05d" % i, b"v%05d" % i)
        during_puts = turns - before
        before = turns
        for i in range(calls):
            assert await db.aio.get(b"k%05d" % i) == b"v%05d" % i
        during_gets = turns - before
        stop = True
        await ticking
        return during_puts, during_gets

    try:
        during_puts, during_gets = asyncio.run(main())
        at_least = calls // (LOOP_STEP_LIMIT + 1) // 2
        assert during_puts >= at_least and during_gets >= at_least, (during_puts, during_gets)
        assert db.get(b"k01999") == b"v01999"
    finally:
        db.close()


def test_unsynced_asyncio_writes_through_memtable_switches_and_removes(tmp_path, io_method):
    """Unsynced puts and removes from asyncio tasks into small memtables:
    those that find a switch due go through the commit queue, the others
    commit in place; every write is there afterwards, and a bad key is a
    TypeError when awaited, which changes nothing."""
    db = open_db(tmp_path / "db", io_method, **SMALL)

    async def writer(c):
        for i in range(200):
            await db.aio.put(b"w%d-%03d" % (c, i), b"x" * 100)
            if i % 2:
                await db.aio.remove(b"w%d-%03d" % (c, i - 1))

    async def main():
        await asyncio.gather(*(writer(c) for c in range(4)))
        bad = db.aio.put("not bytes", b"x")
        with pytest.raises(TypeError):
            await bad

    try:
        first_wal = db.stats()["wal"]["number"]
        asyncio.run(main())
        keys = [k for k, _ in db.scan()]
        assert keys == sorted(b"w%d-%03d" % (c, i) for c in range(4) for i in range(1, 200, 2))
        assert db.stats()["wal"]["number"] > first_wal          # memtables switched under the writers
    finally:
        db.close()


def test_a_blocking_call_on_the_loop_thread_while_asyncio_writers_commit(tmp_path, io_method):
    db = open_db(tmp_path / "db", io_method)

    async def writer(c):
        for i in range(30):
            await db.aio.put(b"a%d-%02d" % (c, i), b"x", sync=True)

    async def main():
        tasks = [asyncio.create_task(writer(c)) for c in range(4)]
        await asyncio.sleep(0)
        for i in range(30):
            db.put(b"blocking-%02d" % i, b"y", sync=True)     # may follow a leader started by a task
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    try:
        asyncio.run(main())
        assert len(list(db.scan())) == 150
    finally:
        db.close()


def test_close_from_another_thread_while_asyncio_tasks_are_mid_call(tmp_path, io_method):
    db = _loaded(tmp_path, io_method, n=500, block_cache_bytes=0)
    outcomes = []
    running = threading.Event()

    async def busy(c):
        i = 0
        try:
            while True:
                i += 1
                if c % 2:
                    await db.aio.put(b"k%05d" % (i % 500), b"w", sync=(i % 7 == 0))
                else:
                    await db.aio.get(b"k%05d" % (i % 500))
                if i == 20:
                    running.set()
        except ClosedError:
            outcomes.append("closed")
        except BaseException as e:  # noqa: BLE001
            outcomes.append(e)

    def loop_thread():
        async def main():
            await asyncio.gather(*(busy(c) for c in range(6)))

        asyncio.run(main())

    th = threading.Thread(target=loop_thread)
    th.start()
    assert running.wait(60)
    db.close()
    th.join(60)
    assert not th.is_alive(), "asyncio tasks hang after close"
    assert outcomes == ["closed"] * 6


def test_close_from_the_loop_thread_with_tasks_in_flight(tmp_path, io_method):
    db = _loaded(tmp_path, io_method, n=500, block_cache_bytes=0)

    async def main():
        tasks = [asyncio.create_task(db.aio.get(b"k%05d" % i)) for i in range(200)]
        await asyncio.sleep(0)
        db.close()                                      # a blocking close inside the loop
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return results

    results = asyncio.run(main())
    assert all(r == b"v%05d" % i or isinstance(r, (ClosedError, asyncio.CancelledError, hedge.Cancelled))
               for i, r in enumerate(results)), [r for r in results if not isinstance(r, bytes)][:3]
    assert db.closed
