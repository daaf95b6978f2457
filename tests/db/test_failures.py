"""Failure paths of the public API, one test per case: bad input, use after
close, a second open, damaged WAL and table files, injected I/O errors, and
bad options.  Each test checks the error *and* that nothing else changed."""
from __future__ import annotations

import errno
import json
import os

import pytest

import hedge
from hedge.io import faults
from tests.db.helpers import (LEAN, flip_byte, open_db, run_child, sst_files, start_child, wal_files,
                              wal_end, wal_record_offsets)

# A hung engine call fails its test instead of the whole run.
pytestmark = pytest.mark.timeout(120)

ONE = "threads"   # the I/O method for the tests whose subject is not the I/O path

BAD_TYPES = ["key", 1, None, 1.5, ["k"]]


@pytest.fixture
def db(tmp_path):
    d = open_db(tmp_path / "db", ONE)
    d.put(b"a", b"1")
    d.put(b"b", b"2")
    yield d
    d.close()


@pytest.fixture(autouse=True)
def no_faults_left():
    yield
    faults.clear()


def content(db) -> list[tuple[bytes, bytes]]:
    return list(db.scan())


# -- bad input ---------------------------------------------------------------

@pytest.mark.parametrize("bad", BAD_TYPES, ids=repr)
def test_put_with_non_bytes_key_raises_type_error_and_writes_nothing(db, bad):
    before = content(db)
    seq = db.stats()["last_seq"]
    with pytest.raises(TypeError):
        db.put(bad, b"v")
    assert content(db) == before
    assert db.stats()["last_seq"] == seq


@pytest.mark.parametrize("bad", BAD_TYPES, ids=repr)
def test_put_with_non_bytes_value_raises_type_error_and_writes_nothing(db, bad):
    before = content(db)
    with pytest.raises(TypeError):
        db.put(b"a", bad)
    with pytest.raises(TypeError):
        db.put(b"new", bad)
    assert content(db) == before


@pytest.mark.parametrize("bad", BAD_TYPES, ids=repr)
def test_get_remove_multi_get_with_non_bytes_key_raise_type_error(db, bad):
    before = content(db)
    with pytest.raises(TypeError):
        db.get(bad)
    with pytest.raises(TypeError):
        db.remove(bad)
    with pytest.raises(TypeError):
        db.multi_get([b"a", bad])
    assert content(db) == before


@pytest.mark.parametrize("bad", BAD_TYPES, ids=repr)
def test_batch_with_non_bytes_key_raises_type_error_and_batch_is_unchanged(db, bad):
    batch = hedge.WriteBatch()
    batch.put(b"c", b"3")
    with pytest.raises(TypeError):
        batch.put(bad, b"v")
    with pytest.raises(TypeError):
        batch.remove(bad)
    with pytest.raises(TypeError):
        batch.put(b"d", bad)
    assert len(batch) == 1
    db.write(batch)
    assert content(db) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]


@pytest.mark.parametrize("bad", ["k", 3, 1.5], ids=repr)
def test_scan_with_non_bytes_bound_raises_type_error(db, bad):
    with pytest.raises(TypeError):
        list(db.scan(bad, b"z"))
    with pytest.raises(TypeError):
        list(db.scan(b"a", bad))


def test_write_of_a_non_batch_raises_type_error(db):
    before = content(db)
    with pytest.raises(TypeError):
        db.write([("put", b"x", b"y")])
    assert content(db) == before


def test_oversize_key_raises_value_error_and_writes_nothing(db):
    before = content(db)
    key = b"k" * (64 * 1024 + 1)
    with pytest.raises(ValueError):
        db.put(key, b"v")
    with pytest.raises(ValueError):
        db.remove(key)
    with pytest.raises(ValueError):
        db.get(key)
    with pytest.raises(ValueError):
        hedge.WriteBatch().put(key, b"v")
    assert content(db) == before


def test_oversize_value_raises_value_error_and_writes_nothing(db):
    before = content(db)
    value = bytes(64 * 1024 * 1024 + 1)
    with pytest.raises(ValueError):
        db.put(b"a", value)
    with pytest.raises(ValueError):
        db.put(b"big", value)
    batch = hedge.WriteBatch()
    with pytest.raises(ValueError):
        batch.put(b"big", value)
    assert len(batch) == 0
    assert content(db) == before


def test_errors_derive_from_hedge_error():
    for exc in (hedge.ClosedError, hedge.LockError, hedge.CorruptionError, hedge.HedgeIOError,
                hedge.BackgroundError):
        assert issubclass(exc, hedge.HedgeError)


# -- use after close -----------------------------------------------------------

CLOSED_CALLS = ["put", "put_sync", "get", "remove", "scan", "scan_bounded", "multi_get", "write", "flush",
                "compact", "stats"]


def _calls(db):
    batch = hedge.WriteBatch()
    batch.put(b"x", b"y")
    return {
        "put": lambda: db.put(b"k", b"v"),
        "put_sync": lambda: db.put(b"k", b"v", sync=True),
        "get": lambda: db.get(b"a"),
        "remove": lambda: db.remove(b"a"),
        "scan": lambda: db.scan(),                 # the call itself, not only the iteration
        "scan_bounded": lambda: db.scan(b"a", b"z"),
        "multi_get": lambda: db.multi_get([b"a"]),
        "write": lambda: db.write(batch),
        "flush": lambda: db.flush(),
        "compact": lambda: db.compact(),
        "stats": lambda: db.stats(),
    }


@pytest.mark.parametrize("method", CLOSED_CALLS)
def test_every_call_after_close_raises_closed_error(tmp_path, method):
    db = open_db(tmp_path / "db", ONE)
    db.put(b"a", b"1")
    db.close()
    calls = _calls(db)
    assert sorted(calls) == sorted(CLOSED_CALLS)
    with pytest.raises(hedge.ClosedError):
        calls[method]()
    db.close()                    # idempotent


def test_run_after_close_raises_closed_error(tmp_path):
    db = open_db(tmp_path / "db", ONE)
    db.close()

    async def job():
        return await db.aio.get(b"a")

    coro = job()
    try:
        with pytest.raises(hedge.ClosedError):
            db.run(coro)
    finally:
        coro.close()


def test_close_is_idempotent_and_reopen_sees_the_data(tmp_path):
    db = open_db(tmp_path / "db", ONE)
    db.put(b"a", b"1")
    db.close()
    db.close()
    with open_db(tmp_path / "db", ONE) as again:
        assert again.get(b"a") == b"1"


# -- second open ---------------------------------------------------------------

def test_second_open_in_the_same_process_raises_lock_error(tmp_path):
    path = tmp_path / "db"
    db = open_db(path, ONE)
    db.put(b"a", b"1")
    with pytest.raises(hedge.LockError):
        open_db(path, ONE)
    # The first handle is unharmed, and the lock goes with close().
    db.put(b"b", b"2")
    assert db.get(b"a") == b"1"
    db.close()
    with open_db(path, ONE) as again:
        assert list(again.scan()) == [(b"a", b"1"), (b"b", b"2")]


def test_second_open_from_another_process_raises_lock_error(tmp_path):
    path = str(tmp_path / "db")
    child = start_child("hold", path, ONE, json.dumps(LEAN))
    try:
        assert child.stdout.readline() == b"R\n", child.stderr.read().decode()
        with pytest.raises(hedge.LockError):
            open_db(path, ONE)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()


# -- damaged WAL -----------------------------------------------------------------

def _write_in_child(path: str, io_method: str, puts: list[tuple[bytes, bytes]], sync: bool = True) -> None:
    """Write ``puts`` one by one in a child that exits without close() (so
    nothing but the WAL holds them)."""
    writes = [{"ops": [["p", k.decode("latin-1"), v.decode("latin-1")]], "batch": False, "sync": sync}
              for k, v in puts]
    assert run_child("write", path, io_method, json.dumps(LEAN), json.dumps(writes)) == "D\n"


PUTS = [(b"k%02d" % i, b"value-%02d-" % i + b"x" * 40) for i in range(12)]


def test_torn_final_wal_record_is_dropped_on_reopen(io_method, tmp_path):
    path = str(tmp_path / "db")
    _write_in_child(path, io_method, PUTS)
    wal = wal_files(path)[-1]
    os.truncate(wal, wal_end(wal) - 3)
    with open_db(path, io_method) as db:
        assert list(db.scan()) == PUTS[:-1]
        assert db.get(PUTS[-1][0]) is None


def test_torn_final_wal_record_then_new_writes_survive_two_reopens(io_method, tmp_path):
    path = str(tmp_path / "db")
    _write_in_child(path, io_method, PUTS)
    wal = wal_files(path)[-1]
    os.truncate(wal, wal_end(wal) - 3)
    more = [(b"m%02d" % i, b"after-%02d" % i) for i in range(5)]
    _write_in_child(path, io_method, more)          # recovers, then writes on
    _write_in_child(path, io_method, [])            # recovers again
    with open_db(path, io_method) as db:
        assert list(db.scan()) == sorted(PUTS[:-1] + more)


def test_torn_final_wal_record_is_refused_in_absolute_mode(io_method, tmp_path):
    path = str(tmp_path / "db")
    _write_in_child(path, io_method, PUTS)
    wal = wal_files(path)[-1]
    os.truncate(wal, wal_end(wal) - 3)
    with pytest.raises(hedge.CorruptionError) as info:
        open_db(path, io_method, wal_recovery="absolute")
    assert os.path.basename(info.value.file or "") == os.path.basename(wal)


def _damage_middle_of_wal(path: str, io_method: str) -> tuple[str, int, int]:
    """Write PUTS, flip a byte inside record 5 of the newest WAL; return
    (wal path, offset of record 5, index of the first lost put)."""
    _write_in_child(path, io_method, PUTS)
    wal = wal_files(path)[-1]
    offsets = wal_record_offsets(wal)
    assert len(offsets) >= len(PUTS), f"expected one WAL record per put, found {len(offsets)}"
    damaged = 5
    # The record of put #5: flip a byte of its payload (past the 24-byte header).
    record = offsets[-len(PUTS) + damaged]
    flip_byte(wal, record + 24 + 14)
    return wal, record, damaged


def test_flipped_byte_in_the_middle_of_the_wal_raises_corruption_error_naming_file_and_offset(io_method, tmp_path):
    path = str(tmp_path / "db")
    wal, record, _ = _damage_middle_of_wal(path, io_method)
    with pytest.raises(hedge.CorruptionError) as info:
        open_db(path, io_method)
    assert os.path.basename(info.value.file or "") == os.path.basename(wal)
    assert info.value.offset == record
    # The refused open left the lock free and the files as they were.
    with pytest.raises(hedge.CorruptionError):
        open_db(path, io_method)


def test_point_in_time_recovery_opens_with_the_records_before_the_damage(io_method, tmp_path):
    path = str(tmp_path / "db")
    _, _, damaged = _damage_middle_of_wal(path, io_method)
    with open_db(path, io_method, wal_recovery="point_in_time") as db:
        assert list(db.scan()) == PUTS[:damaged]
        db.put(b"later", b"1", sync=True)
    # Writes after a point-in-time recovery survive the next (default) open.
    with open_db(path, io_method) as db:
        assert list(db.scan()) == sorted(PUTS[:damaged] + [(b"later", b"1")])


# -- damaged table -------------------------------------------------------------

def test_flipped_byte_in_a_table_data_block_raises_corruption_error_not_wrong_data(io_method, tmp_path):
    path = str(tmp_path / "db")
    rows = [(b"r%04d" % i, b"%04d" % i * 25) for i in range(200)]
    with open_db(path, io_method) as db:
        for k, v in rows:
            db.put(k, v)
        db.flush()
        assert db.stats()["levels"][0]["files"] + sum(lv["files"] for lv in db.stats()["levels"][1:]) == 1
    (sst,) = sst_files(path)
    flip_byte(sst, 40)             # inside the first entry of data block 0 (offset 0, one page)
    with open_db(path, io_method) as db:
        with pytest.raises(hedge.CorruptionError) as info:
            db.get(rows[0][0])
        assert os.path.basename(info.value.file or "") == os.path.basename(sst)
        assert info.value.offset == 0
        with pytest.raises(hedge.CorruptionError):
            list(db.scan())
        with pytest.raises(hedge.CorruptionError):
            db.multi_get([rows[0][0]])
        # Every key answers right or raises; never a wrong value.
        for k, v in rows:
            try:
                got = db.get(k)
            except hedge.CorruptionError:
                continue
            assert got == v
        assert db.get(rows[-1][0]) == rows[-1][1]      # a block elsewhere is fine


# -- injected I/O failures -------------------------------------------------------

def test_failed_table_sync_during_flush_is_a_background_error_until_reopen(io_method, tmp_path):
    path = str(tmp_path / "db")
    db = open_db(path, io_method)
    acked = [(b"a%02d" % i, b"v%02d" % i) for i in range(20)]
    for k, v in acked:
        db.put(k, v, sync=True)
    with faults.inject("fdatasync", errno.EIO, path_contains=".sst", times=None), \
            faults.inject("fsync", errno.EIO, path_contains=".sst", times=None):
        with pytest.raises((hedge.HedgeIOError, hedge.BackgroundError)):
            db.flush()
    error = db.stats()["background_error"]
    assert isinstance(error, str) and error
    with pytest.raises(hedge.BackgroundError):
        db.put(b"refused", b"x")
    with pytest.raises(hedge.BackgroundError):
        db.remove(b"a00")
    batch = hedge.WriteBatch()
    batch.put(b"refused2", b"x")
    with pytest.raises(hedge.BackgroundError):
        db.write(batch, sync=True)
    with pytest.raises(hedge.BackgroundError):
        db.flush()
    # Reads keep working and see every acknowledged write, none refused.
    assert list(db.scan()) == acked
    assert db.get(b"refused") is None
    db.close()                      # closing after a background error works and frees the lock
    with open_db(path, io_method) as db:
        assert list(db.scan()) == acked
        assert db.stats()["background_error"] is None
        db.put(b"after", b"ok")
        db.flush()
        assert db.get(b"after") == b"ok"


def test_failed_wal_sync_fails_that_put_and_every_later_write(io_method, tmp_path):
    path = str(tmp_path / "db")
    db = open_db(path, io_method)
    db.put(b"before", b"1", sync=True)
    with faults.inject("fdatasync", errno.EIO, path_contains=".wal", times=1), \
            faults.inject("fsync", errno.EIO, path_contains=".wal", times=1):
        with pytest.raises(hedge.HedgeIOError) as info:
            db.put(b"failed", b"x", sync=True)
    assert info.value.errno == errno.EIO
    # Not retried and reported as success later: every write now fails.
    with pytest.raises(hedge.BackgroundError):
        db.put(b"next", b"y", sync=True)
    with pytest.raises(hedge.BackgroundError):
        db.put(b"next", b"y")
    with pytest.raises(hedge.BackgroundError):
        db.remove(b"before", sync=True)
    assert db.stats()["background_error"]
    assert db.get(b"before") == b"1"
    assert db.get(b"next") is None
    db.close()
    with open_db(path, io_method) as db:
        assert db.get(b"before") == b"1"
        assert db.get(b"next") is None       # refused writes never happened
        db.put(b"next", b"z", sync=True)
        assert db.get(b"next") == b"z"


def test_failed_wal_sync_in_a_group_commit_fails_every_writer_of_the_group(tmp_path):
    db = open_db(tmp_path / "db", "io_uring" if "io_uring" in _methods() else "threads")
    try:
        with faults.inject("fdatasync", errno.EIO, path_contains=".wal", times=1), \
                faults.inject("fsync", errno.EIO, path_contains=".wal", times=1):
            async def one(i):
                try:
                    await db.aio.put(b"g%02d" % i, b"v", sync=True)
                    return "ok"
                except hedge.HedgeError as e:
                    return type(e).__name__

            async def many():
                return await hedge.gather(*(one(i) for i in range(16)))

            results = db.run(many())
        # Writers acknowledged before the failed sync may be "ok"; none after it.
        assert any(r != "ok" for r in results), results
        first_fail = next(i for i, r in enumerate(results) if r != "ok")
        assert all(r != "ok" for r in results[first_fail:]), results
        assert set(results) <= {"ok", "HedgeIOError", "BackgroundError"}
    finally:
        try:
            db.close()
        except hedge.HedgeError:
            pass


def _methods():
    from hedge.io.backend import available_methods
    return available_methods()


# -- open and options --------------------------------------------------------------

def test_open_with_create_false_on_a_missing_directory_raises(tmp_path):
    path = tmp_path / "missing"
    with pytest.raises((hedge.HedgeError, FileNotFoundError)):
        hedge.open(str(path), create=False, io_method=ONE, **LEAN)
    assert not path.exists()


def test_open_with_create_false_on_an_empty_directory_raises(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    with pytest.raises((hedge.HedgeError, FileNotFoundError)):
        hedge.open(str(path), create=False, io_method=ONE, **LEAN)


def test_open_with_error_if_exists_on_an_existing_database_raises_and_keeps_it(tmp_path):
    path = tmp_path / "db"
    with open_db(path, ONE) as db:
        db.put(b"a", b"1")
    with pytest.raises((hedge.HedgeError, FileExistsError)):
        open_db(path, ONE, error_if_exists=True)
    with open_db(path, ONE) as db:
        assert db.get(b"a") == b"1"


def test_open_with_error_if_exists_on_a_new_directory_works(tmp_path):
    with open_db(tmp_path / "db", ONE, error_if_exists=True) as db:
        db.put(b"a", b"1")
        assert db.get(b"a") == b"1"


def test_unknown_option_raises_type_error(tmp_path):
    path = tmp_path / "db"
    with pytest.raises(TypeError):
        open_db(path, ONE, memtable_size=1024)
    assert not path.exists()


@pytest.mark.parametrize("option", [
    {"io_method": "carrier-pigeon"}, {"wal_recovery": "best_effort"}, {"memtable_bytes": 0},
    {"block_bytes": -1}, {"level_size_ratio": 1}, {"foreground_threads": 0},
    {"l0_compaction_trigger": 9, "l0_slowdown_trigger": 8},
    {"direct_io": True, "block_cache_bytes": 0},
], ids=lambda o: ",".join(o))
def test_bad_option_value_raises_value_error(tmp_path, option):
    path = tmp_path / "db"
    with pytest.raises(ValueError):
        hedge.open(str(path), create=True, **{**LEAN, "io_method": ONE, **option})
    assert not path.exists()


def test_open_on_a_path_that_is_a_file_raises(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"not a database")
    with pytest.raises((hedge.HedgeError, OSError)):
        open_db(path, ONE)
    assert path.read_bytes() == b"not a database"
