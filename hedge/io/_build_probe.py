"""Find the system liburing and decide how the binding links it (used by
setup.py and hedge/io/_build.py at build time; never imported at run time).

Two ways to link, chosen by ``uring_link()``:

- static: the archive ``liburing.a`` (Debian/Ubuntu's liburing-dev ships
  it) is linked into the extension and its symbols hidden
  (``--exclude-libs``), so the extension, and a wheel carrying it, needs no
  liburing on the machine that installs it.  Chosen when the archive exists
  and a test link of it into a shared object succeeds (an archive built
  without position-independent code cannot be).
- shared: ``-luring``, the extension then needs the system's liburing.so.N
  at run time.

``HEDGE_URING_LINK=static|shared`` forces one way (``auto``, the default,
prefers static); a forced way that is not available fails the build.
"""
from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sysconfig
import tempfile

INCLUDE_DIRS = ["/usr/include", "/usr/local/include"]
LIB_DIRS = ["/usr/lib/*", "/usr/lib", "/usr/local/lib", "/usr/lib64"]
LINK_MODES = ("auto", "static", "shared")
# Hide the archive's symbols so the extension exports only its own.
STATIC_LINK_ARGS = ["-Wl,--exclude-libs,ALL"]


def _find(name: str) -> str | None:
    for pattern in LIB_DIRS:
        found = sorted(glob.glob(os.path.join(pattern, name)))
        if found:
            return found[0]
    return None


def has_header() -> bool:
    return any(os.path.exists(os.path.join(d, "liburing.h")) for d in INCLUDE_DIRS)


def shared_library() -> str | None:
    """Path of the linkable liburing.so, or None."""
    return _find("liburing.so")


def static_archive() -> str | None:
    """Path of liburing.a, or None."""
    return _find("liburing.a")


def _archive_links(archive: str) -> bool:
    """Whether ``archive`` links into a shared object (a quick test link)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    if shutil.which(cc[0]) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <liburing.h>\n"
                    "int probe(struct io_uring *r) { return io_uring_queue_init(8, r, 0); }\n")
        cmd = [*cc, "-shared", "-fPIC", "-o", os.path.join(tmp, "probe.so"), src, archive, *STATIC_LINK_ARGS]
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


@functools.cache
def uring_link() -> dict:
    """Keyword arguments for cffi's ``set_source`` that link liburing, by
    ``HEDGE_URING_LINK`` (see the module docstring).  Raises RuntimeError
    when the header is missing or the requested way is not available.
    Cached: setup.py and _build.py run in one process and ask once."""
    if not has_header():
        raise RuntimeError("liburing.h not found (install liburing-dev)")
    mode = os.environ.get("HEDGE_URING_LINK", "auto") or "auto"
    if mode not in LINK_MODES:
        raise RuntimeError(f"HEDGE_URING_LINK must be one of {', '.join(LINK_MODES)}, not {mode!r}")
    if mode != "shared":
        archive = static_archive()
        if archive is not None and _archive_links(archive):
            return {"extra_objects": [archive], "extra_link_args": list(STATIC_LINK_ARGS)}
        if mode == "static":
            raise RuntimeError("HEDGE_URING_LINK=static, but no liburing.a that links into a shared object was found")
    if shared_library() is None:
        raise RuntimeError("liburing.so not found (install liburing-dev)")
    return {"libraries": ["uring"]}
