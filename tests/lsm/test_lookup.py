"""Point lookups over a super version: probe order, and a lookup that needs a
block read resumes after the table that missed, never from the first."""
from __future__ import annotations

import random
from bisect import bisect_left

import pytest

from hedge.lsm.keys import Kind
from hedge.lsm.lookup import NeedsIO, SuperVersion
from hedge.lsm.memtable import Memtable
from hedge.lsm.table.reader import NOT_CACHED
from hedge.lsm.version import Version
from hedge.lsm.version_edit import NUM_LEVELS
from tests.lsm._drive import run
from tests.lsm.helpers import table

PUT, DELETE = Kind.PUT, Kind.DELETE


class FakeReader:
    """A table's point-lookup interface: ``entries`` maps key -> (seq, kind,
    value) (one version each); ``cached`` says whether its blocks are in
    the cache.  Every call is appended to the shared ``log``."""

    def __init__(self, meta, log, entries=None, cached=True):
        self.meta = meta
        self.file_name = f"{meta.number:06d}.sst"
        self.log = log
        self.entries = entries or {}
        self.cached = cached

    def _answer(self, key, snap):
        found = self.entries.get(key)
        return found if found is not None and found[0] <= snap else None

    def get_cached(self, key, snap):
        self.log.append(("cached", self.meta.number))
        if not self.meta.smallest_key <= key <= self.meta.largest_key:
            return None
        if not self.cached:
            return NOT_CACHED
        return self._answer(key, snap)

    async def get_uncached(self, key, snap):
        assert ("read", self.meta.number) not in self.log, "a table read twice for one lookup"
        self.log.append(("read", self.meta.number))
        return self._answer(key, snap)


def super_version(levels, readers, mem=None, imms=()):
    padded = list(levels) + [()] * (NUM_LEVELS - len(levels))
    return SuperVersion(mem or Memtable(), 1, imms, Version(padded), readers)


def tree(log, specs):
    """``specs``: level -> [(number, smallest, largest, entries, cached)]."""
    levels = [[] for _ in range(max(specs) + 1)]
    readers = {}
    for level, tables in specs.items():
        for number, lo, hi, entries, cached in tables:
            meta = table(number, lo, hi)
            levels[level].append(meta)
            readers[number] = FakeReader(meta, log, entries, cached)
    return super_version(levels, readers), readers


def test_cached_blocks_answer_without_needs_io_in_probe_order():
    log = []
    sv, _ = tree(log, {0: [(12, "a", "m", {}, True), (10, "c", "f", {b"d": (10, PUT, b"l0")}, True)],
                       1: [(6, "d", "e", {b"d": (6, PUT, b"l1")}, True)]})
    assert sv.get(b"d", 100) == b"l0"
    assert log == [("cached", 12), ("cached", 10)]


def test_a_miss_resumes_at_the_next_l0_table():
    log = []
    sv, _ = tree(log, {0: [(12, "a", "m", {}, False), (11, "n", "z", {}, False),
                           (10, "c", "f", {b"d": (10, PUT, b"l0")}, True)]})
    pending = sv.get(b"d", 100)
    assert type(pending) is NeedsIO
    assert log == [("cached", 12)]
    assert run(pending.finish()) == b"l0"
    # Table 12 is read once and never probed again; 11 is out of range.
    assert log == [("cached", 12), ("read", 12), ("cached", 10)]


def test_misses_in_l0_and_deep_levels_each_resume_after_themselves():
    log = []
    sv, _ = tree(log, {0: [(12, "a", "m", {}, False)],
                       1: [(5, "a", "b", {}, True), (6, "d", "e", {}, False)],
                       2: [(3, "a", "d", {}, True), (4, "e", "z", {}, True)],
                       3: [(1, "a", "z", {b"d": (1, PUT, b"deep")}, False)]})
    pending = sv.get(b"d", 100)
    assert run(pending.finish()) == b"deep"
    assert log == [("cached", 12), ("read", 12), ("cached", 6), ("read", 6), ("cached", 3),
                   ("cached", 1), ("read", 1)]


def test_a_read_that_finds_the_key_stops_there():
    log = []
    sv, _ = tree(log, {0: [(12, "a", "m", {b"d": (12, PUT, b"new")}, False)],
                       1: [(6, "d", "e", {b"d": (6, PUT, b"old")}, False)]})
    assert run(sv.get(b"d", 100).finish()) == b"new"
    assert log == [("cached", 12), ("read", 12)]


@pytest.mark.parametrize("cached", [True, False])
def test_a_tombstone_hides_older_tables(cached):
    log = []
    sv, _ = tree(log, {0: [(12, "a", "m", {b"d": (12, DELETE, b"")}, cached)],
                       1: [(6, "d", "e", {b"d": (6, PUT, b"old")}, True)]})
    found = sv.get(b"d", 100)
    assert (found if cached else run(found.finish())) is None
    assert ("cached", 6) not in log


def test_no_table_in_range_is_none_and_the_snapshot_is_kept():
    log = []
    sv, _ = tree(log, {1: [(6, "d", "e", {b"d": (60, PUT, b"later")}, False)]})
    assert sv.get(b"x", 100) is None
    assert log == []
    # The version in table 6 is newer than the snapshot: the read finds nothing.
    assert run(sv.get(b"d", 59).finish()) is None


def test_memtables_answer_before_any_table():
    log = []
    mem, imm = Memtable(), Memtable()
    imm.add(b"d", 20, PUT, b"imm")
    mem.add(b"e", 30, DELETE, b"")
    meta = table(12, "a", "m")
    reader = FakeReader(meta, log, {b"d": (12, PUT, b"table"), b"e": (12, PUT, b"table")}, False)
    sv = super_version([[meta]], {12: reader}, mem=mem, imms=((imm, 7),))
    assert sv.get(b"d", 100) == b"imm"
    assert sv.get(b"e", 100) is None
    assert sv.get(b"d", 19) is not None and log == [("cached", 12)]


def test_a_super_version_needs_a_reader_for_every_table():
    with pytest.raises(KeyError):
        super_version([[table(12, "a", "m")]], {})


def test_point_levels_pick_the_table_files_for_key_picks():
    rng = random.Random(7)
    levels = [()]
    number = 1
    for _level in range(1, 4):
        bounds = sorted(rng.sample(range(1000), 12))
        files = []
        for lo, hi in zip(bounds[0::2], bounds[1::2]):
            files.append(table(number, b"%04d" % lo, b"%04d" % hi))
            number += 1
        levels.append(tuple(files))
    v = Version(list(levels) + [()] * (NUM_LEVELS - len(levels)))
    for k in range(1001):
        key = b"%04d" % k
        expected = [(lvl, m.number) for lvl, m in v.files_for_key(key)]
        got = []
        for level, largest_keys, files in v.point_levels():
            i = bisect_left(largest_keys, key)
            if i < len(files) and files[i].smallest_key <= key:
                got.append((level, files[i].number))
        brute = [(lvl, m.number) for lvl, files in enumerate(v.levels) for m in files
                 if m.smallest_key <= key <= m.largest_key]
        assert got == expected == brute, key
