"""The empty key ``b""`` is a key like any other, the smallest of all (as in
LevelDB and RocksDB): stored, read, removed and scanned first, through the
blocking API, the dict face, snapshots and ``db.aio`` (from asyncio and
from hedge tasks); held in the WAL, a memtable, a table's first block and
as its smallest key, in the manifest; and kept through flush, compaction,
reopen, a crash and checkpoint.  Range bounds: a scan from b""
includes it, a scan ending at b"" is empty."""
from __future__ import annotations

import asyncio
import json

import pytest

import hedge
from hedge.offline import TableFile, check, manifest_edits
from hedge.lsm import filenames
from tests.db.helpers import LEAN, SMALL, open_db, run_child, sst_files

pytestmark = pytest.mark.timeout(120)

E = b""
# Keys around the empty key: b"\x00" is the next key after it.
NEAR = [b"\x00", b"\x00\x00", b"\x01", b"a"]


def _fill(db, value=b"empty"):
    db.put(E, value)
    for k in NEAR:
        db.put(k, b"v" + k)


def _expected(value=b"empty"):
    return [(E, value)] + [(k, b"v" + k) for k in NEAR]


@pytest.fixture
def db(tmp_path, io_method):
    d = open_db(tmp_path / "db", io_method, block_cache_bytes=0)
    yield d
    d.close()


# -- the blocking API -------------------------------------------------------------
@pytest.mark.parametrize("key", [b"", bytearray(), memoryview(b"")], ids=["bytes", "bytearray", "memoryview"])
def test_put_get_remove_of_the_empty_key(db, key):
    assert db.get(key) is None
    db.put(key, b"v")
    assert db.get(key) == b"v"
    assert db.get(b"\x00") is None              # the next key is another key
    db.put(key, b"")                            # an empty value under the empty key is present
    assert db.get(key, b"default") == b""
    assert db.multi_get([b"a", key, b"\x00"]) == [None, b"", None]
    db.remove(key, sync=True)
    assert db.get(key) is None
    assert list(db.scan()) == []


def test_dict_face_and_batches(db):
    db[E] = b"1"
    assert db[E] == b"1" and E in db and b"\x00" not in db
    del db[E]
    assert E not in db
    with pytest.raises(KeyError):
        db[E]
    batch = hedge.WriteBatch()
    batch.put(E, b"2")
    batch.put(b"a", b"3")
    db.write(batch, sync=True)
    assert list(db) == [E, b"a"]
    with db.write_batch() as b:
        b.remove(E)
        b.put(b"b", b"4")
    assert list(db.scan()) == [(b"a", b"3"), (b"b", b"4")]


def test_scan_yields_the_empty_key_first_and_honours_it_as_a_bound(db):
    _fill(db)
    everything = _expected()
    assert list(db.scan()) == everything
    assert list(db.scan(E)) == everything                       # a scan from b"" includes it
    assert list(db.scan(E, b"\x00")) == everything[:1]
    assert list(db.scan(end=E)) == []                           # ending at b"": an empty range
    assert list(db.scan(E, E)) == []
    assert list(db.scan(end=E, include_end=True)) == everything[:1]
    assert list(db.scan(E, include_start=False)) == everything[1:]
    assert list(db.scan(prefix=E)) == everything                 # every key starts with b""
    assert list(db.scan(E, b"\x01", include_value=False)) == [E, b"\x00", b"\x00\x00"]
    assert list(db.scan(prefix=b"\x00", include_key=False)) == [b"v\x00", b"v\x00\x00"]


def test_snapshot_keeps_the_empty_keys_old_value(db):
    db.put(E, b"old")
    with db.snapshot() as snap:
        db.put(E, b"new")
        db.flush()
        assert snap.get(E) == b"old"
        assert snap.multi_get([E]) == [b"old"]
        assert list(snap.scan(end=b"\x00")) == [(E, b"old")]
        db.remove(E)
        db.compact()
        assert snap.get(E) == b"old"
    assert db.get(E) is None


def test_range_operations_with_empty_bounds(db):
    _fill(db)
    db.flush()
    assert db.approximate_size(E) == db.approximate_size() > 0        # from b"": the whole range
    assert db.approximate_size(end=E) == 0
    assert db.approximate_size(E, E) == 0
    db.compact(E, E)                                                   # a range holding b"" alone
    assert list(db.scan()) == _expected()
    db.remove(E)
    db.compact(E, b"\x00")
    assert db.get(E) is None
    assert list(db.scan()) == _expected()[1:]
    with pytest.raises(ValueError):
        db.compact(b"\x00", E)                                         # start above end


# -- db.aio ------------------------------------------------------------------------
async def _aio_round(aio):
    await aio.put(E, b"1")
    assert await aio.get(E) == b"1"
    for k in NEAR:
        await aio.put(k, b"v" + k)
    await aio.flush()
    assert [k async for k, _ in aio.scan()] == [E, *NEAR]
    assert [k async for k, _ in aio.scan(E, b"\x00")] == [E]
    assert [k async for k, _ in aio.scan(end=E)] == []
    batch = hedge.WriteBatch()
    batch.remove(E)
    batch.put(b"\x00", b"x")
    await aio.write(batch, sync=True)
    assert await aio.multi_get([E, b"\x00"]) == [None, b"x"]
    await aio.put(E, b"2", sync=True)
    await aio.compact(E, E)
    assert await aio.get(E) == b"2"
    await aio.remove(E)
    assert await aio.get(E) is None
    assert aio.approximate_size(end=E) == 0
    return True


def test_aio_from_asyncio(db):
    assert asyncio.run(_aio_round(db.aio))
    assert db.get(b"\x00") == b"x" and db.get(E) is None


def test_aio_in_a_hedge_task(db):
    assert db.run(_aio_round(db.aio))
    assert db.get(b"\x00") == b"x" and db.get(E) is None


def test_snapshot_aio(db):
    db.put(E, b"old")
    with db.snapshot() as snap:
        db.put(E, b"new")

        async def read():
            return (await snap.aio.get(E), await snap.aio.multi_get([E]),
                    [p async for p in snap.aio.scan(E, b"\x00")])

        assert asyncio.run(read()) == (b"old", [b"old"], [(E, b"old")])
        assert db.run(read()) == (b"old", [b"old"], [(E, b"old")])


# -- durability: tables, manifest, compaction, reopen, crash --------------------------
def test_the_empty_key_is_a_tables_smallest_key_in_its_first_block(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method, block_cache_bytes=0) as db:
        _fill(db)
        db.flush()
    (table,) = sst_files(path)
    with TableFile(table) as t:
        assert t.properties.smallest_key == E
        first = t.block_ranges()[0]
        assert next(iter(t.block_entries(*first)))[0] == E
    added = [meta for _, edit in manifest_edits(_manifest(path)) for _, meta in edit.added_files]
    assert [m.smallest_key for m in added] == [E]
    assert check(path).sound
    with open_db(path, io_method, block_cache_bytes=0) as db:
        assert db.get(E) == b"empty"
        assert list(db.scan()) == _expected()


def _manifest(path) -> str:
    with open(filenames.join(str(path), filenames.CURRENT)) as f:
        return filenames.join(str(path), f.read().strip())


def test_the_empty_key_survives_compaction_through_the_levels(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method, **SMALL) as db:
        for round_ in range(3):
            db.put(E, b"round%d" % round_)
            for i in range(300):
                db.put(b"k%04d" % i, b"%d" % round_ * 40)
            db.flush()
        db.compact()
        levels = [lv["files"] for lv in db.stats()["levels"]]
        assert sum(levels[1:]) > 1                              # the tree has deep levels
        assert db.get(E) == b"round2"
        assert next(iter(db.scan())) == (E, b"round2")
    with open_db(path, io_method, **SMALL) as db:
        assert db.get(E) == b"round2"
        db.remove(E)
        db.compact(E, E)
        assert db.get(E) is None
        assert next(iter(db.scan()))[0] == b"k0000"
    with open_db(path, io_method, **SMALL) as db:
        assert db.get(E) is None


def test_the_empty_key_is_recovered_from_the_wal_after_a_crash(tmp_path, io_method):
    path = str(tmp_path / "db")
    writes = [{"ops": [["p", "", "from-the-wal"]], "batch": False, "sync": True},
              {"ops": [["p", "\x00", "next"], ["d", ""], ["p", "", "again"]], "batch": True, "sync": False}]
    # The child writes and exits without closing: open replays its WAL.
    assert run_child("write", path, io_method, json.dumps(LEAN), json.dumps(writes)) == "D\n"
    with open_db(path, io_method) as db:
        assert list(db.scan()) == [(E, b"again"), (b"\x00", b"next")]


def test_checkpoint_holds_the_empty_key(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method) as db:
        _fill(db)
        db.checkpoint(tmp_path / "copy")
    with open_db(tmp_path / "copy", io_method) as copy:
        assert list(copy.scan()) == _expected()


def test_the_empty_key_through_a_compaction_worker_process(tmp_path):
    with open_db(tmp_path / "db", "threads", **dict(SMALL, compaction_process=True)) as db:
        for round_ in range(3):
            db.put(E, b"round%d" % round_)
            for i in range(300):
                db.put(b"k%04d" % i, b"%d" % round_ * 40)
            db.flush()
        db.compact(E, None)
        assert db.stats()["levels"][0]["files"] == 0          # every table went through a merge
        assert list(db.scan(end=b"k0001")) == [(E, b"round2"), (b"k0000", b"2" * 40)]
