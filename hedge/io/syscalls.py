"""Blocking system calls that carry out one request for the ``threads`` and
``sync`` backends.  ``perform`` returns what the kernel would put in a CQE:
a result >= 0, or -errno.  Never raises for an I/O failure.

May be called from any thread; it touches only its arguments.
"""
from __future__ import annotations

import os

from hedge.io import opcodes as O
from hedge.io.buffer import Buffer


def _view(obj, start: int, length: int) -> memoryview:
    mv = obj.view if type(obj) is Buffer else memoryview(obj)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    return mv[start:start + length]


def _dir_fd(fd: int):
    return None if fd == O.AT_FDCWD else fd


def perform(op: int, fd: int, obj, start: int, length: int, offset: int, flags: int) -> int:
    try:
        if op == O.READ:
            return os.preadv(fd, [_view(obj, start, length)], offset)
        if op == O.WRITE:
            return os.pwrite(fd, _view(obj, start, length), offset)
        if op == O.READV:
            return os.preadv(fd, [b.view if type(b) is Buffer else b for b in obj], offset)
        if op == O.WRITEV:
            return os.pwritev(fd, [b.view if type(b) is Buffer else b for b in obj], offset)
        if op == O.FSYNC:
            os.fsync(fd)
            return 0
        if op == O.FDATASYNC:
            os.fdatasync(fd)
            return 0
        if op == O.NOP:
            return 0
        if op == O.OPENAT:
            return os.open(obj, flags | os.O_CLOEXEC, length, dir_fd=_dir_fd(fd))
        if op == O.CLOSE:
            os.close(fd)
            return 0
        if op == O.RENAMEAT:
            old, new = obj
            os.rename(old, new, src_dir_fd=_dir_fd(fd), dst_dir_fd=_dir_fd(fd))
            return 0
        if op == O.UNLINKAT:
            if flags & O.AT_REMOVEDIR:
                os.rmdir(obj, dir_fd=_dir_fd(fd))
            else:
                os.unlink(obj, dir_fd=_dir_fd(fd))
            return 0
        return -22  # EINVAL: unknown op
    except OSError as e:
        return -(e.errno or 5)
