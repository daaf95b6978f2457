"""Packaging of the liburing binding.

A wheel built from this tree links liburing statically when the system's
liburing.a allows it (hedge/io/_build_probe.py), so installed where liburing
is missing it still gets the io_uring method.  The proof: the extension's
DT_NEEDED entries (the only libraries the dynamic loader will load for it)
name no liburing, and a fresh virtual environment holding nothing but the
built wheel (its dependencies borrowed from this one) lists io_uring among
its methods.

Also: an sdist still builds against the system liburing, and with
HEDGE_NO_URING=1 without the binding (hedge then falls back to threads);
HEDGE_URING_LINK=shared links liburing.so, which the DT_NEEDED check sees.
Builds use this environment's setuptools and cffi (no network); each test
takes a few seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from hedge.io import _build_probe
from hedge.io.backend import uring_status

ROOT = Path(__file__).resolve().parents[2]
_SHT_DYNAMIC = 6
_DT_NEEDED = 1


def dt_needed(elf: bytes) -> list[str]:
    """The DT_NEEDED names of a little-endian ELF64 shared object."""
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1, "not a little-endian ELF64 file"
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if sh_type != _SHT_DYNAMIC:
            continue
        strtab_offset = sections[link][4]
        for pos in range(offset, offset + size, entsize):
            tag, value = struct.unpack_from("<qQ", elf, pos)
            if tag == _DT_NEEDED:
                start = strtab_offset + value
                names.append(elf[start:elf.index(b"\0", start)].decode())
    return names


def links_liburing(elf: bytes) -> bool:
    return any(name.startswith("liburing") for name in dt_needed(elf))


def require_static_archive() -> None:
    if "extra_objects" not in _build_probe.uring_link():
        pytest.skip("no liburing.a that links statically on this machine: a plain wheel needs the "
                    "system liburing here (`make wheel` bundles it with auditwheel instead)")


def copy_source_tree(dest: Path) -> Path:
    """The project's sources without build output, so a build sees only them."""
    tree = dest / "src"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".pytest_cache",
        ".hypothesis", "results"))
    return tree


def build_wheel(source: Path, out: Path, env: dict | None = None) -> Path:
    """``pip wheel`` of ``source`` (a tree or an sdist) without network: the
    build uses this environment's setuptools and cffi."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(out), str(source)],
                   check=True, env={**os.environ, **(env or {})}, capture_output=True)
    (wheel,) = out.glob("hedge-*.whl")
    return wheel


def extension_in(wheel: Path) -> bytes | None:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith("hedge/io/_uring") and n.endswith(".so")]
        return z.read(names[0]) if names else None


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A new virtual environment with ``wheel`` installed and this
    environment's site-packages appended to its path for the dependencies
    (a .pth line adds the directory only: the editable install of hedge
    there is not activated, so `import hedge` finds the wheel's copy)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, capture_output=True)
    python = path / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index",
                    "--no-deps", "--no-compile", str(wheel)], check=True, capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "hedge_test_deps.pth").write_text("".join(d + "\n" for d in sorted(deps)))
    return path


_REPORT = """
import json, hedge, hedge.io.backend as b
try:
    from hedge.io import _uring
    ext = _uring.__file__
except ImportError:
    ext = None
print(json.dumps({"hedge": hedge.__file__, "extension": ext, "methods": b.available_methods()}))
"""


def venv_report(venv: Path) -> dict:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", _REPORT], check=True, capture_output=True,
                         text=True, cwd=venv, env={k: v for k, v in os.environ.items() if k != "HEDGE_IO_METHOD"})
    return json.loads(out.stdout)


def test_elf_reader_finds_the_libc_of_this_interpreters_extensions():
    # The DT_NEEDED reader itself, on an extension that surely links libc.
    import _ctypes

    assert any(name.startswith("libc.so") for name in dt_needed(Path(_ctypes.__file__).read_bytes()))


def test_installed_binding_carries_liburing():
    try:
        from hedge.io import _uring
    except ImportError:
        pytest.skip("the liburing binding is not built in this environment")
    require_static_archive()
    elf = Path(_uring.__file__).read_bytes()
    assert not links_liburing(elf), f"{_uring.__file__} needs {dt_needed(elf)}"


def test_wheel_gets_io_uring_without_a_system_liburing(tmp_path):
    require_static_archive()
    wheel = build_wheel(copy_source_tree(tmp_path), tmp_path / "wheel")
    elf = extension_in(wheel)
    assert elf is not None, f"{wheel.name} holds no io_uring binding"
    assert not links_liburing(elf), f"the wheel's binding needs {dt_needed(elf)}"
    with zipfile.ZipFile(wheel) as z:
        assert "hedge/py.typed" in z.namelist(), "the wheel does not mark the package as typed (PEP 561)"

    venv = fresh_venv(tmp_path / "venv", wheel)
    report = venv_report(venv)
    assert report["hedge"].startswith(str(venv)), report
    assert report["extension"] is not None and report["extension"].startswith(str(venv)), report
    # The console script works from the wheel; bench says where perf/ is.
    hedge = venv / "bin" / "hedge"
    assert subprocess.run([str(hedge), "--help"], capture_output=True, cwd=tmp_path).returncode == 0
    bench = subprocess.run([str(hedge), "bench"], capture_output=True, text=True, cwd=tmp_path)
    assert bench.returncode == 1 and "not part of the installed package" in bench.stderr, bench.stderr
    ok, reason = uring_status()
    if not ok:
        pytest.skip(f"io_uring unavailable on this machine ({reason}); the wheel's linkage is checked")
    assert "io_uring" in report["methods"], report


def test_sdist_builds_with_and_without_the_binding(tmp_path):
    tree = copy_source_tree(tmp_path)
    subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; b.build_sdist('../sdist')"],
                   cwd=tree, check=True, capture_output=True)
    (sdist,) = (tmp_path / "sdist").glob("hedge-*.tar.gz")

    if _build_probe.has_header():
        with_ring = build_wheel(sdist, tmp_path / "with")
        assert extension_in(with_ring) is not None

    without = build_wheel(sdist, tmp_path / "without", env={"HEDGE_NO_URING": "1"})
    assert extension_in(without) is None
    report = venv_report(fresh_venv(tmp_path / "venv", without))
    assert report["extension"] is None
    assert report["methods"] == ["threads", "sync"]


def test_shared_link_needs_the_system_liburing(tmp_path):
    if _build_probe.shared_library() is None:
        pytest.skip("no liburing.so on this machine")
    wheel = build_wheel(copy_source_tree(tmp_path), tmp_path / "wheel", env={"HEDGE_URING_LINK": "shared"})
    assert links_liburing(extension_in(wheel))
