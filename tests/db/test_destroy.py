"""hedge.destroy: deletes a database's files and then its directory, only
hedge's files, never while the database is open anywhere."""
from __future__ import annotations

import json
import os

import pytest

import hedge
from hedge.lsm.filenames import is_hedge_name
from tests.db.helpers import LEAN, SMALL, open_db, start_child


def make_database(path, io_method: str) -> None:
    """A database with tables on several levels, a WAL and a manifest."""
    with open_db(path, io_method, **SMALL) as db:
        for i in range(300):
            db.put(b"k%04d" % i, b"v" * 64)
        db.flush()
        db.put(b"unflushed", b"1")


def test_destroy_removes_the_files_and_the_directory(tmp_path, io_method):
    path = tmp_path / "db"
    make_database(path, io_method)
    names = os.listdir(path)
    assert any(n.endswith(".sst") for n in names) and any(n.endswith(".wal") for n in names)
    hedge.destroy(path)
    assert not path.exists()
    with pytest.raises(hedge.HedgeError, match="no database"):
        hedge.open(str(path), create=False)
    with open_db(path, io_method) as db:
        assert db.get(b"k0001") is None


def test_destroy_keeps_other_files_and_their_directory(tmp_path, io_method):
    path = tmp_path / "db"
    make_database(path, io_method)
    (path / "notes.txt").write_text("mine")
    (path / "backup.tmp").write_text("mine too")
    hedge.destroy(str(path))
    assert sorted(os.listdir(path)) == ["backup.tmp", "notes.txt"]


def test_destroy_refuses_an_open_database(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method) as db:
        db.put(b"k", b"v")
        before = sorted(os.listdir(path))
        with pytest.raises(hedge.LockError):
            hedge.destroy(path)
        assert sorted(os.listdir(path)) == before
        db.put(b"k2", b"v2")
        assert db.get(b"k") == b"v"
    hedge.destroy(path)
    assert not path.exists()


def test_destroy_refuses_a_database_open_in_another_process(tmp_path):
    path = tmp_path / "db"
    child = start_child("hold", str(path), "sync", json.dumps(LEAN))
    try:
        assert child.stdout.readline() == b"R\n", child.stderr.read().decode()
        with pytest.raises(hedge.LockError):
            hedge.destroy(path)
        assert (path / "CURRENT").exists()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
    hedge.destroy(path)
    assert not path.exists()


def test_destroy_refuses_what_is_no_database(tmp_path):
    with pytest.raises(hedge.HedgeError, match="does not exist"):
        hedge.destroy(tmp_path / "missing")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(hedge.HedgeError, match="not a directory"):
        hedge.destroy(a_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(hedge.HedgeError, match="no hedge database"):
        hedge.destroy(empty)
    assert empty.is_dir()
    # A LOCK alone (any program may name a file so) is no database either.
    other = tmp_path / "other"
    other.mkdir()
    (other / "LOCK").write_text("")
    (other / "data.bin").write_text("keep")
    with pytest.raises(hedge.HedgeError, match="no hedge database"):
        hedge.destroy(other)
    assert sorted(os.listdir(other)) == ["LOCK", "data.bin"]


def test_destroy_finishes_a_destroy_cut_short(tmp_path, io_method):
    # CURRENT goes first; what a crash after it leaves is still destroyed.
    path = tmp_path / "db"
    make_database(path, io_method)
    os.unlink(path / "CURRENT")
    hedge.destroy(path)
    assert not path.exists()


@pytest.mark.parametrize("name, ours", [
    ("LOCK", True), ("CURRENT", True), ("CURRENT.tmp", True), ("MANIFEST-000002", True),
    ("000004.wal", True), ("000005.sst", True), ("000005.sst.tmp", False),
    ("notes.tmp", False), ("LOCK2", False), ("table.sst", False), ("000005.sst.bak", False), ("MANIFEST", False),
])
def test_database_file_names(name, ours):
    assert is_hedge_name(name) is ours
