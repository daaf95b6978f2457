"""Fixtures shared by the whole suite: one per I/O method, an executor on
each, one per block search, block decoding, in-place read and bloom probe
(C kernel or Python twin), and helpers to run coroutines on it."""
from __future__ import annotations

import os

import pytest

from hedge.exec import Executor
from hedge.io import ops
from hedge.io.backend import uring_status
from hedge.lsm import block as block_module
from hedge.lsm import bloom as bloom_module

IO_METHODS = ["io_uring", "threads", "sync"]


def require_method(method: str) -> None:
    """Skip (saying why) when ``method`` cannot run on this machine."""
    if method == "io_uring":
        ok, reason = uring_status()
        if not ok:
            pytest.skip(f"io_uring unavailable on this machine: {reason}")


@pytest.fixture(params=IO_METHODS)
def io_method(request) -> str:
    require_method(request.param)
    return request.param


BLOCK_SEARCHES = ["c", "python"]


def _kernel_or_twin(request, available: bool, use, what: str):
    """The body of a fixture run once with a C kernel and once with its
    Python twin (``use(True)`` / ``use(False)``); the C run is skipped,
    saying why, when the kernel is not built."""
    if request.param == "c" and not available:
        pytest.skip(f"the C {what} kernel is not built (hedge.io._uring) or HEDGE_PURE_PYTHON is set")
    use(request.param == "c")
    yield request.param
    use(True)


@pytest.fixture(params=BLOCK_SEARCHES)
def block_search(request) -> str:
    """Blocks searched by the C kernel or by its Python twin for the test's
    duration."""
    yield from _kernel_or_twin(request, block_module.search_kernel_available(), block_module.use_search_kernel,
                               "block search")


@pytest.fixture(params=BLOCK_SEARCHES)
def block_decode(request) -> str:
    """Block entries decoded by the C kernel or by its Python twin for the
    test's duration."""
    yield from _kernel_or_twin(request, block_module.decode_kernel_available(), block_module.use_decode_kernel,
                               "block decoding")


@pytest.fixture(params=BLOCK_SEARCHES)
def read_kernel(request) -> str:
    """``ops.read_now`` through the C read (``pread_now``) or through its
    Python twin for the test's duration."""
    yield from _kernel_or_twin(request, ops.read_kernel_available(), ops.use_read_kernel, "read")


@pytest.fixture(params=BLOCK_SEARCHES)
def bloom_probe(request) -> str:
    """Bloom filters probed by the C kernel or by its Python twin for the
    test's duration."""
    yield from _kernel_or_twin(request, bloom_module.probe_kernel_available(), bloom_module.use_probe_kernel,
                               "bloom probe")


@pytest.fixture
def executor(io_method):
    ex = Executor(io_method=io_method, ring_entries=64).start()
    yield ex
    ex.close()


@pytest.fixture
def data_file(tmp_path):
    """A 1 MiB file of random bytes; returns (path, contents)."""
    path = tmp_path / "data.bin"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    return str(path), data
