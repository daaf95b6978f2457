"""The block cache changes costs, never answers: one workload gives the same
results with the cache on, off and tiny (a few blocks, evicting all the
time), with blocks searched in C and in Python, read in place from the page
cache (inline_reads) and through the ring, through the blocking API and
db.aio; a get whose blocks are all cached completes without
suspending."""
from __future__ import annotations

import asyncio
import random

import pytest

import hedge
from hedge.lsm.lookup import NeedsIO
from tests.db.helpers import SMALL, model_scan, open_db, random_writes

pytestmark = pytest.mark.timeout(180)

CACHES = {"on": 1 << 20, "off": 0, "tiny": 3 * 4096}
KEYS = 700


def _workload(db, seed: int = 11):
    """Puts, overwrites and removes over a tree of several levels; returns
    the model of the final state and, for the snapshot taken midway, the
    snapshot and the model at that point."""
    rnd = random.Random(seed)
    model = random_writes(db, rnd, {}, 900, KEYS)
    snap, snap_model = db.snapshot(), dict(model)
    random_writes(db, rnd, model, 600, KEYS)
    return model, snap, snap_model


def _all_keys():
    return [b"key%06d" % i for i in range(KEYS + 1)]      # and one never written


@pytest.mark.parametrize("inline_reads", [True, False], ids=["inline", "ring"])
@pytest.mark.parametrize("cache", list(CACHES))
def test_the_same_answers_with_the_cache_on_off_and_tiny(tmp_path, io_method, cache, block_search, inline_reads):
    options = {**SMALL, "block_cache_bytes": CACHES[cache], "inline_reads": inline_reads}
    with open_db(tmp_path / "db", io_method, **options) as db:
        model, snap, snap_model = _workload(db)
        db.flush()
        levels = [level for level in db.stats()["levels"] if level["files"]]
        assert len(levels) >= 2, levels                 # the reads cross levels
        keys = _all_keys()
        for _ in range(2):                              # cold, then as warm as the cache allows
            assert [db.get(k) for k in keys] == [model.get(k) for k in keys]
            assert db.multi_get(keys) == [model.get(k) for k in keys]
            assert list(db.scan()) == model_scan(model)
            assert [snap.get(k) for k in keys] == [snap_model.get(k) for k in keys]
            assert snap.multi_get(keys) == [snap_model.get(k) for k in keys]

        async def aio_reads():
            return ([await db.aio.get(k) for k in keys], await db.aio.multi_get(keys),
                    [await snap.aio.get(k) for k in keys], await snap.aio.multi_get(keys))

        gets, multi, snap_gets, snap_multi = asyncio.run(aio_reads())
        assert gets == multi == [model.get(k) for k in keys]
        assert snap_gets == snap_multi == [snap_model.get(k) for k in keys]
        snap.close()
        inline = db.stats()["table_cache"]["inline_reads"]
        assert inline > 0 if inline_reads else inline == 0
        stats = db.stats()["cache"]
        if cache == "off":
            assert stats is None                        # no cache at all
        elif cache == "tiny":
            assert stats["evictions"] > 0 and stats["bytes"] <= CACHES["tiny"]
        else:
            assert stats["hits"] > 0 and stats["evictions"] == 0


def test_a_get_of_cached_blocks_does_not_suspend(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, **SMALL) as db:
        model, snap, _ = _workload(db)
        snap.close()
        db.compact()                                    # no compaction replaces tables from here on
        engine = db._engine
        keys = _all_keys()
        for k in keys:                                  # warm the cache
            db.get(k)
        for k in keys:
            coro = engine.get(k)
            with pytest.raises(StopIteration) as done:
                coro.send(None)
            assert done.value.value == model.get(k)
        assert not [v for v in engine.multi_get_now(keys) if type(v) is NeedsIO]


def test_without_a_cache_table_keys_need_io_and_resume(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, **{**SMALL, "block_cache_bytes": 0, "inline_reads": False}) as db:
        model, snap, _ = _workload(db)
        snap.close()
        db.flush()
        engine = db._engine
        keys = _all_keys()
        values = engine.multi_get_now(keys)
        pending = [k for k, v in zip(keys, values) if type(v) is NeedsIO]
        assert pending                                  # table keys need a block read
        assert db.run(engine.finish_gets(values)) == [model.get(k) for k in keys]
        assert [db.get(k) for k in pending] == [model.get(k) for k in pending]


def test_multi_get_rejects_a_bad_key_and_reads_nothing(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, **SMALL) as db:
        db.put(b"a", b"1")
        before = db.stats()["cache"]
        with pytest.raises(TypeError):
            db.multi_get([b"a", "not bytes"])
        with pytest.raises(TypeError):
            asyncio.run(db.aio.multi_get([b"a", 7]))
        assert db.stats()["cache"] == before
        assert db.multi_get([b"a", b"b"]) == [b"1", None]


def _bulk(db, count: int, value_bytes: int) -> dict:
    model = {}
    rnd = random.Random(5)
    for i in range(count):
        key, value = b"key%06d" % i, rnd.randbytes(value_bytes)
        db.put(key, value)
        model[key] = value
    db.flush()
    db.compact()
    return model


def test_scans_over_more_than_the_cache_take_fewer_of_its_blocks_and_gets_all(tmp_path, io_method):
    """Scans that read blocks faster than they reuse them (the tree is 25
    times the cache) make the cache take fewer of their blocks; the answers
    do not change, and a get's block is still always taken."""
    with open_db(tmp_path / "db", io_method, **{**SMALL, "block_cache_bytes": 4 * 4096}) as db:
        model = _bulk(db, 3000, 100)
        for _ in range(6):
            assert list(db.scan()) == model_scan(model)
        rnd = random.Random(3)
        for _ in range(200):
            start = b"key%06d" % rnd.randrange(3000)
            assert list(db.scan(start, limit=50)) == model_scan(model, start)[:50]
        before = db.stats()["cache"]
        assert before["scan_skip"] > 1, before
        assert list(db.scan()) == model_scan(model)
        after = db.stats()["cache"]
        read = after["misses"] - before["misses"]                 # blocks the scan read
        assert 0 < after["scan_inserts"] - before["scan_inserts"] < read / 1.5
        inserts = after["inserts"]
        key = b"key%06d" % rnd.randrange(3000)
        assert db.get(key) == model[key]
        assert db.stats()["cache"]["inserts"] > inserts          # the get's block was read and taken


def test_scans_over_a_tree_that_fits_the_cache_take_every_block(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, **{**SMALL, "block_cache_bytes": 4 << 20}) as db:
        model = _bulk(db, 3000, 100)
        assert list(db.scan()) == model_scan(model)
        misses = db.stats()["cache"]["misses"]
        for _ in range(3):
            assert list(db.scan()) == model_scan(model)
        stats = db.stats()["cache"]
        assert stats["misses"] == misses and stats["evictions"] == 0     # every block from the cache
        assert stats["scan_skip"] == 1 and stats["scan_inserts"] == stats["inserts"] > 0


def test_gets_over_more_than_the_cache_take_fewer_of_its_blocks_but_a_hot_one(tmp_path, io_method):
    """Gets spread over a tree 25 times the cache make it take fewer of
    their blocks; a block read again and again is still taken, and then
    answers from the cache."""
    with open_db(tmp_path / "db", io_method, **{**SMALL, "block_cache_bytes": 4 * 4096}) as db:
        model = _bulk(db, 3000, 100)
        rnd = random.Random(4)
        for _ in range(6000):
            key = b"key%06d" % rnd.randrange(3000)
            assert db.get(key) == model[key]
        stats = db.stats()["cache"]
        assert stats["get_skip"] > 1 and stats["scan_skip"] == 1, stats
        hot = b"key001234"
        for _ in range(4 * stats["get_skip"]):
            assert db.get(hot) == model[hot]
        hits = db.stats()["cache"]["hits"]
        assert db.get(hot) == model[hot]
        assert db.stats()["cache"]["hits"] == hits + 1
