"""The environment a benchmark ran in (CPU, cores, kernel, Python, liburing,
memory, file system), printed above the figures and stored with them, and
the page-cache drop of cold runs.

Every probe is best effort: a fact that cannot be found is reported as
"unknown", never guessed.
"""
from __future__ import annotations

import glob
import os
import platform
import re
import subprocess
import sys


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def liburing_version() -> str:
    """The installed liburing, from dpkg or from the shared object's name."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "liburing2"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip() + " (dpkg liburing2)"
    except (OSError, subprocess.SubprocessError):
        pass
    for pattern in ("/usr/lib/*/liburing.so.*.*", "/usr/lib/liburing.so.*.*",
                    "/usr/local/lib/liburing.so.*.*", "/lib/*/liburing.so.*.*"):
        for path in sorted(glob.glob(pattern)):
            match = re.search(r"liburing\.so\.(\d+\.\d+(?:\.\d+)?)$", path)
            if match:
                return match.group(1) + f" ({path})"
    return "not found"


def memory_bytes() -> int | None:
    text = _read("/proc/meminfo") or ""
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def file_system(path: str) -> str:
    """File system type and device of the mount holding ``path``."""
    path = os.path.realpath(path)
    best, found = "", "unknown"
    for line in (_read("/proc/mounts") or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and (path == parts[1] or path.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) > len(best):
                best, found = parts[1], f"{parts[2]} on {parts[0]} (mounted at {parts[1]})"
    return found


def collect(db_dir: str) -> dict:
    """Facts about this machine and the directory the stores live in."""
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = []
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpus_allowed": affinity,
        "kernel": f"{platform.system()} {platform.release()} {platform.version()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "liburing": liburing_version(),
        "memory_bytes": memory_bytes(),
        "db_dir": db_dir,
        "file_system": file_system(db_dir),
        "io_uring_disabled_sysctl": (_read("/proc/sys/kernel/io_uring_disabled") or "absent").strip(),
    }


def drop_page_cache() -> tuple[bool, str]:
    """Write dirty pages back and drop the clean page cache (needs root).
    Returns (dropped?, what happened)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    except OSError as exc:
        return False, f"could not drop the page cache ({exc.strerror or exc}); reads may be served from memory"
    return True, "page cache dropped"
