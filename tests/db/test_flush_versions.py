"""A flush writes the versions some reader can still see, no more: the
newest version of each key, and with a live snapshot every version newer
than the oldest one (a compaction's rule, tombstones kept: tables below
may hold what they hide).  In the maintenance thread and in the flush worker (the same
bytes), and in the table an open makes of the writes it replays."""
from __future__ import annotations

import os
import threading

import pytest

from tests.db.helpers import open_db

pytestmark = pytest.mark.timeout(120)

# Every flush leaves its own L0 table.
NO_COMPACTION = dict(memtable_bytes=1 << 20, l0_compaction_trigger=1000, l0_slowdown_trigger=1000,
                     l0_stop_trigger=1000)


def _l0_entries(db) -> list[int]:
    """Entries of each L0 table, oldest table first."""
    return [m.entries for m in sorted(db._engine._sv.version.levels[0], key=lambda m: m.number)]


def _tables(path) -> list[bytes]:
    return sorted((path / name).read_bytes() for name in os.listdir(path) if name.endswith(".sst"))


def test_a_flush_keeps_the_newest_version_and_what_snapshots_see(tmp_path, io_method):
    """Overwrites, a remove and a snapshot, flushed by the thread and by the
    flush worker: the tables hold what readers can see (and the same
    bytes either way), and every read, at the snapshot too, is right."""
    tables = {}
    for worker in (False, True):
        path = tmp_path / f"db-{worker}"
        with open_db(path, io_method, flush_process=worker, **NO_COMPACTION) as db:
            for i in range(100):
                db.put(b"hot", b"v%03d" % i)
            for k in range(50):
                db.put(b"k%03d" % k, b"x")
            db.remove(b"k000")
            db.flush()
            # "hot" once, k000 as its tombstone, k001..k049.
            assert _l0_entries(db) == [51]
            assert db.get(b"hot") == b"v099" and db.get(b"k000") is None

            # A snapshot keeps every version newer than it (the rule of
            # compact_entries: it does not look at the snapshots between).
            snap = db.snapshot()
            for i in range(100, 200):
                db.put(b"hot", b"v%03d" % i)
            db.put(b"k000", b"back")
            db.flush()
            assert _l0_entries(db) == [51, 101]
            assert snap.get(b"hot") == b"v099" and snap.get(b"k000") is None
            assert db.get(b"hot") == b"v199" and db.get(b"k000") == b"back"
            snap.close()
            for i in range(200, 300):
                db.put(b"hot", b"v%03d" % i)
            db.flush()
            assert _l0_entries(db) == [51, 101, 1]
            assert db.get(b"hot") == b"v299"
            stats = db.stats()["compaction"]
            assert stats["flush_worker_failures"] == 0 and (stats["flush_worker_pid"] is not None) == worker
        tables[worker] = _tables(path)
        with open_db(path, io_method, **NO_COMPACTION) as db:
            assert db.get(b"hot") == b"v299" and db.get(b"k000") == b"back"
            assert [k for k, _ in db.scan()] == [b"hot"] + [b"k%03d" % k for k in range(50)]
    assert tables[True] == tables[False]


def test_the_table_an_open_makes_of_replayed_writes_holds_the_newest_versions(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method, **NO_COMPACTION) as db:
        for i in range(300):
            db.put(b"k%d" % (i % 3), b"v%03d" % i)
        db.remove(b"k0")
        assert _l0_entries(db) == []
    with open_db(path, io_method, **NO_COMPACTION) as db:
        assert _l0_entries(db) == [3]
        assert [db.get(k) for k in (b"k0", b"k1", b"k2")] == [None, b"v298", b"v299"]


class _VersionsPausedOnce:
    """An engine's ``versions`` whose first read of ``last_seq`` on the
    current thread runs ``between`` (in another thread, to its end) after
    reading the value and before returning it: what may happen between a
    reader's two reads of the sequence number and the super version."""

    def __init__(self, real, between):
        self.__dict__.update(_real=real, _between=between, _thread=threading.get_ident(), _done=False)

    @property
    def last_seq(self):
        value = self._real.last_seq
        if threading.get_ident() == self._thread and not self._done:
            self.__dict__["_done"] = True
            helper = threading.Thread(target=self._between)
            helper.start()
            helper.join()
        return value

    @last_seq.setter
    def last_seq(self, value):
        self._real.last_seq = value

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_a_get_racing_a_flush_sees_the_version_of_its_start(tmp_path, io_method):
    """A get at the current state that reads its sequence number, then a
    flush installs a table without the versions below the newest, then the
    get reads the super version: it must still find the version its
    sequence number sees (the super version is read first)."""
    with open_db(tmp_path / "db", io_method, **NO_COMPACTION) as db:
        db.put(b"k", b"old")
        engine = db._engine

        def overwrite_and_flush():
            db.put(b"k", b"new")
            db.flush()

        real = engine.versions
        engine.versions = _VersionsPausedOnce(real, overwrite_and_flush)
        try:
            assert db.get(b"k") == b"old"
            assert engine.versions._done
            assert _l0_entries(db) == [1]
        finally:
            engine.versions = real
        assert db.get(b"k") == b"new"
