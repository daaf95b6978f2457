"""hedge.io.kernels.load and load_builtin: the C kernels when they can
run, None otherwise (the callers then run their pure-Python twins)."""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from hedge.io import kernels

BUILT = importlib.util.find_spec("hedge.io._uring") is not None


@pytest.mark.skipif(not BUILT, reason="hedge.io._uring is not built")
def test_gives_ffi_and_the_named_kernels_in_order(monkeypatch):
    monkeypatch.delenv("HEDGE_PURE_PYTHON", raising=False)
    from hedge.io._uring import ffi, lib
    loaded = kernels.load("hedge_enter", "hedge_bloom_set")
    assert loaded == (ffi, lib.hedge_enter, lib.hedge_bloom_set)


def test_none_when_one_kernel_is_missing():
    assert kernels.load("hedge_bloom_set", "hedge_no_such_kernel") is None


def test_none_when_pure_python_is_asked_for(monkeypatch):
    monkeypatch.setenv("HEDGE_PURE_PYTHON", "1")
    assert kernels.load("hedge_bloom_set") is None


@pytest.mark.skipif(not BUILT, reason="hedge.io._uring is not built")
def test_load_builtin_gives_the_named_builtin_made_once(monkeypatch):
    monkeypatch.delenv("HEDGE_PURE_PYTHON", raising=False)
    decode = kernels.load_builtin("block_entries")
    assert type(decode).__name__ == "builtin_function_or_method" and decode.__name__ == "block_entries"
    for name in ("block_find", "block_seek", "bloom_probe", "pread_now"):
        assert kernels.load_builtin(name).__name__ == name
    held = sys.getrefcount(decode)
    for _ in range(50):
        assert kernels.load_builtin("block_entries") is decode
    assert sys.getrefcount(decode) == held


def test_load_builtin_gives_none_for_an_unknown_name_or_pure_python(monkeypatch):
    assert kernels.load_builtin("no_such_kernel") is None
    monkeypatch.setenv("HEDGE_PURE_PYTHON", "1")
    assert kernels.load_builtin("block_entries") is None
