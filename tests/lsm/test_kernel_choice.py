"""Which search and probes a lookup runs: the C kernels while at most one
thread calls the engine itself, their Python twins from two on
(hedge/io/kernels.py, ``caller_threads`` and ``many_callers``), with the
same answers."""
from __future__ import annotations

import threading

import pytest

import hedge
from hedge.io import kernels
from hedge.lsm import block as block_module
from hedge.lsm import bloom as bloom_module
from hedge.lsm.block import Block, BlockBuilder
from hedge.lsm.bloom import BloomBuilder, BloomFilter
from hedge.lsm.keys import Kind

needs_kernels = pytest.mark.skipif(
    not (block_module.search_kernel_available() and bloom_module.probe_kernel_available()),
    reason="the C kernels are not built (hedge.io._uring) or HEDGE_PURE_PYTHON is set")


def _calls_of(monkeypatch, module, name: str) -> list:
    """Wrap module.name (a kernel) so that each call records how many
    caller threads there were; returns the record."""
    kernel = getattr(module, name)
    seen = []

    def spy(*args):
        seen.append(len(kernels.caller_threads))
        return kernel(*args)

    monkeypatch.setattr(module, name, spy)
    return seen


def _block() -> Block:
    builder = BlockBuilder()
    for i in range(40):
        builder.add(b"k%03d" % i, 5, Kind.PUT, b"v%d" % i)
    return Block(builder.finish())


def _bloom() -> BloomFilter:
    builder = BloomBuilder(10)
    for i in range(40):
        builder.add(b"k%03d" % i)
    return BloomFilter(builder.finish())


@needs_kernels
def test_two_caller_threads_turn_the_kernels_into_their_twins(monkeypatch):
    finds = _calls_of(monkeypatch, block_module, "_find")
    seeks = _calls_of(monkeypatch, block_module, "_seek")
    probes = _calls_of(monkeypatch, bloom_module, "_probe")
    block, bloom = _block(), _bloom()

    def ask():
        return (block.get(b"k007", 10), block.lower_bound(b"k0105"), bloom.may_contain(b"k011"),
                bloom.may_contain(b"absent"))

    monkeypatch.setattr(kernels, "many_callers", False)
    alone = ask()
    assert (len(finds), len(seeks), len(probes)) == (1, 1, 2)
    monkeypatch.setattr(kernels, "many_callers", True)      # two threads or more
    crowded = ask()
    assert (len(finds), len(seeks), len(probes)) == (1, 1, 2)     # no kernel call more
    assert crowded == alone == ((5, Kind.PUT, b"v7"), 11, True, bloom.may_contain(b"absent"))


@needs_kernels
def test_each_thread_calling_the_engine_is_counted_until_it_ends(monkeypatch, tmp_path):
    probes = _calls_of(monkeypatch, bloom_module, "_probe")
    with hedge.open(tmp_path / "db", create=True) as db:
        for i in range(200):
            db.put(b"k%04d" % i, b"v%d" % i)
        db.compact()
        before = dict(kernels.caller_threads)
        assert threading.get_ident() in before                   # this thread called already
        assert db.get(b"k0042") == b"v42"
        assert probes and set(probes) == {len(before)}           # the kernel, from this thread alone
        asked = threading.Event()
        go_on = threading.Event()
        counted = []

        def other() -> None:
            try:
                assert db.get(b"k0007") == b"v7"                 # read in place: no ring, still counted
                counted.append((len(kernels.caller_threads), kernels.many_callers))
            finally:
                asked.set()
            go_on.wait()

        thread = threading.Thread(target=other)
        thread.start()
        asked.wait()
        n = len(probes)
        assert db.get(b"k0100") == b"v100"                       # two caller threads now
        go_on.set()
        thread.join()
        assert counted == [(len(before) + 1, True)]
        assert len(probes) == n                                  # the twin answered
        gone = thread.ident
        del thread
        assert gone not in kernels.caller_threads                # its locals went with it
