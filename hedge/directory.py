"""A database directory as a whole: check it (or create it) before the
engine opens it, refuse to create a database among the user's files, lock
it, list hedge's files in it, and ``destroy`` a database.

Every failing system call here becomes a HedgeIOError carrying the errno,
the operation and the path, never a bare OSError: a path under a file, an
empty path, a name too long, a dangling or looping symbolic link, LOCK
being a directory, an unwritable directory, a read-only file system.

Hedge never removes a file it did not name (hedge/lsm/filenames.py), and
creates a database in a directory holding other files only when
``allow_foreign_files`` says so: a wrong path must not mix a database into
the user's files.

Plain blocking calls, on the caller's thread (``hedge.open`` calls
``prepare`` and ``lock`` before any pool starts).
"""
from __future__ import annotations

import errno
import fcntl
import os

from hedge.errors import HedgeError, HedgeIOError, LockError
from hedge.io.file import File
from hedge.lsm import filenames


def _io_error(e: OSError, op: str, path: str, detail: str | None = None) -> HedgeIOError:
    return HedgeIOError(e.errno or errno.EIO, op, path, detail)


def prepare(directory: str, options) -> None:
    """Check that ``directory`` can hold the database ``options`` ask for;
    create it (and its parents) when missing and ``options.create``.
    Raises HedgeIOError for a path that cannot be a directory or a failing
    system call, HedgeError for a missing database (create=False), an
    existing one (error_if_exists) or a new one among foreign files."""
    if directory == "":
        raise HedgeIOError(errno.ENOENT, "open", directory, "the database path is empty")
    try:
        names = os.listdir(directory)
    except FileNotFoundError as e:
        if os.path.islink(directory):
            raise _io_error(e, "open", directory, "a symbolic link to a missing target") from None
        if options.read_only:
            raise HedgeError(f"no database at {directory} (read_only=True opens an existing one)") from None
        if not options.create:
            raise HedgeError(f"no database at {directory} (open with create=True to make one)") from None
        _make_directory(directory)
        return
    except OSError as e:
        detail = "not a directory" if e.errno == errno.ENOTDIR else None
        raise _io_error(e, "open", directory, detail) from None
    exists = filenames.CURRENT in names
    if exists and options.error_if_exists:
        raise HedgeError(f"a database already exists at {directory} (error_if_exists=True)")
    if not exists and options.read_only:
        raise HedgeError(f"no database at {directory} (read_only=True opens an existing one)")
    if not exists and not options.create:
        raise HedgeError(f"no database at {directory} (open with create=True to make one)")
    if not exists and not options.allow_foreign_files:
        foreign = sorted(n for n in names if not filenames.is_hedge_name(n))
        if foreign and not any(filenames.parse(n) for n in names):
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise HedgeError(f"refusing to create a database in {directory}: it holds {len(foreign)} "
                             f"file(s) that are not hedge's ({shown}); use an empty or new directory, "
                             "or pass allow_foreign_files=True")


def _make_directory(directory: str) -> None:
    """Create ``directory`` and fsync its parent, so a power loss cannot
    take the new database's name."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise _io_error(e, "mkdir", directory) from None
    parent = os.path.dirname(os.path.abspath(directory))
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise _io_error(e, "fsync", parent) from None


def lock(directory: str, shared: bool = False) -> File:
    """Take the database's lock: flock on LOCK (created when missing), held
    as long as the returned File is open.  Exclusive for a writer; shared
    (``shared=True``) for a read-only open, which any number of handles
    may hold at once while no writer holds it (LOCK is then opened for
    reading only, and made only when it can be).  Raises LockError when a
    handle holds it in a conflicting mode, HedgeIOError when LOCK cannot be
    opened or locked."""
    path = filenames.join(directory, filenames.LOCK)
    if shared:
        try:
            file = File.open(path, os.O_RDONLY | os.O_CREAT)
        except HedgeIOError:
            file = File.open(path, os.O_RDONLY)     # a read-only file system: LOCK must be there
    else:
        file = File.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(file.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        if shared:
            raise LockError(f"the database at {directory} is open for writing (by this or another process); "
                            "a read-only open waits until it is closed") from None
        raise LockError(f"the database at {directory} is already open (by this or another process)") from None
    except OSError as e:
        file.close()
        raise _io_error(e, "flock", path) from None
    return file


def database_files(directory: str) -> list[str]:
    """Hedge's file names in ``directory`` (filenames.is_hedge_name).
    Raises HedgeError when it does not exist or is not a directory,
    HedgeIOError when it cannot be listed."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        raise HedgeError(f"no database at {directory}: it does not exist") from None
    except NotADirectoryError:
        raise HedgeError(f"no database at {directory}: not a directory") from None
    except OSError as e:
        raise _io_error(e, "listdir", directory) from None
    return sorted(name for name in names if filenames.is_hedge_name(name))


def destroy(path: str | os.PathLike[str]) -> None:
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
    held = lock(directory)
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
                raise _io_error(e, "unlink", file) from None
    finally:
        held.close()
    try:
        os.rmdir(directory)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise _io_error(e, "rmdir", directory) from None
