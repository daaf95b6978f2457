"""The blocking API runs the engine on the caller's thread: no hop to the
foreground pool, one ring per calling thread (made on first use, released
when the thread ends or the database closes), 16 threads against a
per-thread model, writers from threads and coroutines sharing group commits,
close while threads are mid-call, and what a hedge task may not await."""
from __future__ import annotations

import asyncio
import os
import random
import threading

import pytest

import hedge
from hedge.errors import ClosedError, WrongThreadError
from tests.db.helpers import SMALL, WatchedLock, open_db

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def db(tmp_path, io_method):
    d = open_db(tmp_path / "db", io_method)
    yield d
    d.close()


def _pool_tasks(db) -> int:
    return sum(ex["tasks_spawned"] for ex in db.stats()["foreground"])


def _caller_named(db, name: str) -> dict:
    return next(ex for ex in db.stats()["callers"] if ex["name"] == name)


def test_every_blocking_operation_runs_on_the_calling_thread(db):
    for i in range(300):
        db.put(b"k%03d" % i, b"v" * 50)
    db.flush()                                   # table keys: gets read blocks
    before = _pool_tasks(db)
    batch = hedge.WriteBatch()
    batch.put(b"b1", b"x")
    batch.remove(b"k001")
    db.write(batch, sync=True)
    db.put(b"p", b"q")
    db.remove(b"k002")
    assert db.get(b"k003") == b"v" * 50
    assert db.multi_get([b"k004", b"k001", b"p"]) == [b"v" * 50, None, b"q"]
    assert [k for k, _ in db.scan(b"k005", b"k008")] == [b"k005", b"k006", b"k007"]
    assert _pool_tasks(db) == before             # nothing went through the foreground pool
    callers = db.stats()["callers"]
    assert len(callers) == 1
    assert callers[0]["io_requests"] > 0        # the WAL sync and the block reads used this thread's ring


def test_a_blocking_call_from_a_hedge_task_is_refused_and_changes_nothing(db):
    async def job():
        with pytest.raises(WrongThreadError, match="await the db.aio form"):
            db.put(b"k", b"v")
        return await db.aio.get(b"k")

    assert db.run(job()) is None
    assert db.get(b"k") is None


def test_sixteen_threads_against_a_model_each(tmp_path, io_method):
    db = open_db(tmp_path / "db", io_method, **SMALL)
    errors = []

    def client(t: int) -> None:
        rng = random.Random(t)
        model: dict[bytes, bytes] = {}
        prefix = b"t%02d-" % t
        try:
            for step in range(150):
                key = prefix + b"%03d" % rng.randrange(60)
                r = rng.random()
                if r < 0.45:
                    value = rng.randbytes(rng.randrange(0, 120))
                    db.put(key, value, sync=rng.random() < 0.05)
                    model[key] = value
                elif r < 0.6:
                    db.remove(key)
                    model.pop(key, None)
                elif r < 0.85:
                    assert db.get(key) == model.get(key), (t, step, key)
                elif r < 0.95:
                    keys = [prefix + b"%03d" % rng.randrange(60) for _ in range(5)]
                    assert db.multi_get(keys) == [model.get(k) for k in keys]
                else:
                    got = list(db.scan(prefix, prefix + b"\xff"))
                    assert got == sorted(model.items()), (t, step)
            assert list(db.scan(prefix, prefix + b"\xff")) == sorted(model.items())
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(16)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors[0]
        assert db.stats()["compaction"]["flushes"] > 0      # the threads ran into background work
    finally:
        db.close()


def test_a_thread_that_ends_releases_its_ring(db, io_method):
    db.put(b"k", b"v", sync=True)                # a WAL sync: this thread's executor exists
    fds_before = len(os.listdir("/proc/self/fd"))
    count = 1000 if io_method == "io_uring" else 200
    seen = []

    def one_call(i):
        db.put(b"k", b"v", sync=True)            # runs on this thread's executor (a get or a
        seen.append(db.get(b"k"))                # put without sync would not need one)

    for i in range(count):
        th = threading.Thread(target=one_call, args=(i,))
        th.start()
        th.join()
    assert seen == [b"v"] * count
    assert len(db.stats()["callers"]) == 1       # only this thread's
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_close_releases_every_threads_ring(tmp_path, io_method):
    db = open_db(tmp_path / "db", io_method)
    db.put(b"k", b"v", sync=True)                # a WAL sync: this thread's executor exists
    release = threading.Event()
    ready = threading.Barrier(5)

    def hold():
        db.put(b"k", b"v", sync=True)            # makes this thread's executor
        ready.wait()
        release.wait(30)

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for th in threads:
        th.start()
    ready.wait()
    assert len(db.stats()["callers"]) == 5        # this thread and the four
    db.close()
    release.set()
    for th in threads:
        th.join()
    assert len(db._callers) == 0


def test_close_while_threads_are_mid_call(tmp_path, io_method):
    db = open_db(tmp_path / "db", io_method, **SMALL)
    for i in range(200):
        db.put(b"k%03d" % i, b"v" * 40)
    outcomes: list = []
    started = threading.Barrier(9)

    def busy(t: int) -> None:
        rng = random.Random(t)
        started.wait()
        try:
            while True:
                key = b"k%03d" % rng.randrange(200)
                if t % 2:
                    db.put(key, b"w" * 40, sync=rng.random() < 0.2)
                else:
                    db.get(key)
                    list(db.scan(key, None))[:5]
        except ClosedError:
            outcomes.append("closed")
        except BaseException as e:  # noqa: BLE001 - anything else fails the test
            outcomes.append(e)

    threads = [threading.Thread(target=busy, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    started.wait()
    db.close()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads), "a caller hangs after close"
    assert outcomes == ["closed"] * 8
    with hedge.open(str(tmp_path / "db"), **{k: v for k, v in SMALL.items()}, io_method=io_method) as again:
        assert again.get(b"k000") is not None


def test_close_waits_for_a_group_commit_in_progress_then_returns(tmp_path, io_method, monkeypatch):
    """A put whose group commit is under way when close starts: close waits
    for it and returns once the group is done (the commit queue going idle
    wakes it); the put is kept."""
    from hedge.lsm import engine as engine_module
    db = open_db(tmp_path / "db", io_method)
    in_log, release, finishing = threading.Event(), threading.Event(), threading.Event()
    real_log, real_finish = engine_module.Engine._log, engine_module.Engine._finish_writes

    def held_log(self, payload):
        if not in_log.is_set():
            in_log.set()
            release.wait(60)
        real_log(self, payload)

    async def finish_writes(self):
        finishing.set()
        await real_finish(self)

    monkeypatch.setattr(engine_module.Engine, "_log", held_log)
    monkeypatch.setattr(engine_module.Engine, "_finish_writes", finish_writes)
    outcome: dict = {}

    def writer() -> None:
        try:
            db.put(b"k", b"v")
            outcome["put"] = None
        except BaseException as e:  # noqa: BLE001 - checked below
            outcome["put"] = e

    put_thread = threading.Thread(target=writer, daemon=True)
    put_thread.start()
    assert in_log.wait(60)
    closer = threading.Thread(target=db.close, daemon=True)
    closer.start()
    assert finishing.wait(60)                    # close waits for the group now
    release.set()
    put_thread.join(60)
    closer.join(60)
    assert not put_thread.is_alive() and not closer.is_alive(), "close hangs after the group commit ended"
    assert outcome["put"] is None
    with hedge.open(str(tmp_path / "db"), io_method=io_method) as again:
        assert again.get(b"k") == b"v"


def test_a_blocking_writer_waits_for_another_threads_write_in_place_instead_of_queueing(
        tmp_path, io_method, monkeypatch):
    """Two threads put at once, the first held inside its WAL append (where
    a real append gives up the GIL): the second waits for it on the
    blocking writers' lock, then commits in place too.  Neither goes
    through the commit queue (Engine.write), and both puts are kept."""
    from hedge.lsm import engine as engine_module
    db = open_db(tmp_path / "db", io_method)
    in_log, second_arrived = threading.Event(), threading.Event()
    queued: list[str] = []
    real_log, real_write = engine_module.Engine._log, engine_module.Engine.write

    def held_log(self, payload):
        if not in_log.is_set():
            in_log.set()
            assert second_arrived.wait(60)
        real_log(self, payload)

    def counted_write(self, batch, sync=False):
        queued.append(threading.current_thread().name)
        second_arrived.set()
        return real_write(self, batch, sync)

    monkeypatch.setattr(engine_module.Engine, "_log", held_log)
    monkeypatch.setattr(engine_module.Engine, "write", counted_write)
    monkeypatch.setattr(db, "_inline_writers", WatchedLock(second_arrived))
    errors: list[BaseException] = []

    def put(key: bytes) -> None:
        try:
            db.put(key, b"v" + key)
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)

    first = threading.Thread(target=put, args=(b"first",), name="first")
    second = threading.Thread(target=put, args=(b"second",), name="second")
    first.start()
    assert in_log.wait(60)
    second.start()
    first.join(60)
    second.join(60)
    assert not first.is_alive() and not second.is_alive()
    assert not errors, errors[0]
    assert queued == [], f"went through the commit queue: {queued}"
    assert db.get(b"first") == b"vfirst" and db.get(b"second") == b"vsecond"
    db.close()


def test_writers_from_threads_and_coroutines_share_synced_groups(tmp_path, io_method):
    db = open_db(tmp_path / "db", io_method)
    per_writer = 40
    errors = []

    def thread_writer(t):
        try:
            for i in range(per_writer):
                db.put(b"thread%d-%03d" % (t, i), b"x", sync=True)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    async def pool_writer(c):
        for i in range(per_writer):
            await db.aio.put(b"pool%d-%03d" % (c, i), b"y", sync=True)

    async def pool_writers():
        await hedge.gather(*(pool_writer(c) for c in range(4)))

    def asyncio_writers():
        async def one(c):
            for i in range(per_writer):
                await db.aio.put(b"loop%d-%03d" % (c, i), b"z", sync=True)

        async def main():
            await asyncio.gather(*(one(c) for c in range(4)))

        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    before = db.stats()["wal"]
    threads = [threading.Thread(target=thread_writer, args=(t,)) for t in range(4)]
    threads.append(threading.Thread(target=asyncio_writers))
    for th in threads:
        th.start()
    db.run(pool_writers())
    for th in threads:
        th.join()
    assert not errors, errors[0]
    after = db.stats()["wal"]
    writes = 12 * per_writer
    assert after["writers"] - before["writers"] == writes
    assert after["syncs"] - before["syncs"] < writes         # groups shared their fdatasync
    db.close()
    with hedge.open(str(tmp_path / "db"), io_method=io_method, pin=False) as again:
        keys = [k for k, _ in again.scan()]
    assert len(keys) == writes


def test_a_foreign_awaitable_is_a_type_error_and_the_executor_survives(db):
    async def awaits_asyncio_sleep():
        await asyncio.sleep(0)

    async def awaits_a_future():
        await asyncio.Future(loop=asyncio.new_event_loop())

    with pytest.raises(TypeError, match="bare yield"):
        db.run(awaits_asyncio_sleep())
    with pytest.raises(TypeError, match="Future"):
        db.run(awaits_a_future())
    db.put(b"k", b"v")

    async def still_works():
        await db.aio.put(b"k2", b"v2")
        return await db.aio.get(b"k")

    assert db.run(still_works()) == b"v"
    assert db.get(b"k2") == b"v2"


def test_a_foreign_awaitable_can_be_caught_in_the_task(db):
    async def catches():
        try:
            await asyncio.sleep(0)
        except TypeError as e:
            return str(e)

    assert "asyncio" in db.run(catches())


@pytest.mark.parametrize("bad", [42, None, "coro", lambda: None])
def test_run_takes_only_a_coroutine(db, bad):
    with pytest.raises(TypeError, match="coroutine object"):
        db.run(bad)
    db.put(b"k", b"v")
    assert db.get(b"k") == b"v"


def test_run_of_an_uncalled_async_function_says_how(db):
    async def job():
        return 1

    with pytest.raises(TypeError, match=r"db\.run\(job\(\)\)"):
        db.run(job)
    assert db.run(job()) == 1


def test_dict_face(db):
    db[b"a"] = b"1"
    db.put(b"b", b"")
    assert db[b"a"] == b"1" and db[b"b"] == b""
    with pytest.raises(KeyError):
        db[b"missing"]
    assert b"a" in db and b"b" in db and b"missing" not in db
    assert db.get(b"missing", b"default") == b"default"
    assert db.get(b"b", b"default") == b""              # an empty value is present
    del db[b"a"]
    del db[b"never-there"]                                # like rocksdict: no lookup, no error
    assert list(db) == [b"b"]


def test_write_batch_block_applies_on_exit_unless_an_exception_escaped(db):
    with db.write_batch(sync=True) as batch:
        batch.put(b"x", b"1")
        batch.put(b"y", b"2")
        assert db.get(b"x") is None                      # nothing before the block ends
    assert db.multi_get([b"x", b"y"]) == [b"1", b"2"]
    with pytest.raises(RuntimeError):
        with db.write_batch() as batch:
            batch.remove(b"x")
            batch.put(b"z", b"3")
            raise RuntimeError("abandon")
    assert db.multi_get([b"x", b"z"]) == [b"1", None]


def test_batches_append_and_clear():
    a, b = hedge.WriteBatch(), hedge.WriteBatch()
    a.put(b"k", b"1")
    b.put(b"k", b"2")
    b.remove(b"j")
    a.append(b)
    assert len(a) == 3 and len(b) == 2
    single = hedge.WriteBatch()
    for kind, key, value in [("put", b"k", b"1"), ("put", b"k", b"2"), ("remove", b"j", None)]:
        getattr(single, kind)(key, *(() if value is None else (value,)))
    assert a.encode(1) == single.encode(1)
    assert a.byte_size() == single.byte_size() == len(single.encode(1))
    with pytest.raises(TypeError):
        a.append([("put", b"x", b"y")])
    a.clear()
    assert len(a) == 0 and a.byte_size() == hedge.WriteBatch().byte_size()


def test_a_database_dropped_without_close_releases_its_lock(tmp_path, io_method):
    path = tmp_path / "db"
    db = open_db(path, io_method)
    db.put(b"k", b"v")
    with pytest.warns(ResourceWarning, match="was not closed"):
        del db
    with open_db(path, io_method) as again:              # no LockError: the lock went with it
        assert again.get(b"k") == b"v"


def test_a_snapshot_sees_no_later_write_even_after_compaction(tmp_path, io_method):
    db = open_db(tmp_path / "db", io_method, **SMALL)
    try:
        for i in range(100):
            db.put(b"k%03d" % i, b"old%03d" % i)
        snap = db.snapshot()
        for i in range(100):
            if i % 3 == 0:
                db.remove(b"k%03d" % i)
            else:
                db.put(b"k%03d" % i, b"new%03d" % i)
        db.put(b"later", b"x")
        db.compact()                                  # compactions keep what the snapshot sees
        expected = [(b"k%03d" % i, b"old%03d" % i) for i in range(100)]
        assert list(snap.scan()) == expected
        assert snap.get(b"k003") == b"old003" and snap.get(b"later") is None
        assert snap.get(b"later", b"absent") == b"absent"
        assert snap.multi_get([b"k001", b"k099", b"later"]) == [b"old001", b"old099", None]
        assert db.get(b"k003") is None and db.get(b"k004") == b"new004"

        async def from_asyncio():
            got = [item async for item in snap.aio.scan(b"k010", b"k013")]
            return got, await snap.aio.get(b"k000"), await snap.aio.multi_get([b"k002"])

        assert asyncio.run(from_asyncio()) == ([(b"k010", b"old010"), (b"k011", b"old011"),
                                               (b"k012", b"old012")], b"old000", [b"old002"])

        async def from_a_hedge_task():
            return await snap.aio.get(b"k005")

        assert db.run(from_a_hedge_task()) == b"old005"
        with snap:
            pass                                          # the context manager releases it
        with pytest.raises(ClosedError):
            snap.get(b"k001")
        db.compact()
        with db.snapshot() as fresh:
            assert fresh.get(b"k003") is None and fresh.get(b"k004") == b"new004"
    finally:
        db.close()


def test_scan_bounds_prefix_and_shapes(db):
    for k in [b"a", b"ab", b"abc", b"abd", b"ac", b"b", b"\xff", b"\xff\xff"]:
        db.put(k, b"v-" + k)
    keys = lambda it: [k for k, _ in it]  # noqa: E731
    assert keys(db.scan(b"ab", b"ac")) == [b"ab", b"abc", b"abd"]
    assert keys(db.scan(b"ab", b"ac", include_start=False)) == [b"abc", b"abd"]
    assert keys(db.scan(b"ab", b"ac", include_end=True)) == [b"ab", b"abc", b"abd", b"ac"]
    assert keys(db.scan(prefix=b"ab")) == [b"ab", b"abc", b"abd"]
    assert keys(db.scan(b"abc", prefix=b"ab")) == [b"abc", b"abd"]
    assert keys(db.scan(prefix=b"\xff")) == [b"\xff", b"\xff\xff"]
    assert list(db.scan(prefix=b"a", include_value=False)) == [b"a", b"ab", b"abc", b"abd", b"ac"]
    assert list(db.scan(b"b", include_key=False)) == [b"v-b", b"v-\xff", b"v-\xff\xff"]
    with pytest.raises(ValueError):
        db.scan(include_key=False, include_value=False)
    with db.snapshot() as snap:
        db.put(b"abb", b"later")
        assert list(snap.scan(prefix=b"ab", include_value=False)) == [b"ab", b"abc", b"abd"]

    async def from_asyncio():
        return [k async for k in db.aio.scan(prefix=b"ab", include_value=False)]

    assert asyncio.run(from_asyncio()) == [b"ab", b"abb", b"abc", b"abd"]

    async def from_a_hedge_task():
        return [v async for v in db.aio.scan(b"ac", b"b", include_end=True, include_key=False)]

    assert db.run(from_a_hedge_task()) == [b"v-ac", b"v-b"]


def test_a_scan_stops_at_close_and_at_the_databases_close(tmp_path, io_method):
    db = open_db(tmp_path / "db", io_method)
    for i in range(600):
        db.put(b"k%03d" % i, b"v")
    it = db.scan()
    assert next(it) == (b"k000", b"v")
    it.close()
    assert list(it) == []                          # nothing buffered comes out after close()
    with db.scan() as it2:
        assert next(it2)[0] == b"k000"
    it3 = db.scan()
    next(it3)
    db.close()
    with pytest.raises(ClosedError):
        next(it3)                                  # not the pairs it had buffered
