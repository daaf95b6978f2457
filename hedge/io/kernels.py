"""The C kernels of hedge.io._uring, for the modules that keep a
pure-Python twin of each (docs/design.md, "C kernels"): a module asks for
the kernels it uses and runs its twin when it gets None.

The bloom filter's builder calls a cffi function (``load``); cffi
releases the GIL around each call.  The kernels of lookups, scans and
in-place reads are builtin functions of the CPython API in the same
module (``load_builtin``): they return Python objects, which cffi cannot
declare, and they hold the GIL like any builtin.  That matters with many
threads: while cffi kernels served lookups, each call could hand the GIL
to another thread, and YCSB C from 64 threads ran at half the speed of the
Python twins (docs/design.md, "C kernels").

None means: the extension is not built (no liburing where hedge was
installed), or it was built before one of those kernels existed, or the
HEDGE_PURE_PYTHON environment variable is set (to run the twins).
"""
from __future__ import annotations

import ctypes
import os


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
