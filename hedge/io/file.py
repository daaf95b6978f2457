"""File: an open file descriptor used through the ring.

Invariant: the descriptor stays open while any request on it is in flight.
``close()`` marks the file closed at once (new requests raise ClosedError)
but the close(2) itself waits until the last in-flight request completes; the
executor counts requests per file (``_inflight``) and calls ``_release``.

A File may be used from any executor thread; the counters are only touched
with the GIL held by the executor that stages or completes a request.
"""
from __future__ import annotations

import os

from hedge.errors import AlignmentError, ClosedError, HedgeIOError
from hedge.io import faults, powerloss
from hedge.io.buffer import ALIGN

O_DIRECT = getattr(os, "O_DIRECT", 0)


class File:
    __slots__ = ("fd", "path", "direct", "closed", "_inflight", "_close_pending", "__weakref__")

    def __init__(self, fd: int, path: str | None, direct: bool = False):
        self.fd = fd
        self.path = path
        self.direct = direct
        self.closed = False
        self._inflight = 0
        self._close_pending = False

    @classmethod
    def open(cls, path: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o644,
             direct: bool = False) -> "File":
        """Open ``path`` with open(2) on the calling thread (for set-up code
        that is not running on an executor; executor code uses
        ``hedge.io.ops.open_file``).  Raises HedgeIOError (an injected
        "open" fault too)."""
        path = os.fspath(path)
        if direct:
            if not O_DIRECT:
                raise HedgeIOError(22, "open", path, "O_DIRECT is not supported on this platform")
            flags |= O_DIRECT
        if faults.armed:
            faults.check("open", path)
        note = powerloss.before_open(path, flags) if powerloss.armed else None
        try:
            fd = os.open(path, flags | os.O_CLOEXEC, mode)
        except OSError as e:
            raise HedgeIOError(e.errno or 5, "open", path) from None
        if note is not None:
            powerloss.after_open(note, fd)
        return cls(fd, path, direct)

    def check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"file {self.path} is closed")

    def size(self) -> int:
        """Current size in bytes (fstat)."""
        self.check_open()
        try:
            return os.fstat(self.fd).st_size
        except OSError as e:
            raise HedgeIOError(e.errno or 5, "fstat", self.path) from None

    def close(self) -> None:
        """Close the file; the descriptor is released once no request on it
        is in flight.  Closing twice is a no-op."""
        if self.closed:
            return
        self.closed = True
        if self._inflight:
            self._close_pending = True
        else:
            self._close_now()

    def _release(self) -> None:
        """Called by the executor when a request on this file completes."""
        self._inflight -= 1
        if self._inflight == 0 and self._close_pending:
            self._close_now()

    def _close_now(self) -> None:
        self._close_pending = False
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> "File":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        return f"File({self.path!r}, {state}{', O_DIRECT' if self.direct else ''})"

    def __del__(self):
        if not self.closed and self.fd >= 0 and not self._inflight:
            try:
                os.close(self.fd)
            except OSError:
                pass


def check_direct_alignment(file: File, address: int | None, length: int, offset: int, op: str) -> None:
    """REQUIRES a file opened with O_DIRECT.  Raise AlignmentError unless the
    buffer address, the length and the file offset are multiples of 4096."""
    problems = []
    if address is None:
        problems.append("the buffer is not a hedge.io.Buffer (O_DIRECT needs page-aligned memory)")
    elif address % ALIGN:
        problems.append(f"buffer address 0x{address:x} is not {ALIGN}-aligned")
    if length % ALIGN:
        problems.append(f"length {length} is not a multiple of {ALIGN}")
    if offset % ALIGN:
        problems.append(f"offset {offset} is not a multiple of {ALIGN}")
    if problems:
        raise AlignmentError(f"misaligned O_DIRECT {op} on {file.path}: " + "; ".join(problems))
