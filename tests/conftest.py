"""Fixtures shared by the whole suite: one per I/O method, an executor on
each, and helpers to run coroutines on it."""
from __future__ import annotations

import os

import pytest

from hedge.exec import Executor
from hedge.io.backend import uring_status

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
