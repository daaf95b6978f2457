"""The async merges against the pure iterators (hedge/lsm/iterators.py) on
random data: many versions per key, deletes, several sources, snapshots and
bounds; table sources are real tables read through an in-memory reader."""
from __future__ import annotations

import random

import pytest

from hedge.lsm.amerge import ListCursor, TableCursor, amerge, table_entries, visible_merge
from hedge.lsm.iterators import merge, visible
from hedge.lsm.keys import Kind, entry_order
from hedge.lsm.table import TableBuilder, TableReader
from tests.lsm._drive import collect, memory_reader, run


def _random_sources(rng: random.Random, n_sources: int, keys: int, writes: int):
    seqs = list(range(1, writes + 1))
    rng.shuffle(seqs)
    sources = [[] for _ in range(n_sources)]
    for seq in seqs:
        key = b"k%04d" % rng.randrange(keys)
        kind = Kind.DELETE if rng.random() < 0.2 else Kind.PUT
        value = b"" if kind == Kind.DELETE else rng.randbytes(rng.randrange(0, 40))
        sources[rng.randrange(n_sources)].append((key, seq, kind, value))
    return [sorted(s, key=entry_order) for s in sources]


def _table(entries, number: int) -> TableReader:
    builder = TableBuilder(block_bytes=256)
    for e in entries:
        builder.add(*e)
    ready = builder.take_ready()
    rest, _props = builder.finish()
    data = bytearray()
    for offset, chunk in ready + rest:
        assert offset == len(data)
        data += chunk
    return run(TableReader.open(memory_reader(bytes(data)), len(data), f"t{number}.sst", number))


def _bounded(entries, start, end):
    return [e for e in entries if (start is None or e[0] >= start) and (end is None or e[0] < end)]


@pytest.mark.parametrize("seed", range(12))
def test_visible_merge_matches_the_pure_iterators(seed):
    rng = random.Random(seed)
    sources = _random_sources(rng, rng.randrange(1, 5), keys=60, writes=400)
    start = rng.choice([None, b"k%04d" % rng.randrange(60)])
    end = rng.choice([None, b"k%04d" % rng.randrange(60)])
    for snapshot in (400, 250, 90, 1):
        expected = list(visible(merge([_bounded(s, start, end) for s in sources]), snapshot))
        cursors = []
        for i, s in enumerate(sources):
            if i % 2 and s:
                cursors.append(TableCursor([_table(s, i)], start, end))
            else:
                cursors.append(ListCursor(_bounded(s, start, end), size=7))
        assert collect(visible_merge(cursors, snapshot)) == expected


def test_table_cursor_walks_a_level_of_several_tables_in_order():
    rng = random.Random(5)
    entries = sorted(_random_sources(rng, 1, keys=300, writes=900)[0], key=entry_order)
    # Split at key boundaries into three non-overlapping tables, like a level.
    cuts = [entries.index(next(e for e in entries if e[0] >= b"k%04d" % k)) for k in (100, 200)]
    parts = [entries[:cuts[0]], entries[cuts[0]:cuts[1]], entries[cuts[1]:]]
    readers = [_table(p, i) for i, p in enumerate(parts)]
    for start, end in ((None, None), (b"k0050", b"k0250"), (b"k0150", None), (b"k0100", b"k0101")):
        expected = list(visible(_bounded(entries, start, end), 10**6))
        assert collect(visible_merge([TableCursor(readers, start, end)], 10**6)) == expected
        assert collect(table_entries(readers, start, end)) == _bounded(entries, start, end)


def test_amerge_yields_entry_order_and_each_write_once():
    rng = random.Random(9)
    sources = _random_sources(rng, 4, keys=40, writes=300)
    duplicated = sources + [sources[0]]          # the same writes seen twice

    async def aiter(items):
        for item in items:
            yield item

    merged = collect(amerge([aiter(s) for s in duplicated]))
    assert merged == sorted((e for s in sources for e in s), key=entry_order)
