"""The public API on the happy path: point operations, batches, bytes-like
input, the size limits, the coroutine forms, stats(), the context manager,
and group commit of concurrent sync writers."""
from __future__ import annotations

import itertools
import json
import threading
import types

import pytest

import hedge
from hedge.exec import executor as executor_module
from hedge.io.traps import TRAP_IO, TRAP_YIELD, reschedule
from tests.db.helpers import LEAN, SMALL, open_db, run_child

# A hung engine call fails its test instead of the whole run.
pytestmark = pytest.mark.timeout(120)

ONE = "threads"
MAX_KEY = 64 * 1024


@pytest.fixture
def db(tmp_path, io_method):
    d = open_db(tmp_path / "db", io_method)
    yield d
    d.close()


def test_put_get_remove_overwrite(db):
    assert db.get(b"a") is None
    db.put(b"a", b"1")
    db.put(b"b", b"")
    assert db.get(b"a") == b"1"
    assert db.get(b"b") == b""                  # an empty value is a value, not a removal
    db.put(b"a", b"2")
    assert db.get(b"a") == b"2"
    db.remove(b"a")
    assert db.get(b"a") is None
    db.remove(b"never-there")
    assert list(db.scan()) == [(b"b", b"")]
    db.put(b"a", b"3", sync=True)
    db.remove(b"b", sync=True)
    assert list(db.scan()) == [(b"a", b"3")]


def test_multi_get_answers_in_order_with_none_for_missing(db):
    for i in range(0, 20, 2):
        db.put(b"k%02d" % i, b"v%02d" % i)
    db.flush()
    db.put(b"k04", b"new")
    db.remove(b"k06")
    keys = [b"k%02d" % i for i in range(20)] + [b"k04", b"zz", b"k00"]
    expected = [(b"new" if i == 4 else None if i % 2 or i == 6 else b"v%02d" % i) for i in range(20)]
    expected += [b"new", None, b"v00"]
    assert db.multi_get(keys) == expected
    assert db.multi_get([]) == []


def test_write_batch_applies_in_order_and_later_ops_win(db):
    db.put(b"gone", b"x")
    batch = hedge.WriteBatch()
    batch.put(b"a", b"1")
    batch.put(b"b", b"2")
    batch.remove(b"a")
    batch.put(b"c", b"3")
    batch.put(b"c", b"4")
    batch.remove(b"gone")
    seq = db.stats()["last_seq"]
    db.write(batch, sync=True)
    assert list(db.scan()) == [(b"b", b"2"), (b"c", b"4")]
    assert db.stats()["last_seq"] == seq + 6
    db.write(hedge.WriteBatch())                 # an empty batch is fine and changes nothing
    assert list(db.scan()) == [(b"b", b"2"), (b"c", b"4")]


def test_write_batch_is_seen_all_or_nothing_by_concurrent_scans(tmp_path):
    db = open_db(tmp_path / "db", ONE, **SMALL)
    keys = [b"key%02d" % i for i in range(20)]
    stop = threading.Event()
    seen: list[set] = []
    errors = []

    def reader():
        try:
            while not stop.is_set():
                values = {v for _, v in db.scan(b"key", b"kez")}
                seen.append(values)
        except BaseException as e:          # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for version in range(150):
            batch = hedge.WriteBatch()
            for k in keys:
                batch.put(k, b"%06d" % version + b"." * 100)
            db.write(batch)
    finally:
        stop.set()
        t.join()
    db.close()
    assert not errors, errors
    assert seen
    torn = [s for s in seen if len(s) > 1]
    assert not torn, f"{len(torn)} scans saw parts of several batches, e.g. {sorted(torn[0])[:3]}"


def test_bytes_like_keys_and_values_are_stored_as_bytes(db):
    key = bytearray(b"ba")
    value = bytearray(b"value")
    db.put(key, value)
    key[0:2] = b"zz"                           # the caller reusing its buffers changes nothing stored
    value[:] = b"XXXXX"
    db.put(memoryview(b"mv-key"), memoryview(b"mv-value"))
    db.put(memoryview(b"xxsliceyy")[2:7], memoryview(bytearray(b"__val__"))[2:5])
    batch = hedge.WriteBatch()
    batch.put(bytearray(b"batch"), memoryview(b"b-value"))
    db.write(batch)
    assert db.get(bytearray(b"ba")) == b"value"
    assert db.get(memoryview(b"mv-key")) == b"mv-value"
    assert db.get(b"slice") == b"val"
    rows = list(db.scan(bytearray(b"a"), memoryview(b"z")))
    assert rows == [(b"ba", b"value"), (b"batch", b"b-value"), (b"mv-key", b"mv-value"), (b"slice", b"val")]
    for k, v in rows:
        assert type(k) is bytes and type(v) is bytes
    for v in db.multi_get([bytearray(b"ba"), memoryview(b"slice")]):
        assert type(v) is bytes
    assert type(db.get(b"ba")) is bytes
    db.remove(bytearray(b"ba"))
    assert db.get(b"ba") is None


def test_largest_key_and_a_16_mib_value_round_trip_through_flush_and_reopen(tmp_path, io_method):
    path = tmp_path / "db"
    big_key = bytes(range(256)) * (MAX_KEY // 256)
    assert len(big_key) == MAX_KEY
    big_value = bytes(i * 7 % 251 for i in range(4096)) * 4096
    assert len(big_value) == 16 << 20
    with open_db(path, io_method) as db:
        db.put(big_key, b"small")
        db.put(b"big", big_value)
        db.put(b"after", b"x")
        assert db.get(big_key) == b"small"
        assert db.get(b"big") == big_value
        db.flush()
        assert db.get(big_key) == b"small"
        assert db.get(b"big") == big_value
        assert [k for k, _ in db.scan()] == [big_key, b"after", b"big"]
    with open_db(path, io_method) as db:
        assert db.get(big_key) == b"small"
        assert db.get(b"big") == big_value
        assert db.multi_get([b"big", big_key]) == [big_value, b"small"]


def test_largest_key_and_a_big_value_survive_reopen_from_the_wal_alone(tmp_path):
    path = str(tmp_path / "db")
    value = "w" * (3 << 20)
    writes = tmp_path / "writes.json"
    writes.write_text(json.dumps([{"ops": [["p", "k" * MAX_KEY, value]], "batch": False, "sync": True}]))
    assert run_child("write", path, ONE, json.dumps(LEAN), "@" + str(writes)) == "D\n"
    with open_db(path, ONE) as db:
        assert db.get(b"k" * MAX_KEY) == value.encode()


def test_aio_forms_inside_run(db):
    async def job():
        aio = db.aio
        await aio.put(b"a", b"1")
        await aio.put(b"b", b"2", sync=True)
        await aio.put(b"c", b"3")
        await aio.remove(b"c")
        batch = hedge.WriteBatch()
        batch.put(b"d", b"4")
        batch.remove(b"a")
        await aio.write(batch, sync=True)
        got = await aio.get(b"b")
        missing = await aio.get(b"a")
        many = await aio.multi_get([b"a", b"b", b"d"])
        rows = [(k, v) async for k, v in aio.scan()]
        bounded = [(k, v) async for k, v in aio.scan(b"c", None)]
        return got, missing, many, rows, bounded

    got, missing, many, rows, bounded = db.run(job())
    assert got == b"2"
    assert missing is None
    assert many == [None, b"2", b"4"]
    assert rows == [(b"b", b"2"), (b"d", b"4")]
    assert bounded == [(b"d", b"4")]
    assert list(db.scan()) == rows


def test_spawn_and_gather_inside_run(db):
    async def put_many(prefix: bytes, n: int) -> int:
        for i in range(n):
            await db.aio.put(prefix + b"%03d" % i, b"%d" % i)
        return n

    async def job():
        task = hedge.spawn(put_many(b"s", 30))
        counts = await hedge.gather(put_many(b"g1-", 20), put_many(b"g2-", 25))
        return counts, await task

    counts, spawned = db.run(job())
    assert counts == [20, 25] and spawned == 30
    assert len(list(db.scan())) == 75
    assert db.get(b"g2-024") == b"24"


def test_coroutine_operations_take_turns_on_their_executor(db):
    """A put that completes without waiting (a write group of one into the
    memtable) or a get answered by the memtable still lets the executor's
    other ready tasks run: without the checkpoint each task below would run
    its whole loop before the next one starts."""
    events = []

    async def client(name: str, n: int) -> None:
        for i in range(n):
            key = b"%s%d" % (name.encode(), i)
            await db.aio.put(key, b"v")
            assert await db.aio.get(key) == b"v"
            events.append(name)

    async def job():
        await hedge.gather(client("a", 4), client("b", 4), client("c", 4))

    db.run(job())
    assert events == ["a", "b", "c"] * 4


def test_coroutine_scans_take_turns_on_their_executor(db):
    """A scan of memtables never waits; each one (stepped, taken with
    to_list, over an empty range) has a checkpoint, so tasks that only scan
    still take turns."""
    db.put(b"a", b"1")
    events = []

    async def client(name: str) -> None:
        for _ in range(3):
            assert [k async for k, _ in db.aio.scan()] == [b"a"]
            events.append(name)
            assert await db.aio.scan().to_list() == [(b"a", b"1")]
            events.append(name)
            assert [k async for k, _ in db.aio.scan(b"b", b"a")] == []
            events.append(name)

    async def job():
        await hedge.gather(client("a"), client("b"))

    db.run(job())
    assert events == ["a", "b"] * 9


@types.coroutine
def _counting_steps(awaitable, counts: list):
    """Await ``awaitable``, counting in ``counts`` each time it gives its
    executor up (each trap it yields)."""
    coro = awaitable.__await__()
    value, exc = None, None
    while True:
        try:
            trap = coro.send(value) if exc is None else coro.throw(exc)
        except StopIteration as stop:
            return stop.value
        counts.append(trap[0])
        try:
            value, exc = (yield trap), None
        except BaseException as e:  # noqa: BLE001 - thrown on into the awaitable
            value, exc = None, e


def test_an_operation_that_waited_ends_without_another_turn(tmp_path, io_method, monkeypatch):
    """While other tasks are ready, an operation that completes at once
    gives them a turn at its end (one yield) once the task's turn is over
    (TURN_NS, here 0: every time), and none while it is not (here: a turn
    that never ends); one that waited for a read or for its write group
    does not add a second: it gave them their turn while it waited."""
    # inline_reads off: the table's block is read through the ring, so the get waits.
    with open_db(tmp_path / "db", io_method, block_cache_bytes=0, inline_reads=False) as db:
        db.put(b"on-disk", b"1")
        db.flush()
        db.put(b"in-memory", b"2")

        async def job():
            spinning = True

            async def spinner():
                while spinning:
                    await reschedule()

            spinners = [hedge.spawn(spinner()) for _ in range(2)]
            await reschedule()                  # the spinners are running
            found = {}
            for turn_ns, name in ((10**15, "memtable get, turn not over"), (0, "memtable get, turn over")):
                monkeypatch.setattr(executor_module, "TURN_NS", turn_ns)
                counts: list = []
                await _counting_steps(db.aio.get(b"in-memory"), counts)
                found[name] = counts
            for name, op in (("read from a table", lambda: db.aio.get(b"on-disk")),
                             ("put", lambda: db.aio.put(b"k", b"v")),
                             ("remove", lambda: db.aio.remove(b"k"))):
                counts: list = []
                await _counting_steps(op(), counts)
                found[name] = counts
            spinning = False
            for task in spinners:
                await task
            return found

        found = db.run(job())
    assert found["memtable get, turn not over"] == []
    assert found["memtable get, turn over"] == [TRAP_YIELD]
    assert found["read from a table"] == [TRAP_IO]
    for name in ("put", "remove"):
        assert len(found[name]) == 1, (name, found[name])      # gathering its group, or the closing turn


@pytest.mark.parametrize("turn_ns, alternate", [(0, True), (10**15, False)])
def test_tasks_completing_operations_at_once_take_turns(db, monkeypatch, turn_ns, alternate):
    """Two tasks whose gets never wait (memtable hits): with a turn of 0
    they alternate at every get; with a turn that never ends, the first
    runs all its gets before the second starts."""
    monkeypatch.setattr(executor_module, "TURN_NS", turn_ns)
    db.put(b"k", b"v")
    order: list[str] = []

    async def reader(name: str) -> None:
        for _ in range(20):
            assert await db.aio.get(b"k") == b"v"
            order.append(name)

    async def job():
        await hedge.gather(reader("a"), reader("b"))

    db.run(job())
    runs = [len(list(group)) for _, group in itertools.groupby(order)]
    assert sum(runs) == 40
    if alternate:
        # Each task yields inside a get, before recording it.
        assert len(runs) >= 38 and max(runs) <= 2, runs
    else:
        assert runs == [20, 20]


def test_run_returns_the_result_and_raises_the_exception(db):
    async def ok():
        return 42

    async def bad():
        raise KeyError("boom")

    assert db.run(ok()) == 42
    with pytest.raises(KeyError):
        db.run(bad())


def test_stats_has_the_documented_keys(tmp_path):
    with open_db(tmp_path / "db", ONE) as db:
        for i in range(50):
            db.put(b"k%02d" % i, b"v" * 100, sync=i % 10 == 0)
        db.flush()
        db.put(b"mem", b"x")
        s = db.stats()
    levels = s["levels"]
    assert len(levels) == 7
    for lv in levels:
        assert isinstance(lv["files"], int) and isinstance(lv["bytes"], int)
        assert lv["files"] >= 0 and lv["bytes"] >= 0
    assert sum(lv["files"] for lv in levels) >= 1
    assert sum(lv["bytes"] for lv in levels) >= 50 * 100
    assert isinstance(s["memtable_bytes"], int) and s["memtable_bytes"] > 0
    assert isinstance(s["immutable_memtables"], int)
    assert s["last_seq"] == 51
    assert s["background_error"] is None
    assert set(s["wal"]) >= {"groups", "writers", "syncs"}
    assert s["wal"]["writers"] >= 51 and s["wal"]["syncs"] >= 5
    assert s["wal"]["groups"] <= s["wal"]["writers"]
    assert isinstance(s["cache"], dict)
    assert isinstance(s["layout"], str) and s["layout"]
    assert "foreground" in s and "background" in s
    assert set(s["compaction"]) >= {"bytes_written", "flush_bytes", "count"}
    assert s["compaction"]["flush_bytes"] > 0


def test_compact_moves_everything_out_of_l0(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, **SMALL) as db:
        for i in range(400):
            db.put(b"c%04d" % (i * 211 % 400), b"x" * 60)     # out of key order: real merges
        db.compact()
        s = db.stats()
        assert s["levels"][0]["files"] < SMALL["l0_compaction_trigger"]
        assert s["compaction"]["count"] >= 1
        assert len(list(db.scan())) == 400


def test_context_manager_closes_and_releases_the_lock(tmp_path):
    path = tmp_path / "db"
    with open_db(path, ONE) as db:
        db.put(b"a", b"1")
    with pytest.raises(hedge.ClosedError):
        db.get(b"a")
    with pytest.raises(RuntimeError):
        with open_db(path, ONE) as db2:
            db2.put(b"b", b"2")
            raise RuntimeError("leaving by an exception")
    with pytest.raises(hedge.ClosedError):
        db2.put(b"c", b"3")
    with open_db(path, ONE) as db3:
        assert list(db3.scan()) == [(b"a", b"1"), (b"b", b"2")]


def test_coroutine_writers_of_one_executor_share_wal_writes(tmp_path, io_method):
    """Unsynced writes from 64 coroutines on one executor: each write
    completes without waiting, yet a writer that finds other tasks ready
    gathers them into its group, so far fewer WAL records than writes are
    written; every write is acknowledged, readable and survives a reopen."""
    writers, rounds = 64, 5
    path = tmp_path / "db"
    with open_db(path, io_method) as db:
        before = dict(db.stats()["wal"])

        async def one(i):
            for r in range(rounds):
                await db.aio.put(b"w%02d-%d" % (i, r), b"v%02d-%d" % (i, r))

        async def all_of_them():
            await hedge.gather(*(one(i) for i in range(writers)))

        db.run(all_of_them())
        after = db.stats()["wal"]
    writes = writers * rounds
    assert after["writers"] - before["writers"] == writes
    assert after["groups"] - before["groups"] <= writes / 8
    with open_db(path, io_method) as db:
        assert dict(db.scan()) == {b"w%02d-%d" % (i, r): b"v%02d-%d" % (i, r)
                                   for i in range(writers) for r in range(rounds)}


def test_a_gathering_leader_cancelled_while_it_yields_still_commits_its_group(tmp_path):
    """The leader is cancelled during the turn it gives the other ready
    tasks: it raises Cancelled, but the group it took the lead of (itself
    and the writers that queued behind it) is committed, and no writer is
    left waiting."""
    with open_db(tmp_path / "db", ONE) as db:
        before = dict(db.stats()["wal"])

        async def main():
            leader = hedge.spawn(db.aio.put(b"leader", b"L"))
            followers = [hedge.spawn(db.aio.put(b"f%d" % i, b"F")) for i in range(4)]
            canceller_ran = []

            async def canceller():
                leader.cancel()
                canceller_ran.append(True)

            # Ready order: leader, followers, canceller.  The leader takes
            # the lead and yields; the followers queue; the canceller
            # cancels the leader before it resumes.
            cancel_task = hedge.spawn(canceller())
            with pytest.raises(hedge.Cancelled):
                await leader
            for f in followers:
                await f
            await cancel_task
            assert canceller_ran
            return db.stats()["wal"]

        wal = db.run(main())
        # One group: the leader and the four that queued behind it.
        assert (wal["groups"] - before["groups"], wal["writers"] - before["writers"]) == (1, 5)
        assert db.get(b"leader") == b"L"
        assert db.multi_get([b"f%d" % i for i in range(4)]) == [b"F"] * 4


def test_open_returns_a_db_instance(tmp_path):
    with open_db(tmp_path / "db", ONE) as db:
        assert isinstance(db, hedge.DB)


def test_concurrent_sync_writers_are_group_committed(tmp_path, io_method):
    writers = 64
    with open_db(tmp_path / "db", io_method) as db:
        before = dict(db.stats()["wal"])

        async def one(i):
            await db.aio.put(b"w%02d" % i, b"v%02d" % i, sync=True)

        async def all_of_them():
            await hedge.gather(*(one(i) for i in range(writers)))

        db.run(all_of_them())
        after = db.stats()["wal"]
        assert db.multi_get([b"w%02d" % i for i in range(writers)]) == [b"v%02d" % i for i in range(writers)]
    syncs = after["syncs"] - before["syncs"]
    groups = after["groups"] - before["groups"]
    assert after["writers"] - before["writers"] == writers
    assert 1 <= syncs < writers / 4, f"{syncs} fdatasyncs for {writers} concurrent sync writers"
    assert groups < writers / 4


def test_entries_hold_plain_int_kinds_that_the_collector_leaves_alone(tmp_path):
    """Memtable entries, written or replayed from the WAL, and block entries
    hold the kind as a plain int: a tuple of bytes and ints is untracked by
    the garbage collector, so a full memtable does not lengthen every full
    collection (one holding a Kind member would be tracked for life)."""
    import gc

    path = tmp_path / "db"
    with open_db(path, ONE) as db:
        db.put(b"a", b"1")
        db.remove(b"b")
        gc.collect()
        for key in (b"a", b"b"):
            entry = db._engine._sv.mem._newest[key]
            assert type(entry[2]) is int and not gc.is_tracked(entry), entry
    with open_db(path, ONE) as db:             # replayed from the WAL into a table or a memtable
        db.flush()
        reader = next(iter(db._engine._sv.tables.values()))
        ranges = reader.block_ranges()
        block = db.run(reader.read_block(*ranges[0]))
        assert [type(e[2]) for e in block.entries()] == [int, int]
        db.put(b"c", b"3")
        gc.collect()
        assert not gc.is_tracked(db._engine._sv.mem._newest[b"c"])
