"""Build hook: compile the liburing binding when the system has liburing.

The binding links liburing statically when the system's liburing.a allows it
(the wheel then runs without liburing installed), else against liburing.so;
hedge/io/_build_probe.py decides, HEDGE_URING_LINK=static|shared forces one.
Without liburing headers and library the package still installs; the I/O
layer then falls back to the ``threads`` method (see hedge/io/backend.py).
HEDGE_NO_URING=1 builds without the binding on purpose.
"""
import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "hedge", "io"))
from _build_probe import uring_link  # noqa: E402

cffi_modules = []
if os.environ.get("HEDGE_NO_URING") == "1":
    print("hedge: HEDGE_NO_URING=1, building without the io_uring binding")
else:
    try:
        link = uring_link()
    except RuntimeError as e:
        if os.environ.get("HEDGE_URING_LINK", "auto") not in ("", "auto"):
            raise SystemExit(f"hedge: {e}") from None
        print(f"hedge: building without the io_uring binding: {e}")
    else:
        how = "statically" if "extra_objects" in link else "against liburing.so"
        print(f"hedge: building the io_uring binding, liburing linked {how}")
        cffi_modules = ["hedge/io/_build.py:ffibuilder"]

setup(cffi_modules=cffi_modules)
