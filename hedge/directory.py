"""A database directory as a whole: which of its files are hedge's, and
``destroy``, which deletes them.

Hedge's files are the names hedge/lsm/filenames.py lists: LOCK, CURRENT,
MANIFEST-NNNNNN, NNNNNN.wal, NNNNNN.sst, and any of those with ``.tmp``
appended (a file being installed).  Nothing else in a directory is ever
touched.  Plain blocking calls; any thread.
"""
from __future__ import annotations

import errno
import os

from hedge.db import _lock_directory
from hedge.errors import HedgeError, HedgeIOError
from hedge.lsm import filenames

_TMP = ".tmp"


def is_database_file(name: str) -> bool:
    """Whether ``name`` is a file name hedge creates in a database directory."""
    if name.endswith(_TMP):
        name = name[: -len(_TMP)]
    return name in (filenames.LOCK, filenames.CURRENT) or filenames.parse(name) is not None


def database_files(directory: str) -> list[str]:
    """Hedge's file names in ``directory``.  Raises HedgeError when it does
    not exist or is not a directory, HedgeIOError when it cannot be listed."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        raise HedgeError(f"no database at {directory}: it does not exist") from None
    except NotADirectoryError:
        raise HedgeError(f"no database at {directory}: not a directory") from None
    except OSError as e:
        raise HedgeIOError(e.errno or errno.EIO, "listdir", directory) from None
    return sorted(name for name in names if is_database_file(name))


def destroy(path) -> None:
    """Delete the database in directory ``path``: every file hedge creates
    there (CURRENT first, so a destroy cut short leaves no half database
    that opens), then the directory itself when nothing else is left in it;
    other files and the directory holding them stay.

    Raises LockError while the database is open, in this process or another
    (the LOCK is taken as ``hedge.open`` takes it, and held until the end);
    HedgeError when ``path`` holds no hedge database (no CURRENT, manifest,
    WAL or table: a LOCK alone does not count), and nothing is deleted then;
    HedgeIOError when a file cannot be removed.
    """
    directory = os.fspath(path)
    if not any(name != filenames.LOCK for name in database_files(directory)):
        raise HedgeError(f"no hedge database at {directory} (no CURRENT, manifest, WAL or table file)")
    lock_fd = _lock_directory(directory)
    try:
        names = database_files(directory)
        names.sort(key=lambda n: (n != filenames.CURRENT, n == filenames.LOCK, n))
        for name in names:
            file = filenames.join(directory, name)
            try:
                os.unlink(file)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise HedgeIOError(e.errno or errno.EIO, "unlink", file) from None
    finally:
        os.close(lock_fd)
    try:
        os.rmdir(directory)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise HedgeIOError(e.errno or errno.EIO, "rmdir", directory) from None
