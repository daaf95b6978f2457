"""Flushes in the flush worker process (Options.flush_process): the worker
builds an immutable memtable's table from its WAL, byte for byte the table
the maintenance thread would build; when the worker fails (a WAL that does
not match its memtable, a killed process) the thread flushes the memtable
instead and nothing is lost."""
from __future__ import annotations

import errno
import logging
import os
import random
import signal

from hedge.lsm import maintenance as maintenance_module
from hedge.lsm.compaction.worker import FlushJob
from tests.db.helpers import model_scan, open_db, random_writes

# Small memtables, no compaction: every flush leaves its own L0 table.
FLUSHING = dict(memtable_bytes=8 << 10, l0_compaction_trigger=1000, l0_slowdown_trigger=1000,
                l0_stop_trigger=1000, block_cache_bytes=1 << 20)


def _writes(db, rng: random.Random, model: dict, n: int) -> None:
    """Puts, overwrites, removes and batches (several versions of a key in
    one memtable, tombstones), the same for any database given the same
    ``rng`` state."""
    random_writes(db, rng, model, n, 400, batches=0.1)


def _tables(path) -> dict[str, bytes]:
    """The table files of ``path`` by name."""
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path)) if name.endswith(".sst")}


def test_the_worker_builds_the_tables_the_thread_would(tmp_path, io_method):
    """The same writes with flushes in the worker and in the thread: the
    same table files, byte for byte, and the same reads."""
    tables = {}
    for on in (True, False):
        path = tmp_path / f"db-{on}"
        model: dict = {}
        with open_db(path, io_method, flush_process=on, **FLUSHING) as db:
            _writes(db, random.Random(11), model, 1500)
            db.flush()
            stats = db.stats()["compaction"]
            assert stats["flushes"] >= 5, stats
            assert stats["flush_worker_failures"] == 0
            assert (stats["flush_worker_pid"] is not None) == on
            assert list(db.scan()) == model_scan(model)
        tables[on] = _tables(path)
        with open_db(path, io_method, flush_process=on, **FLUSHING) as db:
            assert list(db.scan()) == model_scan(model)
    # File numbers depend on when each flush ran; the contents may not.
    assert len(tables[True]) >= 5
    assert sorted(tables[True].values()) == sorted(tables[False].values())


def test_a_wal_that_does_not_match_its_memtable_is_flushed_by_the_thread(tmp_path, io_method, monkeypatch, caplog):
    """The worker checks the WAL's writes against the memtable's count and
    newest sequence number; on a mismatch (simulated: the job claims one
    write more) it fails, its output is removed, and the thread flushes the
    memtable: the data is complete, now and after a reopen."""
    def miscounted(**fields):
        fields["entries"] += 1
        return FlushJob(**fields)

    monkeypatch.setattr(maintenance_module, "FlushJob", miscounted)
    path = tmp_path / "db"
    model: dict = {}
    with caplog.at_level(logging.WARNING, logger="hedge"):
        with open_db(path, io_method, flush_process=True, **FLUSHING) as db:
            _writes(db, random.Random(5), model, 600)
            db.flush()
            stats = db.stats()
            assert stats["compaction"]["flushes"] >= 2
            assert stats["compaction"]["flush_worker_failures"] == stats["compaction"]["flushes"]
            assert stats["background_error"] is None
            assert list(db.scan()) == model_scan(model)
    assert "the flush worker failed (HedgeError" in caplog.text and "holds" in caplog.text
    with open_db(path, io_method, **FLUSHING) as db:
        assert list(db.scan()) == model_scan(model)


def test_a_killed_flush_worker_is_replaced(tmp_path, io_method):
    """A flush worker killed between flushes is replaced by a new process at
    the next flush (or, found dead mid-job, leaves that flush to the
    thread); either way every write is kept."""
    path = tmp_path / "db"
    model: dict = {}
    rng = random.Random(3)
    with open_db(path, io_method, flush_process=True, **FLUSHING) as db:
        _writes(db, rng, model, 300)
        db.flush()
        maintenance = db._engine.maintenance
        worker = maintenance._flush_worker
        first_pid = worker.pid
        os.kill(first_pid, signal.SIGKILL)
        worker._proc.wait()
        _writes(db, rng, model, 300)
        db.flush()
        _writes(db, rng, model, 300)
        db.flush()
        stats = db.stats()
        assert stats["background_error"] is None
        assert stats["compaction"]["flush_worker_pid"] not in (None, first_pid)
        assert list(db.scan()) == model_scan(model)
    with open_db(path, io_method, **FLUSHING) as db:
        assert list(db.scan()) == model_scan(model)


# A memtable of 256 KiB and 1 KiB values: a quarter is about 62 puts.
WARMING = dict(memtable_bytes=256 << 10, l0_compaction_trigger=1000, l0_slowdown_trigger=1000,
               l0_stop_trigger=1000)


def _put_range(db, start: int, stop: int) -> None:
    for i in range(start, stop):
        db.put(b"k%05d" % i, bytes([i % 256]) * 1000)


def _settle(db, epoch: int) -> None:
    """Wait for the maintenance loop to go idle after ``epoch`` with
    nothing due."""
    maintenance = db._engine.maintenance
    db.run(db._engine.changed.wait_for(lambda: maintenance.settled_since(epoch)))


def test_the_flush_worker_starts_once_the_first_memtable_is_a_quarter_full(tmp_path, io_method):
    """Started ahead of the first flush, which then uses it."""
    with open_db(tmp_path / "db", io_method, flush_process=True, **WARMING) as db:
        maintenance = db._engine.maintenance
        _put_range(db, 0, 40)                       # under a quarter
        assert maintenance._flush_worker is None and not maintenance._warm_flush
        epoch = maintenance.idle_epoch
        _put_range(db, 40, 80)                      # past a quarter, under a full memtable
        assert maintenance._warm_flush or maintenance._flush_worker is not None    # asked for at the commit
        _settle(db, epoch)
        stats = db.stats()["compaction"]
        pid = stats["flush_worker_pid"]
        assert pid is not None and stats["flushes"] == 0
        _put_range(db, 80, 400)
        db.flush()
        stats = db.stats()["compaction"]
        assert stats["flushes"] >= 1 and stats["flush_worker_failures"] == 0
        assert stats["flush_worker_pid"] == pid
        assert db.get(b"k00399") == bytes([399 % 256]) * 1000


def test_without_the_flush_process_no_worker_starts(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, flush_process=False, **WARMING) as db:
        maintenance = db._engine.maintenance
        _put_range(db, 0, 400)
        db.flush()
        assert maintenance._flush_worker is None and not maintenance._warm_flush
        assert db.stats()["compaction"]["flush_worker_pid"] is None


def test_a_worker_that_cannot_start_early_is_started_by_the_first_flush(tmp_path, io_method, monkeypatch):
    """The early start fails (here: once); writes go on, and the first
    flush starts the worker itself."""
    real = maintenance_module.CompactionWorker
    calls = []

    def failing_once(config):
        calls.append(config)
        if len(calls) == 1:
            raise OSError(errno.EAGAIN, "no process for now")
        return real(config)

    monkeypatch.setattr(maintenance_module, "CompactionWorker", failing_once)
    model = {}
    with open_db(tmp_path / "db", io_method, flush_process=True, **WARMING) as db:
        maintenance = db._engine.maintenance
        epoch = maintenance.idle_epoch
        _put_range(db, 0, 80)
        assert maintenance._warm_flush or calls
        _settle(db, epoch)
        assert len(calls) == 1 and maintenance._flush_worker is None
        _put_range(db, 80, 400)
        db.flush()
        stats = db.stats()
        assert len(calls) == 2
        assert stats["background_error"] is None
        assert stats["compaction"]["flush_worker_failures"] == 0
        assert stats["compaction"]["flush_worker_pid"] is not None
        model = {b"k%05d" % i: bytes([i % 256]) * 1000 for i in range(400)}
        assert list(db.scan()) == model_scan(model)
