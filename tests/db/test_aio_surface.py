"""Every public DB operation is reachable from ``db.aio``: each public
method of DB has an AsyncDB method of the same name, except the few that by
design have none (NO_AIO, each with its reason); those that do no I/O
(approximate_size, property, stats, snapshot) are plain methods there,
returning their result at once, and agree with the DB's."""
from __future__ import annotations

import asyncio
import inspect

import pytest

import hedge
from tests.db.helpers import open_db

pytestmark = pytest.mark.timeout(120)

# DB methods with no AsyncDB counterpart, and why.
NO_AIO = {
    "run": "runs a coroutine on the foreground pool and blocks for its result; coroutine code awaits "
           "db.aio calls (and hedge.spawn/gather) directly",
    "write_batch": "a with-block that writes when it ends cannot await; build a hedge.WriteBatch and "
                   "await db.aio.write(batch)",
    "close": "waits for every call in progress, including the awaiting task's own; close the DB from "
             "outside the tasks using it",
}
# The methods of db.aio that return their result without an await (they do no I/O).
PLAIN = {"approximate_size", "property", "stats", "snapshot"}


def _public_methods(cls) -> set[str]:
    return {name for name, member in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


def test_every_public_db_method_has_an_aio_counterpart_or_a_reason():
    db_methods = _public_methods(hedge.DB)
    aio_methods = _public_methods(hedge.AsyncDB)
    missing = db_methods - aio_methods - set(NO_AIO)
    assert not missing, f"DB methods with no db.aio form and no reason in NO_AIO: {sorted(missing)}"
    assert set(NO_AIO) <= db_methods, f"NO_AIO names no DB method: {sorted(set(NO_AIO) - db_methods)}"
    assert not set(NO_AIO) & aio_methods, "a method in NO_AIO has a db.aio form: drop it from NO_AIO"
    assert aio_methods <= db_methods, f"db.aio methods the DB lacks: {sorted(aio_methods - db_methods)}"


def test_aio_methods_take_the_db_methods_parameters():
    for name in _public_methods(hedge.AsyncDB):
        db_params = list(inspect.signature(getattr(hedge.DB, name)).parameters)
        aio_params = list(inspect.signature(getattr(hedge.AsyncDB, name)).parameters)
        if name == "get":
            db_params.remove("default")     # await db.aio.get(k) is None when absent
        assert aio_params == db_params, name


@pytest.fixture
def db(tmp_path, io_method):
    d = open_db(tmp_path / "db", io_method)
    for i in range(200):
        d.put(b"k%03d" % i, b"v" * 100)
    d.flush()
    d.put(b"m", b"in the memtable")
    yield d
    d.close()


def _plain_reads(aio):
    snap = aio.snapshot()
    try:
        return (aio.approximate_size(), aio.approximate_size(b"k000", b"k100", include_memtables=False),
                aio.property("hedge.num-files"), aio.property("hedge.estimate-num-keys"),
                aio.stats()["levels"], snap.sequence)
    finally:
        snap.close()


def _expected(db):
    return (db.approximate_size(), db.approximate_size(b"k000", b"k100", include_memtables=False),
            db.property("hedge.num-files"), db.property("hedge.estimate-num-keys"),
            db.stats()["levels"], db.property("hedge.last-sequence"))


def test_plain_aio_methods_answer_as_the_db_does(db):
    expected = _expected(db)
    assert expected[0] > 0 and expected[2] == 1
    assert _plain_reads(db.aio) == expected                      # any thread

    async def in_a_task():
        return _plain_reads(db.aio)

    assert asyncio.run(in_a_task()) == expected                  # an asyncio task
    assert db.run(in_a_task()) == expected                       # a hedge task


def test_plain_aio_methods_raise_as_the_db_does(db):
    aio = db.aio
    with pytest.raises(ValueError):
        aio.approximate_size(b"z", b"a")
    with pytest.raises(TypeError):
        aio.approximate_size("a")
    with pytest.raises(ValueError):
        aio.property("hedge.no-such-property")
    db.close()
    for call in (aio.approximate_size, aio.stats, aio.snapshot, lambda: aio.property("hedge.num-files")):
        with pytest.raises(hedge.ClosedError):
            call()


def test_snapshot_from_aio_reads_through_its_own_aio(db):
    snap = db.aio.snapshot()
    db.put(b"m", b"later")

    async def read():
        return await snap.aio.get(b"m"), [k async for k, _ in snap.aio.scan(b"m")]

    try:
        assert asyncio.run(read()) == (b"in the memtable", [b"m"])
    finally:
        snap.close()
