"""The async merges against the pure iterators (hedge/lsm/iterators.py) on
random data: many versions per key, deletes, several sources, snapshots and
bounds; table sources are real tables read through an in-memory reader."""
from __future__ import annotations

import random

import pytest

from hedge.lsm.amerge import MIN_RUN, READ_MARGIN, ListCursor, MemtableCursor, TableCursor, merge_runs, visible_merge
from hedge.lsm.block import Block
from hedge.lsm.cache import BlockCache
from hedge.lsm.iterators import merge, visible
from hedge.lsm.keys import Kind, entry_order
from hedge.lsm.memtable import Memtable
from hedge.lsm.table import TableBuilder, TableReader
from tests.lsm._drive import collect, collect_chunks, memory_reader, run


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


def _table(entries, number: int, log: list | None = None, compression: str = "none", cache=None,
           block_bytes: int = 256) -> TableReader:
    """A table of ``entries`` in memory; its reads are appended to ``log``
    (from after the open) when given."""
    builder = TableBuilder(block_bytes=block_bytes, compression=compression)
    for e in entries:
        builder.add(*e)
    ready = builder.take_ready()
    rest, _props = builder.finish()
    data = bytearray()
    for offset, chunk in ready + rest:
        assert offset == len(data)
        data += chunk
    reader = run(TableReader.open(memory_reader(bytes(data), log), len(data), f"t{number}.sst", number, cache))
    if log is not None:
        log.clear()
    return reader


def _bounded(entries, start, end):
    return [e for e in entries if (start is None or e[0] >= start) and (end is None or e[0] < end)]


def _memtable(entries) -> Memtable:
    mt = Memtable()
    for entry in sorted(entries, key=lambda e: e[1]):     # a key's versions oldest first
        mt.add(*entry)
    return mt


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("memtable_cursor", ["ListCursor", "MemtableCursor"])
def test_visible_merge_matches_the_pure_iterators(seed, memtable_cursor):
    """Tables and memtable sources (a ListCursor over the entries, or a
    MemtableCursor over a Memtable holding them, of any run size): the
    merge gives what the pure iterators give, at every snapshot and bound,
    with or without a limit (a hint: the pairs are the same)."""
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
            elif memtable_cursor == "ListCursor":
                cursors.append(ListCursor(_bounded(s, start, end), size=7))
            else:
                size = rng.choice((1, 3, 128))
                cursors.append(MemtableCursor(_memtable(s), start, end, snapshot, size=size, first=min(size, 2)))
        want = rng.choice((1, 3, 256))
        limit = rng.choice((None, 1, 5, 50))
        assert collect_chunks(visible_merge(cursors, snapshot, want, limit), want, rng) == expected


def test_memtable_cursor_runs_double_up_to_their_size_and_skip_invisible_keys():
    mt = Memtable()
    for i in range(100):
        mt.add(b"k%03d" % i, i + 1, Kind.PUT, b"v")
    cursor = MemtableCursor(mt, b"k010", b"k090", 60, size=16, first=2)
    runs = []
    while (entries := run(cursor.next_block())) is not None:
        runs.append(entries)
    # Keys k010..k059 are visible at seq 60 (k059 has seq 60); the later
    # runs cover k060..k089, none visible, and are not handed out.
    assert [len(r) for r in runs] == [2, 4, 8, 16, 16, 4]
    assert [e for r in runs for e in r] == [(b"k%03d" % i, i + 1, Kind.PUT, b"v") for i in range(10, 60)]
    assert run(cursor.next_block()) is None


@pytest.mark.parametrize("seed", range(12))
def test_visible_merge_with_one_source_holding_most_keys(seed):
    """Long stretches of one cursor between the others' keys (as in a tree
    whose last level holds most of the data), with several versions per
    key, deletes and snapshots, against the pure iterators."""
    rng = random.Random(1000 + seed)
    n_sources = rng.randint(2, 4)
    weights = [0.85] + [0.15 / (n_sources - 1)] * (n_sources - 1)
    seqs = list(range(1, 1501))
    rng.shuffle(seqs)
    sources = [[] for _ in range(n_sources)]
    for seq in seqs:
        key = b"k%05d" % rng.randrange(900)
        kind = Kind.DELETE if rng.random() < 0.1 else Kind.PUT
        value = b"" if kind == Kind.DELETE else b"%d" % seq
        sources[rng.choices(range(n_sources), weights)[0]].append((key, seq, kind, value))
    sources = [sorted(s, key=entry_order) for s in sources]
    start = rng.choice([None, b"k%05d" % rng.randrange(900)])
    for snapshot in (1500, 1000, 300):
        expected = list(visible(merge([_bounded(s, start, None) for s in sources]), snapshot))
        cursors = [TableCursor([_table(s, i)], start, None) if i % 2 == 0 else
                   ListCursor(_bounded(s, start, None), size=rng.choice((1, 5, 128)))
                   for i, s in enumerate(sources)]
        want = rng.choice((1, 3, 256))
        assert collect_chunks(visible_merge(cursors, snapshot, want), want, rng) == expected


@pytest.mark.parametrize("seed", range(12))
def test_visible_merge_with_a_limit_gives_the_same_pairs(seed):
    """A limit only tells the table cursors how much of a block to decode:
    the pairs are those of the merge without it, however many the consumer
    takes (even past the limit), for any chunk sizes."""
    rng = random.Random(2000 + seed)
    sources = _random_sources(rng, rng.randrange(1, 5), keys=80, writes=500)
    start = rng.choice([None, b"k%04d" % rng.randrange(80)])
    for snapshot in (500, 200):
        expected = list(visible(merge([_bounded(s, start, None) for s in sources]), snapshot))
        cursors = [TableCursor([_table(s, i)], start, None) if i % 2 == 0 or not s else
                   ListCursor(_bounded(s, start, None), size=7)
                   for i, s in enumerate(sources)]
        want = rng.choice((1, 3, 16, 256))
        limit = rng.choice((0, 1, 2, 5, 17, 60, 1000))
        assert collect_chunks(visible_merge(cursors, snapshot, want, limit), want, rng) == expected


def _count_decoded(monkeypatch) -> list[int]:
    """A list that gets the number of entries of each ``entries_between``
    call from now on (what a cursor decodes)."""
    decoded: list[int] = []
    original = Block.entries_between

    def counting(block, first, stop):
        decoded.append(stop - first)
        return original(block, first, stop)

    monkeypatch.setattr(Block, "entries_between", counting)
    return decoded


def test_a_limited_merge_decodes_no_more_of_a_block_than_it_takes(monkeypatch):
    """With a limit, a table cursor decodes the entries the merge still
    needs (at least MIN_RUN), not the rest of its block; without one, whole
    blocks."""
    entries = [(b"k%05d" % i, i + 1, Kind.PUT, b"v") for i in range(2000)]
    reader = _table(entries, 1, block_bytes=8192)
    decoded = _count_decoded(monkeypatch)
    for limit, start in ((5, None), (2, b"k00100"), (MIN_RUN + 3, b"k00500")):
        decoded.clear()
        chunk = run(visible_merge([TableCursor([reader], start, None)], 10**6, limit, limit).__anext__())
        first = 0 if start is None else int(start[1:])
        assert chunk == [(e[0], e[3]) for e in entries[first:first + max(limit, MIN_RUN)]]
        assert sum(decoded) == max(limit, MIN_RUN), decoded
    decoded.clear()
    run(visible_merge([TableCursor([reader], None, None)], 10**6, 5).__anext__())
    assert sum(decoded) > 100, decoded          # the whole first block


def test_a_limited_merge_of_a_memtable_and_a_table_takes_one_run_of_the_table(monkeypatch):
    """With several sources, a round leaves the entries at its bound (the
    last key of the shortest run) for the next round; each source is asked
    for one entry more than the pairs still wanted, so a memtable that
    only overwrites keys of the table does not cost a second run of it."""
    entries = [(b"k%05d" % i, i + 1, Kind.PUT, b"v") for i in range(2000)]
    reader = _table(entries, 1, block_bytes=8192)
    updates = [(b"k%05d" % i, 10_000 + i, Kind.PUT, b"new") for i in range(0, 2000, 3)]
    mem = _memtable(updates)
    decoded = _count_decoded(monkeypatch)
    for limit, start in ((1, b"k00100"), (20, b"k00100"), (50, b"k00501")):
        decoded.clear()
        cursors = [MemtableCursor(mem, start, None, 10**6), TableCursor([reader], start, None)]
        chunk = run(visible_merge(cursors, 10**6, limit, limit).__anext__())
        first = int(start[1:])
        assert chunk[:limit] == [(b"k%05d" % i, b"new" if i % 3 == 0 else b"v")
                                 for i in range(first, first + limit)]
        assert decoded == [max(limit + 1, MIN_RUN)], decoded     # one run of the table


def test_a_run_goes_on_into_the_blocks_read_ahead_and_never_reads_for_them():
    """A run that uses up its block takes the entries of the blocks already
    read ahead, up to the limit (all of them without one), in one run; it
    never reads to get more."""
    entries = _values_entries(400)
    log: list = []
    reader = _table(entries, 1, log)
    sizes = [len(run(reader.read_block(o, n, False))) for o, n in reader.block_ranges()]
    log.clear()
    # Start at the second block (the first holds one entry).
    taken = sizes.pop(0)
    assert len(sizes) > 20 and sizes[0] > MIN_RUN
    cursor = TableCursor([reader], entries[taken][0], None)
    assert run(cursor.next_block(1)) == entries[taken:taken + MIN_RUN]     # reads its block
    assert len(log) == 1
    assert run(cursor.next_block(1000)) == entries[taken + MIN_RUN:taken + sizes[0]]  # nothing read ahead
    assert len(log) == 1
    taken += sizes[0]
    # The next read takes two blocks in one request: the run holds both.
    assert run(cursor.next_block(1000)) == entries[taken:taken + sizes[1] + sizes[2]]
    assert len(log) == 2
    taken += sizes[1] + sizes[2]
    # Four blocks next; a limit ending inside the second stops there.
    want = sizes[3] + 1
    assert run(cursor.next_block(want)) == entries[taken:taken + want]
    assert len(log) == 3
    taken += want
    # Without a limit: the rest of those four blocks, and no read.
    assert run(cursor.next_block()) == entries[taken:taken + sum(sizes[3:7]) - want]
    assert len(log) == 3


def _level_of_three_tables() -> tuple[list, list[TableReader]]:
    """Random entries (keys k0000..k0299, several versions each) and the
    three non-overlapping tables, like a level, they are split into at key
    boundaries."""
    rng = random.Random(5)
    entries = sorted(_random_sources(rng, 1, keys=300, writes=900)[0], key=entry_order)
    cuts = [entries.index(next(e for e in entries if e[0] >= b"k%04d" % k)) for k in (100, 200)]
    parts = [entries[:cuts[0]], entries[cuts[0]:cuts[1]], entries[cuts[1]:]]
    return entries, [_table(p, i) for i, p in enumerate(parts)]


def test_table_cursor_walks_a_level_of_several_tables_in_order():
    entries, readers = _level_of_three_tables()
    for start, end in ((None, None), (b"k0050", b"k0250"), (b"k0150", None), (b"k0100", b"k0101")):
        expected = list(visible(_bounded(entries, start, end), 10**6))
        assert collect_chunks(visible_merge([TableCursor(readers, start, end)], 10**6)) == expected
        # Chunks of one to nine pairs: the same pairs, each chunk as big as asked.
        rng = random.Random(repr((start, end)))
        assert collect_chunks(visible_merge([TableCursor(readers, start, end)], 10**6, 2), 2, rng) == expected
        runs = collect(merge_runs([TableCursor(readers, start, end)], chunk=1))
        assert [e for run in runs for e in run] == _bounded(entries, start, end)


def _in_runs(items, rng):
    """A cursor handing out ``items`` in runs of random lengths."""

    class Runs:
        def __init__(self):
            self._pos = 0

        async def next_block(self, limit=None):
            if self._pos >= len(items):
                return None
            n = rng.randint(1, 9)
            run = items[self._pos:self._pos + n]
            self._pos += n
            return run

    return Runs()


@pytest.mark.parametrize("seed", range(20))
def test_merge_runs_gives_entry_order_each_write_once_in_key_aligned_chunks(seed):
    """Against a sort of every entry: random sources (some identical, the
    same writes seen twice), runs of random lengths, many chunk sizes."""
    rng = random.Random(seed)
    sources = _random_sources(rng, rng.randint(1, 6), keys=rng.choice((5, 40, 400)), writes=rng.choice((1, 50, 600)))
    if rng.random() < 0.5:
        sources.append(sources[0])           # the same writes seen twice
    if rng.random() < 0.3:
        sources.insert(0, [])                # an empty source
    expected = sorted({(e[0], e[1]): e for s in sources for e in s}.values(), key=entry_order)
    chunk = rng.choice((1, 2, 7, 64, 100_000))
    if rng.random() < 0.5:
        cursors = [_in_runs(s, rng) for s in sources]
    else:
        cursors = [TableCursor([_table(s, i)], None, None) if s else ListCursor(s)
                   for i, s in enumerate(sources)]
    chunks = collect(merge_runs(cursors, chunk))
    assert [e for c in chunks for e in c] == expected
    assert all(c for c in chunks)
    assert all(len(c) >= chunk for c in chunks[:-1])
    for a, b in zip(chunks, chunks[1:]):
        assert a[-1][0] != b[0][0], "a key's versions were split between two chunks"


@pytest.mark.parametrize("seed", range(40))
def test_visible_merge_rounds_with_runs_of_any_length(seed):
    """Runs of 1 to 9 entries cut anywhere, so runs often end inside a
    key's versions and at the same key as other sources' runs; sources in
    any order of age, some empty; any snapshot, want and limit: the pairs
    of the pure iterators."""
    rng = random.Random(3000 + seed)
    sources = _random_sources(rng, rng.randint(2, 6), keys=rng.choice((3, 12, 80)), writes=rng.choice((5, 60, 400)))
    if rng.random() < 0.3:
        sources.insert(rng.randrange(len(sources)), [])
    writes = sum(len(s) for s in sources)
    for snapshot in (writes, rng.randint(1, max(writes, 1)), 1):
        expected = list(visible(merge(sources), snapshot))
        want = rng.choice((1, 3, 256))
        limit = rng.choice((None, 1, 7, 1000))
        pairs = collect_chunks(visible_merge([_in_runs(s, rng) for s in sources], snapshot, want, limit), want, rng)
        assert pairs == expected


def _values_entries(n: int, value_bytes: int = 100):
    rng = random.Random(n)
    return [(b"k%05d" % i, i + 1, Kind.PUT, rng.randbytes(value_bytes)) for i in range(n)]


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_table_cursor_reads_ahead_doubling_from_one_block(compression):
    """A scan's first read takes one block, each next one twice as many (one
    request each), up to the read-ahead limit; every entry comes back once,
    in order."""
    from hedge.lsm import amerge
    log: list = []
    entries = _values_entries(2000)
    reader = _table(entries, 1, log, compression)
    blocks = reader.block_count
    assert blocks > 2 * amerge.READ_AHEAD_BLOCKS
    runs = collect(merge_runs([TableCursor([reader], None, None)], chunk=1))
    assert [e for r in runs for e in r] == entries
    assert len(log) < blocks // 4
    if compression == "none":           # page-aligned blocks: count the blocks each request covers
        per_request = [sum(1 for o, n in reader.block_ranges() if offset <= o and o + n <= offset + length)
                       for offset, length in log]
        assert per_request[:5] == [1, 2, 4, 8, 16]
        assert max(per_request) == amerge.READ_AHEAD_BLOCKS
        assert sum(per_request) == blocks


def test_a_short_scan_reads_only_its_first_block():
    log: list = []
    reader = _table(_values_entries(500), 1, log)
    cursor = TableCursor([reader], b"k00100", None)
    first = run(cursor.next_block())
    assert first[0][0] == b"k00100"
    assert len(log) == 1 and log[0][1] <= 4096


def test_read_ahead_takes_cached_blocks_from_the_cache_and_reads_the_others_in_runs():
    from hedge.lsm.cache import BlockCache
    log: list = []
    entries = _values_entries(600)
    reader = _table(entries, 1, log, cache=BlockCache(1 << 20))
    ranges = reader.block_ranges()
    # Cache every third block.
    for offset, length in ranges[::3]:
        run(reader.read_block(offset, length))
    log.clear()
    blocks = run(reader.read_blocks(ranges[:9]))
    assert [b.entries() for b in blocks] == [run(reader.read_block(o, n)).entries() for o, n in ranges[:9]]
    # Blocks 1-2, 4-5 and 7-8 were missing: three reads of two blocks each.
    assert [(o, n) for o, n in log] == [(ranges[i][0], ranges[i][1] + ranges[i + 1][1]) for i in (1, 4, 7)]


def test_a_damaged_block_in_a_read_ahead_run_is_a_corruption_error():
    from hedge.errors import CorruptionError
    builder = TableBuilder(block_bytes=256)
    for e in _values_entries(300):
        builder.add(*e)
    ready = builder.take_ready()
    rest, _props = builder.finish()
    data = bytearray(b"".join(chunk for _, chunk in ready + rest))
    reader = run(TableReader.open(memory_reader(bytes(data)), len(data), "t.sst", 1))
    ranges = reader.block_ranges()
    data[ranges[5][0] + 10] ^= 0xFF
    damaged = run(TableReader.open(memory_reader(bytes(data)), len(data), "t.sst", 1))
    with pytest.raises(CorruptionError):
        run(damaged.read_blocks(ranges[2:10]))
    with pytest.raises(CorruptionError):
        collect(merge_runs([TableCursor([damaged], None, None)], chunk=1))


def test_first_read_reads_an_uncached_first_block_once_and_leaves_it_to_the_merge():
    """``first_read`` (what read_first_blocks awaits for every source of a
    scan together) reads the first block of a cursor whose block is not
    cached, and the merge then takes it without reading it again; a cursor
    whose first block is cached, or whose range is empty, has none."""
    rng = random.Random(11)
    sources = _random_sources(rng, 3, keys=200, writes=900)
    logs = [[] for _ in sources]
    # No cache: a block read twice would show in the logs.
    readers = [_table(s, i, log=logs[i]) for i, s in enumerate(sources)]
    start = b"k0050"
    expected = list(visible(merge([_bounded(s, start, None) for s in sources]), 10**6))

    cursors = [TableCursor([r], start, None) for r in readers]
    reads = [c.first_read() for c in cursors]
    assert all(r is not None for r in reads)
    for r in reads:
        run(r)
    assert [len(log) for log in logs] == [1, 1, 1]
    first_reads = [list(log) for log in logs]
    assert cursors[0].first_read() is None            # started: nothing more to do
    assert collect_chunks(visible_merge(cursors, 10**6)) == expected
    for log, first in zip(logs, first_reads):
        assert log[0] == first[0] and log.count(first[0]) == 1   # the first block was read once

    # With a cache holding the first blocks, a scan has nothing to read first.
    cache = BlockCache(1 << 20)
    readers = [_table(s, i, cache=cache) for i, s in enumerate(sources)]
    warm = [TableCursor([r], start, None) for r in readers]
    for r in [c.first_read() for c in warm]:
        run(r)
    again = [TableCursor([r], start, None) for r in readers]
    assert [c.first_read() for c in again] == [None, None, None]
    assert collect_chunks(visible_merge(again, 10**6)) == expected
    # An empty range reads nothing.
    assert TableCursor([readers[0]], b"k0100", b"k0100").first_read() is None


def _interleaved_tables(n_sources: int, entries_each: int, logs: list, cache=None) -> tuple[list, list]:
    """``n_sources`` tables (100 B values, 256 B blocks) holding every
    ``n_sources``-th key of one key space each, as L0 tables of hashed keys
    do; and each one's bytes per pair of the whole key space (TableCursor's
    ``pair_bytes``)."""
    entries = _values_entries(n_sources * entries_each)
    readers = [_table(entries[j::n_sources], j, logs[j], cache=cache) for j in range(n_sources)]
    total = len(entries)
    pair_bytes = [sum(n for _o, n in r.block_ranges()) / total for r in readers]
    return readers, pair_bytes


def _blocks_read(reader, log) -> int:
    return sum(1 for o, n in reader.block_ranges() for offset, length in log if offset <= o and o + n <= offset + length)


def check_first_reads_sized_by_the_limit(make_cursor, first_chunk, limit: int, expected: list) -> None:
    """Over three interleaved tables (``_interleaved_tables``), with each
    source's bytes per pair, a scan's first reads (one request a source,
    as read_first_blocks gathers them) cover the blocks its limit is
    expected to need from each source, so the merge reads nothing more:
    the scan waits for one round of reads, not one per block.  Without the
    estimate the same scan reads one block a source first, then reads on
    during the merge.  ``make_cursor(reader, pair_bytes)`` is a cursor over
    one table; ``first_chunk(cursors)`` the merge's first chunk of
    ``limit`` pairs, whose keys must be ``expected``."""
    logs = [[] for _ in range(3)]
    readers, pair_bytes = _interleaved_tables(3, 600, logs)

    cursors = [make_cursor(r, pb) for r, pb in zip(readers, pair_bytes)]
    for read in [c.first_read(limit) for c in cursors]:
        run(read)
    assert [len(log) for log in logs] == [1, 1, 1]
    needed = [-(-(limit // 3) * r.block_count // 600) for r in readers]    # the blocks of limit / 3 pairs a source
    # At least those, and no more than the margin asks (and the block the scan starts in).
    assert all(n <= _blocks_read(r, log) <= n * READ_MARGIN + 1 for r, log, n in zip(readers, logs, needed))
    assert [k for k, _v in first_chunk(cursors)[:limit]] == expected
    assert [len(log) for log in logs] == [1, 1, 1]

    for log in logs:
        log.clear()
    plain = [make_cursor(r, 0.0) for r in readers]
    for read in [c.first_read(limit) for c in plain]:
        run(read)
    assert [_blocks_read(r, log) for r, log in zip(readers, logs)] == [1, 1, 1]
    assert [k for k, _v in first_chunk(plain)[:limit]] == expected
    assert all(len(log) > 2 for log in logs)


def test_first_reads_sized_by_the_limit_leave_the_merge_nothing_to_read():
    limit, start = 60, b"k00500"
    check_first_reads_sized_by_the_limit(
        lambda reader, pair_bytes: TableCursor([reader], start, None, pair_bytes=pair_bytes),
        lambda cursors: run(visible_merge(cursors, 10**6, limit, limit).__anext__()),
        limit, [b"k%05d" % i for i in range(500, 500 + limit)])


def test_a_cached_first_block_does_not_hide_the_uncached_blocks_after_it():
    """first_read looks at every block its estimate covers: with the first
    block cached and the next ones not, it reads those (and only those); with
    all of them cached it has nothing to read, and the merge then takes them
    from the cache without a read."""
    limit, start = 40, b"k00300"
    logs = [[] for _ in range(2)]
    cache = BlockCache(1 << 20)
    readers, pair_bytes = _interleaved_tables(2, 500, logs, cache=cache)
    expected = [b"k%05d" % i for i in range(300, 300 + limit)]
    # Cache the block holding `start` in each table.
    for r in readers:
        cursor = TableCursor([r], start, None)
        run(cursor.next_block(1))
    first_blocks = [list(log) for log in logs]
    for log in logs:
        log.clear()

    cursors = [TableCursor([r], start, None, pair_bytes=pb) for r, pb in zip(readers, pair_bytes)]
    reads = [c.first_read(limit) for c in cursors]
    assert all(read is not None for read in reads)
    for read in reads:
        run(read)
    assert [len(log) for log in logs] == [1, 1]
    for log, first in zip(logs, first_blocks):
        assert log[0][0] > first[0][0]                   # the cached block was not read again
    chunk = run(visible_merge(cursors, 10**6, limit, limit).__anext__())
    assert [k for k, _v in chunk[:limit]] == expected
    assert [len(log) for log in logs] == [1, 1]

    for log in logs:
        log.clear()
    again = [TableCursor([r], start, None, pair_bytes=pb) for r, pb in zip(readers, pair_bytes)]
    assert [c.first_read(limit) for c in again] == [None, None]
    chunk = run(visible_merge(again, 10**6, limit, limit).__anext__())
    assert [k for k, _v in chunk[:limit]] == expected
    assert logs == [[], []]
