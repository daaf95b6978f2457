"""Power loss: what a power loss may take from a database directory, with
the recorder of hedge/io/powerloss.py.  One rule each: a recording made in
this process, images built at a quiet moment."""
from __future__ import annotations

import contextlib
import errno
import json
import random

import pytest

import hedge
from hedge.io import faults, powerloss
from tests.db.helpers import LEAN, ChildRun, open_db, run_child


def read_all(path, io_method) -> dict:
    with open_db(path, io_method) as db:
        return dict(db.scan())


@contextlib.contextmanager
def recorded(path, tmp_path, monkeypatch=None):
    """Record the database directory ``path`` in this process (and, with
    ``monkeypatch``, in the compaction worker it starts); yield the log."""
    settings = powerloss.begin(str(tmp_path / "rec.log"), [str(path)])
    if monkeypatch is not None:
        monkeypatch.setenv(*powerloss.env(settings).popitem())
    powerloss.arm(settings["log"], settings["shadow"], settings["dirs"])
    try:
        yield settings["log"]
    finally:
        powerloss.disarm()


def strict_images(log: str, path, tmp_path, seeds, keep: float = 0.0):
    """Strict images of ``path`` (their name operations not made durable
    kept with probability ``keep``), one per seed."""
    recording = powerloss.Recording.load(log)
    for seed in seeds:
        yield recording.image(str(path), str(tmp_path / f"strict-{keep}-{seed}"), "strict",
                              random.Random(seed), keep=keep)


def test_sync_write_after_a_memtable_switch_keeps_the_earlier_writes(io_method, tmp_path):
    """Finding 2: a memtable switch closed the old WAL without fdatasync, so
    a later sync=True write in the new WAL could survive a power loss that
    took the earlier sync=False writes."""
    path = tmp_path / "db"
    open_db(path, io_method).close()
    expected = {}
    with recorded(path, tmp_path) as log:
        db = open_db(path, io_method, memtable_bytes=4096)
        try:
            # No flush may rescue the old memtable: only the WALs hold the writes.
            with faults.inject("open", errno.EIO, path_contains=".sst", times=None):
                while db.stats()["memtable_bytes"] < 4096:     # then the next write switches memtables
                    key = b"k%03d" % len(expected)
                    db.put(key, b"v" * 200)
                    expected[key] = b"v" * 200
                db.put(b"last", b"sync", sync=True)
                expected[b"last"] = b"sync"
                with pytest.raises(hedge.BackgroundError):
                    db.flush()
        finally:
            powerloss.disarm()
            db.close()
    for image in strict_images(log, path, tmp_path, range(4)):
        assert read_all(image.path, io_method) == expected, image.describe()


def fill(db, count: int) -> dict:
    """``count`` puts in two interleaved passes over the keys, so that tables
    overlap and compactions merge (no trivial moves only)."""
    expected = {}
    order = list(range(0, count, 2)) + list(range(1, count, 2))
    for n, i in enumerate(order):
        key, value = b"k%05d" % (i % (count // 2)), b"%d" % n * 20
        db.put(key, value)
        expected[key] = value
    return expected


def test_flushed_table_is_durable_before_its_edit_and_wal_removal(io_method, tmp_path):
    """Finding 3: flush made the edit naming a new table durable and removed
    the WAL without fsyncing the directory: under POSIX the table's name
    could be lost ("a table listed in the manifest is missing")."""
    path = tmp_path / "db"
    open_db(path, io_method).close()
    with recorded(path, tmp_path) as log:
        with open_db(path, io_method) as db:
            expected = fill(db, 300)
            db.flush()
            db.compact()             # returns once maintenance is idle: the WAL is removed
            powerloss.disarm()
    for image in strict_images(log, path, tmp_path, range(3)):
        assert read_all(image.path, io_method) == expected, image.describe()


def test_compaction_outputs_are_durable_before_their_edit(io_method, tmp_path):
    path = tmp_path / "db"
    small = dict(memtable_bytes=4096, l0_compaction_trigger=2, table_bytes=8192, level1_bytes=16384)
    open_db(path, io_method).close()
    with recorded(path, tmp_path) as log:
        with open_db(path, io_method, **small) as db:
            expected = fill(db, 400)
            db.compact()
            assert db.stats()["compaction"]["count"] > 0
            powerloss.disarm()
    for image in strict_images(log, path, tmp_path, range(3)):
        assert read_all(image.path, io_method) == expected, image.describe()


def test_compaction_worker_outputs_are_durable_before_their_edit(tmp_path, monkeypatch):
    path = tmp_path / "db"
    small = dict(memtable_bytes=4096, l0_compaction_trigger=2, table_bytes=8192, level1_bytes=16384,
                 compaction_process=True)
    open_db(path, "threads").close()
    with recorded(path, tmp_path, monkeypatch) as log:
        with open_db(path, "threads", **small) as db:
            expected = fill(db, 400)
            db.compact()
            stats = db.stats()["compaction"]
            assert stats["count"] > 0 and stats["worker_pid"] is not None
            powerloss.disarm()
    recording = powerloss.Recording.load(log)
    assert len(recording.pids) == 2          # this process and the worker recorded
    for image in strict_images(log, path, tmp_path, range(3)):
        assert read_all(image.path, "threads") == expected, image.describe()


def test_every_name_of_a_new_manifest_is_durable_before_current_switches(io_method, tmp_path):
    """Open recovers the WAL into a table, starts a WAL and installs a
    manifest naming both.  Killed right after CURRENT's rename (before the
    directory fsync that follows), no strict image may keep the rename and
    lose a name the new manifest relies on."""
    path = tmp_path / "db"
    writes = [{"ops": [["p", "k%03d" % i, "v%d" % i]], "batch": False, "sync": False} for i in range(50)]
    assert run_child("write", str(path), io_method, json.dumps(LEAN), json.dumps(writes)) == "D\n"
    expected = {b"k%03d" % i: b"v%d" % i for i in range(50)}
    settings = powerloss.begin(str(tmp_path / "rec.log"), [str(path)])
    child = ChildRun("hold", str(path), io_method, json.dumps(LEAN),
                     env=powerloss.env(settings, {"op": "rename", "count": 1}))
    child.kill(timeout=60)
    recording = powerloss.Recording.load(settings["log"])
    assert recording.kill_point is not None and recording.kill_point[2] == "rename"
    assert "R" not in child.lines
    images = list(strict_images(settings["log"], path, tmp_path, range(12), keep=0.5))
    renamed = [all(ev[0] != "rename" for ev in image.undone) for image in images]
    assert any(renamed) and not all(renamed)
    for image in images:
        assert read_all(image.path, io_method) == expected, image.describe()
