"""Every exception hedge raises.  All derive from HedgeError except Cancelled.

Each docstring says when the exception is raised.  Callers may catch HedgeError
to handle any store failure; TypeError/ValueError are raised for bad input
before anything is written.
"""
from __future__ import annotations

import errno as _errno
import os


class HedgeError(Exception):
    """Base class of every error hedge raises on purpose."""


class HedgeIOError(HedgeError, OSError):
    """An I/O request failed: a negative completion result, a short transfer
    that could not be completed, or a refused system call.

    ``errno`` is the positive errno, ``op`` the operation name ("read",
    "fdatasync", ...), ``path`` the file when known.
    """

    def __init__(self, err: int, op: str, path: str | None = None, detail: str | None = None):
        err = abs(err)
        msg = f"{op} failed: [Errno {err}] {os.strerror(err)}"
        if path:
            msg += f" ({path})"
        if detail:
            msg += f": {detail}"
        OSError.__init__(self, err, msg)
        self.op = op
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return self.args[1]

    def __reduce__(self):
        return (type(self), (self.errno, self.op, self.path, self.detail))


class ShortIOError(HedgeIOError):
    """A read reached end of file before the requested length (when the caller
    asked for exactly that many bytes), or a write made no progress."""

    def __init__(self, op: str, path: str | None, wanted: int, got: int):
        HedgeIOError.__init__(self, _errno.EIO, op, path, f"short transfer: wanted {wanted} bytes, got {got}")
        self.wanted = wanted
        self.got = got

    def __reduce__(self):
        return (type(self), (self.op, self.path, self.wanted, self.got))


class AlignmentError(HedgeError, ValueError):
    """An O_DIRECT request whose buffer address, length or file offset is not a
    multiple of the required alignment (4096).  Raised before submission."""


class CorruptionError(HedgeError):
    """Stored data failed a check (checksum, magic, framing).  ``file`` and
    ``offset`` say where.  Never answered with wrong data instead."""

    def __init__(self, file: str | None, offset: int | None, detail: str):
        where = f"{file}" if file else "<unknown file>"
        if offset is not None:
            where += f" at offset {offset}"
        super().__init__(f"corruption in {where}: {detail}")
        self.file = file
        self.offset = offset
        self.detail = detail

    def __reduce__(self):
        return (type(self), (self.file, self.offset, self.detail))


class LockError(HedgeError):
    """The database directory is locked by another open handle (this process
    or another one)."""


class ReadOnlyError(HedgeError):
    """A write (put, remove, write, write_batch, flush, compact) on a
    database opened with ``read_only=True``; raised before anything
    changes."""


class ClosedError(HedgeError):
    """An operation on a database, executor or pool that was closed."""


class ForkError(HedgeError):
    """An object created before os.fork() (executor, pool, database) was used
    in the child process, which must open its own."""


class BackgroundError(HedgeError):
    """A background job (flush, compaction, WAL sync) failed earlier; the
    database refuses writes until it is reopened.  ``__cause__`` is the
    original error."""


class WrongThreadError(HedgeError, RuntimeError):
    """A ring or executor was used from a thread other than its owner."""


class Cancelled(BaseException):
    """Raised inside a task that was cancelled.  Derives from BaseException so
    that ``except Exception`` in user code does not swallow it."""
