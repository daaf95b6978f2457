"""Background WAL syncs: after WAL_BYTES_PER_SYNC bytes appended, the
background pool fdatasyncs the WAL (so a memtable switch's own sync finds
little to write); a failed one is the background error."""
from __future__ import annotations

import errno
import threading

import pytest

import hedge
from hedge.io import faults, ops
from hedge.lsm import engine as engine_module
from hedge.lsm.engine import WAL_BYTES_PER_SYNC
from tests.db.helpers import open_db

pytestmark = pytest.mark.timeout(120)

VALUE = b"v" * 1000


def fill_past_the_threshold(db) -> None:
    """Put a little more than WAL_BYTES_PER_SYNC; stop early when writes
    are refused (the background sync failed)."""
    for i in range(WAL_BYTES_PER_SYNC // len(VALUE) + 10):
        try:
            db.put(b"k%06d" % i, VALUE)
        except hedge.BackgroundError:
            return


def test_the_background_pool_syncs_the_wal_every_wal_bytes_per_sync(tmp_path, io_method, monkeypatch):
    synced = threading.Event()
    calls = []
    real = ops.fdatasync

    async def fdatasync(file):
        await real(file)
        calls.append((threading.current_thread().name, file.path))
        if file.path.endswith(".wal"):
            synced.set()

    monkeypatch.setattr(ops, "fdatasync", fdatasync)
    with open_db(tmp_path / "db", io_method) as db:
        db.put(b"first", VALUE)
        assert not synced.is_set()                      # under the threshold: no sync of the WAL
        fill_past_the_threshold(db)
        assert synced.wait(60)
        name, path = next(c for c in calls if c[1].endswith(".wal"))
        assert name.startswith("hedge-bg")
        wal = db.stats()["wal"]
        assert wal["syncs"] == 0                        # no write asked for one
        assert db.get(b"first") == VALUE


def test_a_failed_background_wal_sync_is_the_background_error(tmp_path, io_method, monkeypatch):
    recorded = threading.Event()
    real = engine_module.Engine.record_background_error

    def record(self, error, what):
        real(self, error, what)
        recorded.set()

    monkeypatch.setattr(engine_module.Engine, "record_background_error", record)
    with open_db(tmp_path / "db", io_method) as db:
        with faults.inject("fdatasync", errno.EIO, path_contains=".wal", times=1):
            fill_past_the_threshold(db)
            assert recorded.wait(60)
        with pytest.raises(hedge.BackgroundError) as info:
            db.put(b"after", b"v")
        assert isinstance(info.value.__cause__, hedge.HedgeIOError)
        assert db.get(b"after") is None
