"""Engine regressions, one test each, named for the bug they pin down."""
from __future__ import annotations

import os
import threading

import pytest

import hedge
from hedge.lsm import filenames
from hedge.lsm.engine import Engine
from hedge.lsm.maintenance import Maintenance
from hedge.lsm.table_io import TableWriter
from tests.db.helpers import LEAN, SMALL, SOAK, WatchedLock, sst_files, wal_record_offsets


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
        first_wal = db.stats()["wal"]["number"]
        expected = 0
        for i in range(400):
            batch = hedge.WriteBatch()
            batch.put(b"k%05d" % i, b"v" * (i % 70))
            db.write(batch)
            expected += HEADER_BYTES + batch.byte_size()
        stats = db.stats()
        # ~22 KiB of entries in 4 KiB memtables: at least 5 switches, each
        # to a WAL with a new number.
        assert stats["wal"]["number"] >= first_wal + 5
        assert stats["wal"]["bytes"] == expected


# -- issue 10, finding 4: a background task that dies is an error, not a hang --

@pytest.mark.parametrize("trigger, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("4", TypeError)])
def test_l0_compaction_trigger_below_one_or_not_an_integer_is_refused_at_open(tmp_path, trigger, error):
    """l0_compaction_trigger=0 used to pass validation, then divide by zero
    in the maintenance task (and -1 stopped writes forever)."""
    with pytest.raises(error, match="l0_compaction_trigger"):
        hedge.open(tmp_path / "db", l0_compaction_trigger=trigger, **LEAN)
    assert not (tmp_path / "db").exists()


def test_an_error_that_ends_the_maintenance_task_is_a_background_error_not_a_hang(tmp_path, io_method,
                                                                                  monkeypatch):
    """An exception outside any flush or compaction job (where the division
    by a zero trigger happened) ended the maintenance task silently; flush,
    compact and every stalled writer then waited forever."""
    def broken(self):
        raise ZeroDivisionError("injected into the maintenance task")

    monkeypatch.setattr(Maintenance, "_next_job", broken)
    db = hedge.open(tmp_path / "db", io_method=io_method, **LEAN)
    outcomes = {}
    finished = threading.Event()

    def calls():
        try:
            db.put(b"first", b"v")          # so that flush has a memtable to wait for
        except hedge.BackgroundError:
            pass                            # the task died first
        for name, call in (("flush", db.flush), ("compact", db.compact), ("put", lambda: db.put(b"k", b"v"))):
            try:
                call()
                outcomes[name] = None
            except BaseException as e:  # noqa: BLE001 - checked below
                outcomes[name] = e
        finished.set()

    threading.Thread(target=calls, daemon=True).start()
    try:
        assert finished.wait(timeout=60), f"a call hung after the maintenance task died: {outcomes}"
        for name, error in outcomes.items():
            assert isinstance(error, hedge.BackgroundError), (name, error)
            assert isinstance(error.__cause__, ZeroDivisionError), (name, error.__cause__)
        assert "injected" in db.stats()["background_error"]
    finally:
        db.close()


# -- issue 10, finding 6: close ------------------------------------------------

def test_a_second_close_returns_only_after_the_first_released_the_lock(tmp_path, monkeypatch):
    """A second close() returned while the first was still running, so an
    immediate reopen failed with LockError."""
    path = tmp_path / "db"
    db = hedge.open(path, **LEAN)
    db.put(b"k", b"v")
    entered, release = threading.Event(), threading.Event()
    real_close = Engine.close

    def held_close(engine):
        entered.set()
        release.wait()
        real_close(engine)

    monkeypatch.setattr(Engine, "close", held_close)
    # Set when the second close waits for the first (the fix) or returns.
    second_waits_or_returns = threading.Event()
    db._close_lock = WatchedLock(second_waits_or_returns)
    order = []

    def first():
        db.close()
        order.append("first")

    def second():
        try:
            db.close()
            order.append("second")
            with hedge.open(path, **LEAN) as again:
                order.append(again.get(b"k"))
        except BaseException as e:  # noqa: BLE001 - checked below
            order.append(e)
        finally:
            second_waits_or_returns.set()

    a = threading.Thread(target=first)
    a.start()
    assert entered.wait(timeout=30)
    b = threading.Thread(target=second)
    b.start()
    assert second_waits_or_returns.wait(timeout=30)
    release.set()
    a.join(timeout=60)
    b.join(timeout=60)
    assert order == ["first", "second", b"v"]


def test_closing_during_flushes_and_compactions_leaks_no_descriptor(tmp_path, io_method, monkeypatch):
    """Closing while a flush or compaction was creating a table left the new
    table's write descriptor open (15 per 40 closes on io_uring)."""
    writing = threading.Event()
    real_create = TableWriter.create.__func__

    async def watched_create(cls, *args, **kwargs):
        writing.set()
        return await real_create(cls, *args, **kwargs)

    monkeypatch.setattr(TableWriter, "create", classmethod(watched_create))

    def cycle(i: int) -> None:
        writing.clear()
        db = hedge.open(tmp_path / "db", io_method=io_method, **SMALL)
        try:
            n = 0
            while not writing.is_set() and n < 5000:
                db.put(b"k%05d" % ((n * 7 + i * 13) % 3000), bytes(64))
                n += 1
            assert writing.is_set(), "no table was written"
        finally:
            db.close()              # at once: a flush or compaction is running

    cycle(0)                        # warm-up: lazy imports, caches
    fds = len(os.listdir("/proc/self/fd"))
    for i in range(1, 41):
        cycle(i)
    assert len(os.listdir("/proc/self/fd")) == fds
    with hedge.open(tmp_path / "db", io_method=io_method, **SMALL) as db:
        assert db.stats()["background_error"] is None


# -- issue 10, finding 1: a damaged final manifest record ---------------------

def _two_flushes(path, io_method: str) -> None:
    """The issue's history: two flushes, each acknowledged (and its WAL
    deleted), the second changing every key."""
    with hedge.open(path, io_method=io_method, **LEAN) as db:
        db.put(b"k", b"old", sync=True)
        db.put(b"gone", b"x", sync=True)
        db.flush()
        db.put(b"k", b"new", sync=True)
        db.remove(b"gone", sync=True)
        db.put(b"n", b"1", sync=True)
        db.flush()


def _manifest(path) -> str:
    with open(os.path.join(path, filenames.CURRENT)) as f:
        return os.path.join(path, f.read().strip())


def _check_newest(path, io_method: str) -> None:
    with hedge.open(path, io_method=io_method, **LEAN) as db:
        assert (db.get(b"k"), db.get(b"gone"), db.get(b"n")) == (b"new", None, b"1")


def test_flipped_bit_in_the_last_manifest_record_refuses_to_open_instead_of_rolling_back(tmp_path, io_method):
    """A bit flipped near the end of the manifest passed for a torn tail:
    the database opened with k=old, gone=x, n=None (the WAL of the second
    flush was already deleted, its table removed as an orphan)."""
    path = tmp_path / "db"
    _two_flushes(path, io_method)
    manifest = _manifest(path)
    original = open(manifest, "rb").read()
    last = wal_record_offsets(manifest)[-1]
    offsets = range(last, len(original)) if io_method == "threads" else (len(original) - 3,)
    for at in offsets:                       # a bit of every byte of the last record
        damaged = bytearray(original)
        damaged[at] ^= 1 << (at % 8)
        with open(manifest, "wb") as f:
            f.write(damaged)
        with pytest.raises(hedge.CorruptionError) as info:
            hedge.open(path, io_method=io_method, **LEAN)
        assert info.value.file == manifest, at
    with open(manifest, "wb") as f:
        f.write(original)
    _check_newest(path, io_method)           # refusing changed nothing


def test_cut_last_manifest_record_of_an_acknowledged_flush_refuses_to_open(tmp_path, io_method):
    """A final record cut short (damage that looks like a torn append) whose
    flush had been acknowledged: the WAL it replaced is gone."""
    path = tmp_path / "db"
    _two_flushes(path, io_method)
    manifest = _manifest(path)
    original = open(manifest, "rb").read()
    last = wal_record_offsets(manifest)[-1]
    for keep in (1, 23, 24, len(original) - last - 1):
        with open(manifest, "wb") as f:
            f.write(original[:last + keep])
        with pytest.raises(hedge.CorruptionError, match="acknowledged"):
            hedge.open(path, io_method=io_method, **LEAN)
    with open(manifest, "wb") as f:
        f.write(original)
    _check_newest(path, io_method)


def test_torn_append_after_the_last_manifest_record_is_dropped(tmp_path, io_method):
    """An append torn by a crash (its edit never acknowledged: the WAL the
    state needs is still there) is dropped, cut short or zero-filled."""
    path = tmp_path / "db"
    _two_flushes(path, io_method)
    manifest = _manifest(path)
    original = open(manifest, "rb").read()
    last = wal_record_offsets(manifest)[-1]
    record = original[last:]
    for torn in (record[:len(record) // 2], record[:-8] + bytes(8)):
        with open(manifest, "wb") as f:
            f.write(original + torn)
        _check_newest(path, io_method)
        manifest = _manifest(path)           # each open installs a new manifest
        original = open(manifest, "rb").read()
        last = wal_record_offsets(manifest)[-1]
        record = original[last:]


# -- issue 10, finding 5: unbounded growth ------------------------------------

def test_reopening_with_a_small_wal_again_and_again_keeps_the_table_count_bounded(tmp_path):
    """Each reopen with a non-empty WAL wrote a tiny L0 table that moved
    down trivially and was never merged: 1,500 open/put/close cycles left
    1,503 tables."""
    path = tmp_path / "db"
    cycles = 1500 if SOAK else 200
    for i in range(cycles):
        with hedge.open(path, **LEAN) as db:
            db.put(b"key%06d" % i, b"value %d" % i)
    tables = sst_files(path)
    assert len(tables) <= 16, len(tables)
    with hedge.open(path, **LEAN) as db:
        assert list(db.scan()) == [(b"key%06d" % i, b"value %d" % i) for i in range(cycles)]


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_open_holds_at_most_max_open_files_table_descriptors(tmp_path, io_method):
    """Open held one descriptor per table, without bound (under ulimit -n
    1024 the grown database no longer opened: EMFILE).  With a limit, the
    least recently used table files are closed and reopened on demand."""
    path = tmp_path / "db"
    limit = 4
    opts = dict(SMALL, io_method=io_method, max_open_files=limit)
    model = {}
    with hedge.open(path, **opts) as db:
        for i in range(4000):
            key = b"k%06d" % ((i * 7919) % 4000)
            model[key] = b"%d." % i + bytes(120)
            db.put(key, model[key])
        db.compact()
    tables = len(sst_files(path))
    assert tables > 5 * limit, tables
    with hedge.open(tmp_path / "empty", **opts) as empty:       # the same database without tables
        empty.get(b"k")             # whatever a read from this thread sets up (an executor, a ring)
        list(empty.scan())
        baseline = _fd_count()
    with hedge.open(path, **opts) as db:
        assert _fd_count() <= baseline + limit
        assert [k for k in model if db.get(k) != model[k]] == []
        assert list(db.scan()) == sorted(model.items())
        assert _fd_count() <= baseline + limit
        stats = db.stats()["table_cache"]
        assert stats["tables"] == tables and stats["open_files"] <= limit and stats["reopens"] > 0


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
