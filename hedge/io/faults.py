"""The fault-injecting seam: make chosen I/O operations fail, for tests.

Every awaitable operation in hedge/io/ops.py asks ``check(op, path)`` before
it issues its request (one global bool test when nothing is armed).  An
armed fault makes the operation raise HedgeIOError with the chosen errno, as
if the kernel had returned it, on every I/O method alike.

    with faults.inject("fdatasync", errno.EIO, path_contains=".wal", times=1):
        ...

Any thread may arm or clear faults; ``check`` runs on executor threads.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from hedge.errors import HedgeIOError

armed = False
_lock = threading.Lock()
_faults: list["Fault"] = []


@dataclass
class Fault:
    op: str                      # "read", "write", "fdatasync", "fsync", "open", "rename", "unlink", ...
    errno: int
    path_contains: str | None    # only paths containing this (None: any)
    times: int | None            # fail this many times, then disarm (None: forever)
    after: int = 0               # let this many matching calls succeed first
    hits: int = 0                # calls that failed so far

    def matches(self, op: str, path: str | None) -> bool:
        if op != self.op:
            return False
        if self.path_contains is None:
            return True
        return path is not None and self.path_contains in path


class _Armed:
    def __init__(self, fault: Fault):
        self.fault = fault

    def __enter__(self) -> Fault:
        return self.fault

    def __exit__(self, *exc) -> None:
        remove(self.fault)


def inject(op: str, errno: int, path_contains: str | None = None, times: int | None = 1,
           after: int = 0) -> _Armed:
    """Arm a fault; returns a context manager that disarms it on exit."""
    global armed
    fault = Fault(op, errno, path_contains, times, after)
    with _lock:
        _faults.append(fault)
        armed = True
    return _Armed(fault)


def remove(fault: Fault) -> None:
    global armed
    with _lock:
        if fault in _faults:
            _faults.remove(fault)
        armed = bool(_faults)


def clear() -> None:
    global armed
    with _lock:
        _faults.clear()
        armed = False


def check(op: str, path: str | None) -> None:
    """Raise HedgeIOError if an armed fault matches ``op`` on ``path``."""
    with _lock:
        for fault in _faults:
            if fault.matches(op, path):
                if fault.after > 0:
                    fault.after -= 1
                    return
                fault.hits += 1
                if fault.times is not None and fault.hits >= fault.times:
                    _faults.remove(fault)
                    _sync_armed()
                raise HedgeIOError(fault.errno, op, path, "injected fault")


def _sync_armed() -> None:
    global armed
    armed = bool(_faults)
