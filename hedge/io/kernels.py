"""The C kernels of hedge.io._uring, for the modules that keep a
pure-Python twin of each (docs/design.md, "C kernels"): a module asks for
the kernels it uses and runs its twin when it gets None.

Most kernels are cffi functions (``load``).  One that builds Python
objects is a builtin function of the CPython API in the same module
(``load_builtin``): cffi can neither declare one nor hold the GIL for it.

None means: the extension is not built (no liburing where hedge was
installed), or it was built before one of those kernels existed, or the
HEDGE_PURE_PYTHON environment variable is set (to run the twins).
"""
from __future__ import annotations

import ctypes
import os
import threading

# The threads that call the engine themselves (the blocking API, asyncio
# loops; not hedge's own executors), counted from their first call until
# they end.  cffi releases the GIL around every kernel call; with two or
# more such threads each call may hand the GIL to another of them, and the
# caller then waits for its turn again.  From 64 threads YCSB C ran at
# half the speed with the block search and the bloom probes in C than with
# their Python twins, while from one thread the kernels made it 12% faster
# (docs/design.md, "C kernels").  So the lookups' kernels give way to their
# twins while ``many_callers``: two or more threads are counted.
caller_threads: dict[int, None] = {}
many_callers = False
_caller_lock = threading.Lock()


class _CallerMark:
    """Counts its thread in ``caller_threads`` while it lives: it is the
    thread's local, dropped when the thread ends."""

    __slots__ = ("ident",)

    def __init__(self):
        global many_callers
        self.ident = threading.get_ident()
        with _caller_lock:
            caller_threads[self.ident] = None
            many_callers = len(caller_threads) > 1

    def __del__(self, _lock=_caller_lock, _threads=caller_threads):
        # The module's globals may be gone when the last thread's mark goes.
        global many_callers
        with _lock:
            _threads.pop(self.ident, None)
            many_callers = len(_threads) > 1


class _Marks(threading.local):
    mark: _CallerMark | None = None


_marks = _Marks()


def note_caller_thread() -> None:
    """Count the calling thread among ``caller_threads`` (once; any thread)."""
    if _marks.mark is None:
        _marks.mark = _CallerMark()


def load(*names: str):
    """``(ffi, kernel, ...)``: the module's ffi and the C functions
    ``names`` in that order, or None (module docstring)."""
    if os.environ.get("HEDGE_PURE_PYTHON"):
        return None
    try:
        from hedge.io._uring import ffi, lib
    except ImportError:
        return None
    kernels = [getattr(lib, name, None) for name in names]
    if any(kernel is None for kernel in kernels):
        return None
    return (ffi, *kernels)



_builtins: dict | None = None


def load_builtin(name: str):
    """The builtin function ``name`` (a kernel that returns Python
    objects), or None (module docstring).  cffi's declarations cannot name
    ``PyObject``: the module's ``hedge_builtins`` makes a dict of them,
    fetched once through ``ctypes.PyDLL``, which holds the GIL for the
    call."""
    global _builtins
    if os.environ.get("HEDGE_PURE_PYTHON"):
        return None
    if _builtins is None:
        try:
            from hedge.io import _uring
            make = ctypes.PyDLL(_uring.__file__).hedge_builtins
        except (ImportError, AttributeError, OSError):
            return None         # not built, or built before the builtins existed
        make.restype = ctypes.py_object
        make.argtypes = ()
        _builtins = make()
    return _builtins.get(name)
