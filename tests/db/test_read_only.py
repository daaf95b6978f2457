"""hedge.open(path, read_only=True): reads tables and the WAL's writes,
writes nothing (no WAL, manifest, table or removal), refuses every write
with ReadOnlyError before anything changes (blocking API and db.aio),
shares the lock with other read-only opens in other processes and never
with a writer, and checkpoints what it sees."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os

import pytest

import hedge
from tests.db.helpers import LEAN, ChildRun, open_db, sst_files, wal_files

pytestmark = pytest.mark.timeout(180)


def open_ro(path, io_method: str = "sync", **options):
    return hedge.open(str(path), io_method=io_method, read_only=True, **{**LEAN, **options})


def listing(path) -> dict:
    """Every file's name, size, modification time and content hash."""
    out = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        st = os.stat(full)
        with open(full, "rb") as f:
            out[name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return out


def make_db(path, io_method: str) -> dict:
    """A closed database with tables in two levels, removals, writes only
    in the WAL (a crash: the process never closes it) and an orphan table;
    returns its contents."""
    model = {}
    with open_db(path, io_method) as db:
        for i in range(200):
            db.put(b"k%03d" % i, b"t%03d" % i)
            model[b"k%03d" % i] = b"t%03d" % i
        db.compact(b"k", b"l")
        for i in range(0, 200, 7):
            db.put(b"k%03d" % i, b"second")
            model[b"k%03d" % i] = b"second"
        db.flush()
    ops = [{"ops": [["p", "wal%02d" % i, "only in the WAL"]], "batch": False, "sync": False} for i in range(20)]
    ops += [{"ops": [["d", "k001"], ["p", "k002", "batched"]], "batch": True, "sync": True}]
    from tests.db.helpers import run_child
    run_child("write", str(path), io_method, json.dumps(LEAN), json.dumps(ops))
    for i in range(20):
        model[b"wal%02d" % i] = b"only in the WAL"
    del model[b"k001"]
    model[b"k002"] = b"batched"
    with open(os.path.join(path, "999999.sst"), "wb") as f:       # an orphan: a writable open removes it
        f.write(b"x" * 4096)
    return model


@pytest.fixture(params=["blocking", "aio"])
def api(request) -> str:
    return request.param


def test_read_only_open_reads_tables_and_the_wal_and_writes_nothing(tmp_path, io_method, api):
    path = tmp_path / "db"
    model = make_db(path, io_method)
    assert wal_files(path) and len(sst_files(path)) >= 2
    before = listing(path)
    with open_ro(path, io_method) as db:
        assert db.read_only
        assert db.recovery["recovered_entries"] == 22 and db.recovery["removed_files"] == []
        if api == "blocking":
            assert dict(db.scan()) == model
            assert db.get(b"wal07") == b"only in the WAL" and db.get(b"k001") is None
            assert db.multi_get([b"k002", b"k007", b"nope"]) == [b"batched", b"second", None]
            with db.snapshot() as snap:
                assert snap.get(b"k003") == b"t003"
        else:
            async def main():
                assert await db.aio.get(b"wal07") == b"only in the WAL"
                assert await db.aio.multi_get([b"k002", b"k001"]) == [b"batched", None]
                return {k: v async for k, v in db.aio.scan()}
            assert asyncio.run(main()) == model
        assert db.property("hedge.num-files") >= 1
        assert db.stats()["wal"]["bytes"] == 0
    assert listing(path) == before                      # no WAL, manifest, table, removal or LOCK change
    with open_db(path, io_method) as db:                # a writer afterwards recovers as usual
        assert dict(db.scan()) == model
    assert "999999.sst" not in os.listdir(path)


def test_every_write_is_refused_before_anything_changes(tmp_path, io_method, api):
    path = tmp_path / "db"
    model = make_db(path, io_method)
    before = listing(path)
    with open_ro(path, io_method) as db:
        batch = hedge.WriteBatch()
        batch.put(b"a", b"b")
        if api == "blocking":
            refused = {
                "put": lambda: db.put(b"a", b"b"),
                "put sync": lambda: db.put(b"a", b"b", sync=True),
                "remove": lambda: db.remove(b"k003"),
                "write": lambda: db.write(batch),
                "setitem": lambda: db.__setitem__(b"a", b"b"),
                "delitem": lambda: db.__delitem__(b"k003"),
                "flush": db.flush,
                "compact": db.compact,
                "compact range": lambda: db.compact(b"a", b"z"),
            }
            for what, call in refused.items():
                with pytest.raises(hedge.ReadOnlyError):
                    call()
            with pytest.raises(hedge.ReadOnlyError):
                with db.write_batch() as b:
                    b.put(b"a", b"b")
        else:
            async def main():
                for make in (lambda: db.aio.put(b"a", b"b"), lambda: db.aio.remove(b"k003"),
                             lambda: db.aio.write(batch), db.aio.flush, db.aio.compact):
                    with pytest.raises(hedge.ReadOnlyError):
                        await make()
            asyncio.run(main())
            with pytest.raises(hedge.ReadOnlyError):
                db.run(db._engine.put(b"a", b"b"))      # the engine refuses too, under the API
        assert issubclass(hedge.ReadOnlyError, hedge.HedgeError)
        assert dict(db.scan()) == model
    assert listing(path) == before


def test_a_read_only_checkpoint_holds_the_replayed_writes(tmp_path, io_method):
    path = tmp_path / "db"
    model = make_db(path, io_method)
    before = listing(path)
    with open_ro(path, io_method) as db:
        db.checkpoint(tmp_path / "ckpt")
    assert listing(path) == before
    assert not wal_files(tmp_path / "ckpt")
    with hedge.open(str(tmp_path / "ckpt"), create=False, io_method=io_method, **LEAN) as ck:
        assert dict(ck.scan()) == model
        ck.put(b"new", b"1")                            # a database of its own


def test_read_only_opens_only_an_existing_database(tmp_path):
    with pytest.raises(hedge.HedgeError, match="no database"):
        open_ro(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(hedge.HedgeError, match="no database"):
        open_ro(tmp_path / "empty")
    assert os.listdir(tmp_path / "empty") == []
    with pytest.raises(TypeError):
        open_ro(tmp_path / "empty", read_only_typo=True)


def test_read_only_opens_share_the_lock_across_processes_and_exclude_a_writer(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method) as db:
        db.put(b"held", b"yes")
    readers = [ChildRun("hold_ro", str(path), io_method, json.dumps(LEAN)) for _ in range(2)]
    try:
        for child in readers:
            assert child.ready.wait(60), child.lines
            assert "V yes" in child.lines
        with open_ro(path, io_method) as db:            # a third, in this process
            assert db.get(b"held") == b"yes"
            with open_ro(path, io_method) as again:      # and a fourth
                assert again.get(b"held") == b"yes"
        with pytest.raises(hedge.LockError):
            open_db(path, io_method)
        with pytest.raises(hedge.LockError):
            hedge.destroy(path)
    finally:
        for child in readers:
            child.kill()
    with open_db(path, io_method) as db:                # every reader gone: a writer opens
        db.put(b"held", b"again")


def test_a_read_only_open_fails_while_a_writer_holds_the_database(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method) as db:
        db.put(b"x", b"1")
    writer = ChildRun("hold", str(path), io_method, json.dumps(LEAN))
    try:
        assert writer.ready.wait(60), writer.lines
        with pytest.raises(hedge.LockError, match="open for writing"):
            open_ro(path, io_method)
    finally:
        writer.kill()
    with open_ro(path, io_method) as db:                # the writer was killed: its WAL is replayed in memory
        assert db.get(b"held") == b"yes" and db.get(b"x") == b"1"
    with open_db(path, io_method) as db:
        with pytest.raises(hedge.LockError):
            open_ro(path, io_method)
