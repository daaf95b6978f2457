"""The C kernels of hedge.io._uring, for the modules that keep a
pure-Python twin of each (docs/design.md, "C kernels"): a module asks for
the kernels it uses and runs its twin when it gets None.

None means: the extension is not built (no liburing where hedge was
installed), or it was built before one of those kernels existed, or the
HEDGE_PURE_PYTHON environment variable is set (to run the twins).
"""
from __future__ import annotations

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
