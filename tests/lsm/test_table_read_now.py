"""A TableReader with a ``read_now`` (blocks the page cache holds, read in
place) answers exactly as one without: for gets at any snapshot, block runs
read ahead and whole-table iteration, in plain and compressed tables, with
and without a block cache, whether ``read_now`` answers every read, none
or every other one.  Reads it answers never reach the ring's ``read``."""
from __future__ import annotations

import random

import pytest

from hedge.lsm.cache import BlockCache
from hedge.lsm.keys import MAX_SEQ
from hedge.lsm.table import PAGE, TableReader
from hedge.lsm.table.reader import NOT_CACHED
from tests.lsm._drive import collect, memory_reader, run
from tests.lsm.test_table import FILE, build, random_entries
from tests.lsm.test_table_compression import text_entries


def now_reader(data: bytes, log: list, answer):
    """A ``read_now`` over ``data`` that answers the requests ``answer(n)``
    picks (n counts the requests) and logs those it answers."""
    count = [0]

    def read_now(offset: int, length: int):
        count[0] += 1
        if not answer(count[0]):
            return None
        log.append((offset, length))
        return data[offset : offset + length]

    return read_now


ANSWERS = {"always": lambda n: True, "never": lambda n: False, "alternate": lambda n: n % 2 == 0}


def _answers(reader: TableReader, entries) -> tuple:
    """Every answer a reader gives: gets of every key at three snapshots and
    of absent keys, the blocks read in runs, and the whole table."""
    keys = sorted({e[0] for e in entries})
    seqs = sorted(e[1] for e in entries)
    snaps = (MAX_SEQ, seqs[len(seqs) // 2], seqs[0] - 1)
    gets = [run(reader.get(k, s)) for k in keys for s in snaps]
    absent = [run(reader.get(k + b"\x00", MAX_SEQ)) for k in keys[::7]]
    ranges = reader.block_ranges()
    runs = []
    for start in range(0, len(ranges), 5):
        # As a scan's cursor reads: in place when it can, else through the ring.
        blocks = reader.read_blocks_now(ranges[start : start + 5])
        if blocks is None:
            blocks = run(reader.read_blocks(ranges[start : start + 5]))
        runs.append([list(b.iter_from(None)) for b in blocks])
    return gets, absent, runs, collect(reader.iter_from())


@pytest.mark.parametrize("answer", list(ANSWERS))
@pytest.mark.parametrize("cache", [False, True], ids=["nocache", "cache"])
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_read_now_changes_no_answer(compression, cache, answer):
    rng = random.Random(8)
    entries = random_entries(rng, 600) if compression == "none" else text_entries(2500)
    data, _ = build(entries, compression=compression)
    plain = run(TableReader.open(memory_reader(data), len(data), FILE, 1))
    expected = _answers(plain, entries)

    ring_log, now_log = [], []
    block_cache = BlockCache(1 << 20) if cache else None
    reader = run(TableReader.open(memory_reader(data, ring_log), len(data), FILE, 2, block_cache,
                                  now_reader(data, now_log, ANSWERS[answer])))
    ring_log.clear()                                    # the metadata read at open
    assert _answers(reader, entries) == expected
    if answer == "always":
        assert ring_log == [] and now_log
    elif answer == "never":
        assert now_log == [] and ring_log
    else:
        assert now_log and ring_log
    if compression == "zstd":                           # whole pages, as the ring reads them
        assert all(off % PAGE == 0 and length % PAGE == 0 for off, length in now_log)


def test_a_get_read_in_place_is_not_left_for_the_ring():
    entries = random_entries(random.Random(9), 300)
    data, _ = build(entries)
    reader = run(TableReader.open(memory_reader(data), len(data), FILE, 1, None,
                                  now_reader(data, [], ANSWERS["always"])))
    for key, seq, _, _ in entries:
        assert reader.get_cached(key, MAX_SEQ) is not NOT_CACHED
    refusing = run(TableReader.open(memory_reader(data), len(data), FILE, 1, None,
                                    now_reader(data, [], ANSWERS["never"])))
    assert refusing.get_cached(entries[0][0], MAX_SEQ) is NOT_CACHED


def test_blocks_read_in_place_are_not_read_again_and_the_ring_reads_the_rest():
    """read_blocks_now reads a run of blocks in place or says None; the
    ring then reads them (read_blocks never asks the page cache again)."""
    entries = random_entries(random.Random(10), 600)
    data, _ = build(entries)
    ring_log, now_log = [], []
    reader = run(TableReader.open(memory_reader(data, ring_log), len(data), FILE, 1, None,
                                  now_reader(data, now_log, ANSWERS["always"])))
    ranges = reader.block_ranges()[:4]
    ring_log.clear()
    blocks = reader.read_blocks_now(ranges)
    assert [b.offset for b in blocks] == [off for off, _ in ranges]
    assert len(now_log) == 1 and ring_log == []         # one read for the four adjacent blocks
    refusing = run(TableReader.open(memory_reader(data, ring_log), len(data), FILE, 1, None,
                                    now_reader(data, now_log, ANSWERS["never"])))
    now_log.clear()
    ring_log.clear()
    assert refusing.read_blocks_now(ranges) is None
    blocks = run(refusing.read_blocks(ranges))
    assert [list(b.iter_from(None)) for b in blocks] == [list(b.iter_from(None)) for b in
                                                         reader.read_blocks_now(ranges)]
    assert len(ring_log) == 1                           # the ring read them, once, in one request
