"""Build hook: compile the liburing binding when the system has liburing.

Without liburing headers and library the package still installs; the I/O layer
then falls back to the ``threads`` method (see hedge/io/backend.py).
"""
import glob
import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "hedge", "io"))
from _build_probe import liburing_available  # noqa: E402

cffi_modules = []
if os.environ.get("HEDGE_NO_URING") == "1":
    print("hedge: HEDGE_NO_URING=1, building without the io_uring binding")
elif liburing_available():
    cffi_modules = ["hedge/io/_build.py:ffibuilder"]
else:
    print("hedge: liburing headers/library not found; building without the io_uring "
          "binding (install liburing-dev to enable it)")

setup(cffi_modules=cffi_modules)
