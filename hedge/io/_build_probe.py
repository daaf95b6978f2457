"""Tell whether the system liburing can be compiled against (used by setup.py)."""
import glob
import os

INCLUDE_DIRS = ["/usr/include", "/usr/local/include"]
LIB_GLOBS = ["/usr/lib/*/liburing.so", "/usr/lib/liburing.so", "/usr/local/lib/liburing.so",
             "/usr/lib64/liburing.so"]


def liburing_available() -> bool:
    has_header = any(os.path.exists(os.path.join(d, "liburing.h")) for d in INCLUDE_DIRS)
    has_lib = any(glob.glob(pattern) for pattern in LIB_GLOBS)
    return has_header and has_lib
