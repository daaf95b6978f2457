"""Reverse scans at the engine's level (hedge/lsm/reverse.py): the reverse
merge against the forward pure iterators reversed, on random sources with
many versions per key, deletes, snapshots and bounds; the versions of one
key spread over blocks and sources; the reverse table cursor over a level
of several tables; Memtable.iter_reverse against the model and while keys
are added."""
from __future__ import annotations

import random

import pytest

from hedge.lsm.amerge import READ_AHEAD_BLOCKS, ListCursor
from hedge.lsm.iterators import merge, visible
from hedge.lsm.keys import Kind, entry_order
from hedge.lsm.memtable import Memtable
from hedge.lsm.reverse import ReverseTableCursor, reverse_visible_merge
from tests.lsm._drive import collect, collect_chunks, run
from tests.lsm.model import random_entries, sorted_entries
from tests.lsm.test_amerge import (_bounded, _level_of_three_tables, _random_sources, _table, _values_entries,
                                   check_first_reads_sized_by_the_limit)


def _reverse_runs(entries, rng: random.Random):
    """``entries`` (entry order) as one reverse sequence: keys descending,
    each key's versions in a random order among themselves."""
    by_key: dict[bytes, list] = {}
    for e in entries:
        by_key.setdefault(e[0], []).append(e)
    out = []
    for key in sorted(by_key, reverse=True):
        versions = by_key[key]
        rng.shuffle(versions)
        out += versions
    return out


def _expected(sources, snapshot, start=None, end=None):
    return list(visible(merge([_bounded(s, start, end) for s in sources]), snapshot))[::-1]


def _cursors(sources, rng, start, end):
    cursors = []
    for i, s in enumerate(sources):
        if i % 2 and s:
            cursors.append(ReverseTableCursor([_table(s, i)], start, end))
        else:
            cursors.append(ListCursor(_reverse_runs(_bounded(s, start, end), rng), size=rng.choice((1, 7, 128))))
    return cursors


@pytest.mark.parametrize("seed", range(16))
def test_reverse_merge_matches_the_forward_iterators_reversed(seed):
    rng = random.Random(seed)
    sources = _random_sources(rng, rng.randrange(1, 6), keys=60, writes=500)
    start = rng.choice([None, b"k%04d" % rng.randrange(60), b"k%04d\x00" % rng.randrange(60)])
    end = rng.choice([None, b"k%04d" % rng.randrange(60)])
    for snapshot in (500, 320, 90, 1, 0):
        want = rng.choice((1, 3, 256))
        assert collect_chunks(reverse_visible_merge(_cursors(sources, rng, start, end), snapshot, want), want, rng) == \
            _expected(sources, snapshot, start, end), (start, end, snapshot)


@pytest.mark.parametrize("seed", range(6))
def test_many_versions_of_one_key_across_blocks_and_sources(seed):
    """One key written 300 times, its versions split over three tables of
    256-byte blocks (so each table holds them over several blocks) and a
    memtable-like list, with neighbours on either side; deletes among the
    versions.  Every snapshot sees the newest version at or below it."""
    rng = random.Random(seed)
    hot = b"k0005"
    seqs = list(range(1, 401))
    rng.shuffle(seqs)
    sources = [[] for _ in range(4)]
    for n, seq in enumerate(seqs):
        key = hot if n < 300 else b"k%04d" % rng.choice((3, 4, 6, 7))
        kind = Kind.DELETE if rng.random() < 0.15 else Kind.PUT
        value = b"" if kind == Kind.DELETE else b"v%d-" % seq + bytes(rng.randrange(30))
        sources[rng.randrange(4)].append((key, seq, kind, value))
    sources = [sorted(s, key=entry_order) for s in sources]
    tables = [_table(s, i) for i, s in enumerate(sources[:3])]
    assert all(t.block_count > 3 for t in tables)
    for snapshot in [0, 400] + rng.sample(range(1, 400), 40):
        for start, end in ((None, None), (hot, b"k0006"), (b"k0004\x00", None), (None, hot + b"\x00")):
            cursors = [ReverseTableCursor([t], start, end) for t in tables]
            cursors.append(ListCursor(_reverse_runs(_bounded(sources[3], start, end), rng), size=3))
            rng.shuffle(cursors)          # source order does not matter
            want = rng.choice((1, 4, 256))
            assert collect_chunks(reverse_visible_merge(cursors, snapshot, want), want, rng) == \
                _expected(sources, snapshot, start, end), (snapshot, start, end)


def test_reverse_table_cursor_walks_a_level_of_several_tables_backwards():
    entries, readers = _level_of_three_tables()
    for start, end in ((None, None), (b"k0050", b"k0250"), (b"k0150", None), (b"k0100", b"k0101"),
                       (None, b"k0000"), (b"k0299\x00", None)):
        runs = collect(_runs(ReverseTableCursor(readers, start, end)))
        assert all(runs), "no empty run"
        assert [e for run in runs for e in run] == _bounded(entries, start, end)[::-1], (start, end)
        assert collect_chunks(reverse_visible_merge([ReverseTableCursor(readers, start, end)], 10**6)) == \
            list(visible(_bounded(entries, start, end), 10**6))[::-1]


async def _runs(cursor):
    while (run := await cursor.next_block()) is not None:
        yield run


def test_reverse_merge_of_nothing_and_of_empty_sources():
    assert collect_chunks(reverse_visible_merge([], 10)) == []
    assert collect_chunks(reverse_visible_merge([ListCursor([]), ListCursor([])], 10)) == []
    only_deletes = [(b"a", 2, Kind.DELETE, b""), (b"a", 1, Kind.PUT, b"x")]
    assert collect_chunks(reverse_visible_merge([ListCursor(only_deletes), ListCursor([])], 10)) == []
    assert collect_chunks(reverse_visible_merge([ListCursor(only_deletes), ListCursor([])], 1)) == [(b"a", b"x")]


def test_the_empty_key_is_a_key_like_any_other():
    source = [(b"b", 3, Kind.PUT, b"B"), (b"", 2, Kind.PUT, b"E"), (b"", 1, Kind.PUT, b"old")]
    other = [(b"", 4, Kind.DELETE, b"")]
    assert collect_chunks(reverse_visible_merge([ListCursor(source)], 10)) == [(b"b", b"B"), (b"", b"E")]
    assert collect_chunks(reverse_visible_merge([ListCursor(source), ListCursor(other)], 10)) == [(b"b", b"B")]
    assert collect_chunks(reverse_visible_merge([ListCursor(source), ListCursor(other)], 3)) == [(b"b", b"B"), (b"", b"E")]


def _by_key_desc(entries):
    """Entries (entry order) with keys descending, each key's versions
    still newest first: what Memtable.iter_reverse yields."""
    by_key: dict[bytes, list] = {}
    for e in entries:
        by_key.setdefault(e[0], []).append(e)
    return [e for key in sorted(by_key, reverse=True) for e in by_key[key]]


def test_memtable_iter_reverse_matches_the_model_over_ranges():
    rng = random.Random(9)
    entries = random_entries(rng, 3000, 300)
    mt = Memtable()
    for e in entries:
        mt.add(*e)
    assert list(mt.iter_reverse()) == _by_key_desc(sorted_entries(entries))
    keys = sorted({e[0] for e in entries})
    for _ in range(50):
        start = rng.choice(keys + [None, b"\x00", rng.randbytes(2)])
        end = rng.choice(keys + [None, b"\xff" * 5, rng.randbytes(2)])
        assert list(mt.iter_reverse(start, end)) == _by_key_desc(sorted_entries(entries, start, end)), (start, end)


@pytest.mark.parametrize("nkeys", [1, 63, 64, 65, 130, 300, 1000])
def test_memtable_iter_reverse_while_keys_are_added_sees_every_key_once(nkeys):
    """Keys added (above and below the position, and new versions of keys
    already passed) between the steps of a reverse iteration, across chunk
    boundaries: every key present at the start comes once, descending."""
    rng = random.Random(nkeys)
    mt = Memtable()
    seq = 0
    present = set()
    while len(present) < nkeys:
        key = rng.randbytes(rng.randint(1, 4))
        if key not in present:
            seq += 1
            mt.add(key, seq, Kind.PUT, b"v")
            present.add(key)
    initial = set(present)
    keys = []
    for entry in mt.iter_reverse():
        if not keys or keys[-1] != entry[0]:
            keys.append(entry[0])
        for _ in range(2):
            seq += 1
            key = rng.randbytes(rng.randint(1, 4))
            mt.add(key, seq, Kind.PUT, b"w" if key in present else b"n")
            present.add(key)
    assert all(a > b for a, b in zip(keys, keys[1:])), "descending, no key twice"
    assert initial <= set(keys)


class _CountingReader:
    """A TableReader's face for ReverseTableCursor, counting the blocks it
    reads."""

    def __init__(self, reader):
        self._reader = reader
        self.reads = 0

    def iter_block_ranges_reverse(self, start, end):
        return self._reader.iter_block_ranges_reverse(start, end)

    async def read_block(self, offset, length, fill_cache=True):
        self.reads += 1
        return await self._reader.read_block(offset, length, fill_cache)

    def read_blocks_now(self, ranges, fill_cache=True):
        assert ranges == sorted(ranges), "read_blocks_now takes ranges in file order"
        blocks = self._reader.read_blocks_now(ranges, fill_cache)
        if blocks is not None:
            self.reads += len(ranges)
        return blocks

    async def read_blocks(self, ranges, fill_cache=True):
        assert ranges == sorted(ranges), "read_blocks takes ranges in file order"
        self.reads += len(ranges)
        return await self._reader.read_blocks(ranges, fill_cache)


def test_reverse_table_cursor_reads_no_block_below_the_start():
    entries = [(b"k%04d" % i, i + 1, Kind.PUT, b"v" * 20) for i in range(600)]
    parts = [entries[:200], entries[200:400], entries[400:]]
    readers = [_CountingReader(_table(p, i)) for i, p in enumerate(parts)]
    start = b"k0450"
    runs = collect(_runs(ReverseTableCursor(readers, start, None)))
    assert [e for run in runs for e in run] == entries[450:][::-1]
    assert readers[0].reads == readers[1].reads == 0
    table = readers[2]._reader
    blocks_needed = len(table.block_ranges(start, None))
    assert table.block_count > blocks_needed and readers[2].reads == blocks_needed


def test_reverse_table_cursor_reads_ahead_doubling_from_its_last_block():
    """Read backwards, a table's first read takes its last block, each next
    one twice as many (one request over blocks adjacent in the file), up to
    the read-ahead limit, walking towards the file's start; every entry
    comes back once, keys descending."""
    log: list = []
    entries = _values_entries(2000)
    reader = _table(entries, 1, log)
    blocks = reader.block_count
    assert blocks > 2 * READ_AHEAD_BLOCKS
    runs = collect(_runs(ReverseTableCursor([reader], None, None)))
    assert [e for r in runs for e in r] == entries[::-1]
    per_request = [sum(1 for o, n in reader.block_ranges() if offset <= o and o + n <= offset + length)
                   for offset, length in log]
    assert per_request[:5] == [1, 2, 4, 8, 16]
    assert max(per_request) == READ_AHEAD_BLOCKS and sum(per_request) == blocks
    offsets = [offset for offset, _length in log]
    assert offsets == sorted(offsets, reverse=True)
    assert log[0][0] == reader.block_ranges()[-1][0]


def test_reverse_first_reads_sized_by_the_limit_leave_the_merge_nothing_to_read():
    """As forward (tests/lsm/test_amerge.py), below the scan's end."""
    limit, end = 60, b"k01300"
    check_first_reads_sized_by_the_limit(
        lambda reader, pair_bytes: ReverseTableCursor([reader], None, end, pair_bytes=pair_bytes),
        lambda cursors: run(reverse_visible_merge(cursors, 10**6, limit).__anext__()),
        limit, [b"k%05d" % i for i in range(1299, 1299 - limit, -1)])
