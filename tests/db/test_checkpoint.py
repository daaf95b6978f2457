"""db.checkpoint(path): a copy that opens as a database of its own, taken
while a writer goes on, on the blocking API and db.aio; tables dropped by a
compaction during it stay until it is done; copies across file systems;
bad targets."""
from __future__ import annotations

import asyncio
import errno
import os
import threading

import pytest

import hedge
from tests.db.helpers import LEAN, SMALL, open_db, sst_files

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(params=["blocking", "aio"])
def api(request) -> str:
    return request.param


def checkpoint(db, api: str, target) -> None:
    if api == "blocking":
        db.checkpoint(target)
    else:
        async def main():
            await db.aio.checkpoint(target)
        asyncio.run(main())


def reopen(path, io_method: str, **options):
    return hedge.open(str(path), create=False, io_method=io_method, **{**LEAN, **options})


class Writer(threading.Thread):
    """Puts unique keys and removes every tenth key five writes after it was
    put, one write at a time; ``ops`` lists the acknowledged writes."""

    def __init__(self, db):
        super().__init__(daemon=True)
        self.db = db
        self.ops: list[tuple[bytes, bytes | None]] = []
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            i = 0
            while not self.stop.is_set():
                key = b"w%06d" % i
                value = b"%d" % i * 20
                self.db.put(key, value)
                self._acked((key, value))
                if i % 10 == 5:
                    self.db.remove(b"w%06d" % (i - 5))
                    self._acked((b"w%06d" % (i - 5), None))
                i += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
            with self.progress:
                self.progress.notify_all()

    def _acked(self, op) -> None:
        with self.progress:
            self.ops.append(op)
            self.progress.notify_all()

    def wait_for(self, count: int) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: len(self.ops) >= count or self.error, timeout=120)
        assert self.error is None, self.error


def model_of(ops) -> dict:
    model = {}
    for key, value in ops:
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
    return model


def prefix_matching(ops, contents: dict) -> int | None:
    """The length of the prefix of ``ops`` whose result is ``contents``."""
    model: dict = {}
    if model == contents:
        return 0
    for n, (key, value) in enumerate(ops, 1):
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
        if len(model) == len(contents) and model == contents:
            return n
    return None


def test_checkpoint_while_a_writer_goes_on_holds_every_write_acknowledged_before(tmp_path, io_method, api):
    source = tmp_path / "db"
    db = open_db(source, io_method, **SMALL)
    writer = Writer(db)
    writer.start()
    try:
        writer.wait_for(300)
        before = len(writer.ops)
        checkpoint(db, api, tmp_path / "ckpt")
        after = len(writer.ops)
        writer.wait_for(after + 200)                    # the source goes on
        # ... until it has compacted, dropping tables, at least once (how
        # many writes that takes depends on the flushes' timing).
        while db.stats()["compaction"]["count"] < 1 and len(writer.ops) < 50_000:
            writer.wait_for(len(writer.ops) + 100)
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None, writer.error
    assert db.stats()["compaction"]["count"] >= 1      # tables were dropped while it ran
    source_model = model_of(writer.ops)
    assert dict(db.scan()) == source_model
    db.close()

    with reopen(tmp_path / "ckpt", io_method, **SMALL) as ck:
        contents = dict(ck.scan())
        n = prefix_matching(writer.ops, contents)
        # A prefix of the history (writes during the call may be in it),
        # holding at least every write acknowledged before the call.
        assert n is not None and n >= before, (n, before, len(contents))
        ck.put(b"only-in-the-checkpoint", b"1")
        ck.compact(b"a", None)
        assert ck.get(b"only-in-the-checkpoint") == b"1"
    with reopen(source, io_method, **SMALL) as db:
        assert dict(db.scan()) == source_model         # the copy's writes and compactions did not touch it


def test_checkpoint_of_tables_memtable_and_tombstones(tmp_path, io_method, api):
    with open_db(tmp_path / "db", io_method) as db:
        for i in range(100):
            db.put(b"k%03d" % i, b"v%03d" % i)
        db.flush()
        db.remove(b"k005")
        db.put(b"k006", b"new")
        db.put(b"mem", b"only in the memtable")
        checkpoint(db, api, tmp_path / "ckpt")
        expected = dict(db.scan())
        db.put(b"later", b"x")
    names = os.listdir(tmp_path / "ckpt")
    assert "CURRENT" in names and not [n for n in names if n.endswith(".wal")]
    with reopen(tmp_path / "ckpt", io_method) as ck:
        assert dict(ck.scan()) == expected
        assert ck.get(b"k005") is None and ck.get(b"later") is None
        assert ck.recovery["replayed_wals"] == []


def test_tables_a_compaction_drops_stay_while_deletions_are_held(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, l0_compaction_trigger=20, l0_slowdown_trigger=30,
                 l0_stop_trigger=40) as db:
        for round_ in range(3):
            for i in range(50):
                db.put(b"k%03d" % i, b"%d" % round_)
            db.flush()
        tables = set(sst_files(db.directory))
        assert len(tables) == 3
        with db._engine.maintenance.hold_deletions():
            db.compact(b"k", b"l")                     # merges the three into one L1 table
            assert db.property("hedge.num-files") == 1
            assert tables <= set(sst_files(db.directory))
        db.compact()                                    # returns once maintenance is idle: removed by then
        assert not tables & set(sst_files(db.directory))
        assert len(sst_files(db.directory)) == 1


def test_checkpoint_copies_tables_when_they_cannot_be_linked(tmp_path, io_method, monkeypatch):
    with open_db(tmp_path / "db", io_method) as db:
        for i in range(300):
            db.put(b"k%03d" % i, os.urandom(50))
        db.flush()
        expected = dict(db.scan())

        def no_link(src, dst):
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "link", no_link)
        db.checkpoint(tmp_path / "ckpt")
        monkeypatch.undo()
        db.checkpoint(tmp_path / "linked")
    copied = sst_files(tmp_path / "ckpt")
    assert copied and all(os.stat(p).st_nlink == 1 for p in copied)
    linked = sst_files(tmp_path / "linked")
    assert linked and all(os.stat(p).st_nlink == 2 for p in linked)    # the source's name and this one
    for path in ("ckpt", "linked"):
        with reopen(tmp_path / path, io_method) as ck:
            assert dict(ck.scan()) == expected


def test_checkpoint_target_must_be_missing_or_empty(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_bytes(b"")
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    with open_db(tmp_path / "db", "sync") as db:
        db.put(b"k", b"v")
        with pytest.raises(hedge.HedgeError, match="not empty"):
            db.checkpoint(tmp_path / "full")
        assert os.listdir(tmp_path / "full") == ["x"]
        with pytest.raises(hedge.HedgeError, match="not a directory"):
            db.checkpoint(tmp_path / "file")
        db.checkpoint(tmp_path / "empty")
        db.checkpoint(tmp_path / "new" / "nested")
        with pytest.raises(hedge.HedgeError, match="not empty"):
            db.checkpoint(tmp_path / "empty")
    for path in ("empty", "new/nested"):
        with reopen(tmp_path / path, "sync") as ck:
            assert ck.get(b"k") == b"v"
    with pytest.raises(hedge.ClosedError):
        db.checkpoint(tmp_path / "after-close")
    assert not (tmp_path / "after-close").exists()


def test_checkpoint_from_a_hedge_task(tmp_path):
    with open_db(tmp_path / "db", "sync") as db:
        db.put(b"k", b"v")
        db.run(db.aio.checkpoint(tmp_path / "ckpt"))
    with reopen(tmp_path / "ckpt", "sync") as ck:
        assert ck.get(b"k") == b"v"
