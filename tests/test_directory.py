"""The database directory (hedge/directory.py): paths that cannot hold a
database are HedgeIOError with errno and path (issue 10, finding 9), and
the user's files are never hedge's to remove (finding 8)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

import hedge
from hedge.io import faults
from tests.db.helpers import LEAN, ROOT, child_env


def open_db(path, **options):
    return hedge.open(path, io_method="sync", **{**LEAN, **options})


# -- finding 9: every path problem is a HedgeIOError ------------------------------------

def under_a_file(tmp):
    (tmp / "file").write_bytes(b"x")
    return str(tmp / "file" / "db"), errno.ENOTDIR, str(tmp / "file" / "db")


def empty_path(tmp):
    return "", errno.ENOENT, ""


def name_too_long(tmp):
    path = str(tmp / ("n" * 300))
    return path, errno.ENAMETOOLONG, path


def dangling_symlink(tmp):
    os.symlink(tmp / "missing", tmp / "link")
    return str(tmp / "link"), errno.ENOENT, str(tmp / "link")


def looping_symlink(tmp):
    os.symlink(tmp / "loop", tmp / "loop")
    return str(tmp / "loop"), errno.ELOOP, str(tmp / "loop")


def lock_is_a_directory(tmp):
    os.makedirs(tmp / "db" / "LOCK")
    return str(tmp / "db"), errno.EISDIR, str(tmp / "db" / "LOCK")


def parent_is_a_file(tmp):
    (tmp / "a").write_bytes(b"x")
    return str(tmp / "a" / "b" / "db"), errno.ENOTDIR, str(tmp / "a" / "b" / "db")


CASES = [under_a_file, empty_path, name_too_long, dangling_symlink, looping_symlink, lock_is_a_directory,
         parent_is_a_file]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_a_path_that_cannot_hold_a_database_is_a_hedge_io_error(tmp_path, case):
    path, err, where = case(tmp_path)
    with pytest.raises(hedge.HedgeIOError) as info:
        open_db(path)
    assert type(info.value) is hedge.HedgeIOError
    assert info.value.errno == err, info.value
    assert info.value.path == where
    assert isinstance(info.value, hedge.HedgeError)


@pytest.mark.parametrize("err", [errno.EACCES, errno.EROFS], ids=["unwritable", "read-only"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_an_unwritable_directory_is_a_hedge_io_error(tmp_path, err, existing):
    """Tests run as root, which may write anywhere: the refusal an
    unwritable directory or a read-only mount gives is injected where open
    first writes (creating or opening LOCK)."""
    path = tmp_path / "db"
    if existing:
        open_db(path).close()
    else:
        path.mkdir()
    with faults.inject("open", err, path_contains="LOCK"):
        with pytest.raises(hedge.HedgeIOError) as info:
            open_db(path)
    assert type(info.value) is hedge.HedgeIOError
    assert info.value.errno == err and info.value.path == str(path / "LOCK")
    open_db(path).close()                   # nothing was left behind that stops the next open


def test_a_directory_that_cannot_be_created_is_a_hedge_io_error(tmp_path):
    """mkdir refused (here: a parent that is a dangling symbolic link)."""
    os.symlink(tmp_path / "gone", tmp_path / "parent")
    path = str(tmp_path / "parent" / "db")
    with pytest.raises(hedge.HedgeIOError) as info:
        open_db(path)
    assert type(info.value) is hedge.HedgeIOError and info.value.errno in (errno.ENOENT, errno.EEXIST)
    assert info.value.path == path


def _unshare_available(tmp_path) -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f"mount --bind -o ro {tmp_path} {tmp_path}"], capture_output=True)
    return probe.returncode == 0


def test_a_read_only_mount_is_a_hedge_io_error(tmp_path):
    """A real read-only bind mount, in a mount namespace of the child's own
    (it vanishes with the child)."""
    if not _unshare_available(tmp_path):
        pytest.skip("needs root and unshare --mount to make a read-only bind mount")
    ro = tmp_path / "ro"
    ro.mkdir()
    open_db(ro / "db").close()
    (ro / "empty").mkdir()
    script = f"""
import json, hedge
out = {{}}
for name in ("db", "empty", "new"):
    try:
        hedge.open({str(ro)!r} + "/" + name, io_method="sync", pin=False, foreground_threads=1,
                   background_threads=1).close()
        out[name] = "opened"
    except Exception as e:
        out[name] = [type(e).__name__, getattr(e, "errno", None), getattr(e, "path", None)]
print(json.dumps(out))
"""
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f'mount --bind -o ro "$0" "$0" && exec "$1" -c "$2"', str(ro), sys.executable,
                           script], capture_output=True, env=child_env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out == {"db": ["HedgeIOError", errno.EROFS, str(ro / "db" / "LOCK")],
                   "empty": ["HedgeIOError", errno.EROFS, str(ro / "empty" / "LOCK")],
                   "new": ["HedgeIOError", errno.EROFS, str(ro / "new")]}


# -- finding 8: the user's files ----------------------------------------------------------

def user_files(path) -> dict:
    return {name: (path / name).read_bytes() for name in ("notes.tmp", "draft.sst", "MANIFEST", "x.wal.tmp")}


def plant_user_files(path) -> dict:
    path.mkdir(exist_ok=True)
    for i, name in enumerate(("notes.tmp", "draft.sst", "MANIFEST", "x.wal.tmp")):
        (path / name).write_bytes(b"user %d" % i)
    return user_files(path)


def test_creating_a_database_among_foreign_files_is_refused(tmp_path):
    path = tmp_path / "db"
    before = plant_user_files(path)
    with pytest.raises(hedge.HedgeError, match="allow_foreign_files") as info:
        open_db(path)
    assert "notes.tmp" in str(info.value)
    assert sorted(os.listdir(path)) == sorted(before)           # nothing created, nothing removed
    assert user_files(path) == before


def test_allow_foreign_files_creates_the_database_and_never_removes_them(tmp_path):
    path = tmp_path / "db"
    before = plant_user_files(path)
    with open_db(path, allow_foreign_files=True, memtable_bytes=4096) as db:
        for i in range(300):
            db.put(b"k%04d" % i, b"v" * 50)
        db.compact()
    for _ in range(2):                       # reopens run the orphan cleanup
        with open_db(path) as db:
            assert db.get(b"k0001") == b"v" * 50
    assert user_files(path) == before


def test_foreign_files_in_an_existing_database_are_left_alone(tmp_path):
    path = tmp_path / "db"
    with open_db(path) as db:
        db.put(b"k", b"v")
    before = plant_user_files(path)
    with open_db(path) as db:
        assert db.get(b"k") == b"v"
    assert user_files(path) == before


def test_hedges_own_leftover_current_tmp_is_removed(tmp_path):
    path = tmp_path / "db"
    open_db(path).close()
    (path / "CURRENT.tmp").write_bytes(b"MANIFEST-000099\n")
    open_db(path).close()
    assert not (path / "CURRENT.tmp").exists()


def test_an_empty_existing_directory_takes_a_new_database(tmp_path):
    path = tmp_path / "db"
    path.mkdir()
    with open_db(path) as db:
        db.put(b"k", b"v")
    with open_db(path) as db:
        assert db.get(b"k") == b"v"
