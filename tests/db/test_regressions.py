"""Engine regressions, one test each, named for the bug they pin down."""
from __future__ import annotations

import hedge


def test_trivial_move_keeps_the_moved_table_readable(tmp_path, io_method):
    """A trivial move deletes a table from level N and adds the same file to
    level N+1 in one edit; the table must stay open and readable."""
    small = dict(memtable_bytes=4096, table_bytes=8192, level1_bytes=16384,
                 l0_compaction_trigger=2, io_method=io_method)
    with hedge.open(tmp_path / "db", **small) as db:
        expected = {}
        for i in range(600):            # keys in order: flushes never overlap
            key, value = b"key%06d" % i, b"v%d" % i
            db.put(key, value)
            expected[key] = value
            if i % 60 == 59:
                db.flush()
        db.compact()
        stats = db.stats()
        assert stats["compaction"]["trivial_moves"] > 0
        assert sum(level["files"] for level in stats["levels"][1:]) > 0
        assert [k for k in expected if db.get(k) != expected[k]] == []
        assert list(db.scan()) == sorted(expected.items())
    with hedge.open(tmp_path / "db", io_method=io_method) as db:
        assert [k for k in expected if db.get(k) != expected[k]] == []


def test_memtable_switch_during_flush_loses_no_table(tmp_path, io_method):
    """The commit leader switching memtables while the maintenance task
    installs a flushed table must not drop either change (both build on the
    current super version)."""
    with hedge.open(tmp_path / "db", memtable_bytes=2048, io_method=io_method) as db:
        expected = {}

        async def writer(w):
            for i in range(300):
                key = b"w%02d-%05d" % (w, i)
                await db.aio.put(key, key * 3)
                expected[key] = key * 3

        db.run(hedge.gather(*(writer(w) for w in range(16))))
        db.flush()
        assert [k for k in expected if db.get(k) != expected[k]] == []
        assert db.stats()["background_error"] is None


def test_compact_on_an_idle_database_returns(tmp_path, io_method):
    """compact() must not miss the maintenance task going idle (a flag set
    after the notify could overwrite the task's 'idle' and wait forever)."""
    import threading

    with hedge.open(tmp_path / "db", io_method=io_method) as db:
        db.put(b"k", b"v")
        finished = threading.Event()

        def many_compactions():
            for _ in range(300):
                db.compact()
            finished.set()

        worker = threading.Thread(target=many_compactions, daemon=True)
        worker.start()
        assert finished.wait(timeout=60), "compact() hung"
        assert db.get(b"k") == b"v"


def test_wal_byte_counter_survives_memtable_switches(tmp_path, io_method):
    """stats()["wal"]["bytes"] (the base of write amplification) counts every
    record written, across WAL files."""
    from hedge.lsm.wal.format import HEADER_BYTES

    with hedge.open(tmp_path / "db", memtable_bytes=4096, io_method=io_method) as db:
        expected = 0
        for i in range(400):
            batch = hedge.WriteBatch()
            batch.put(b"k%05d" % i, b"v" * (i % 70))
            db.write(batch)
            expected += HEADER_BYTES + batch.byte_size()
        stats = db.stats()
        assert stats["wal"]["number"] > 10          # many memtable switches happened
        assert stats["wal"]["bytes"] == expected


def test_batch_over_the_write_limit_is_a_value_error_and_writes_nothing(tmp_path, io_method, monkeypatch):
    """Issue 10, finding 7: a batch too large for one WAL record failed in
    the group-commit leader and became a background error that refused every
    later write; it is a ValueError at write(), before anything is written."""
    import pytest

    from hedge.lsm import batch as batch_module

    monkeypatch.setattr(batch_module, "MAX_BATCH_BYTES", 64 << 10)
    with hedge.open(tmp_path / "db", io_method=io_method) as db:
        big = hedge.WriteBatch()
        for i in range(100):
            big.put(b"big%03d" % i, b"x" * 1000)
        wal_bytes = db.stats()["wal"]["bytes"]
        with pytest.raises(ValueError, match="at most 65536"):
            db.write(big, sync=True)
        with pytest.raises(ValueError, match="at most 65536"):
            db.run(db.aio.write(big))
        assert db.stats()["wal"]["bytes"] == wal_bytes
        assert db.get(b"big000") is None and db.stats()["background_error"] is None
        db.put(b"after", b"ok", sync=True)              # the database still takes writes
        assert db.get(b"after") == b"ok"
