"""Tables: round trips against a sorted-list model, alignment, large entries,
incremental output, properties, and one test per corruption case."""
from __future__ import annotations

import bisect
import os
import random
import struct

import pytest

from hedge.errors import CorruptionError
from hedge.lsm.cache import BlockCache, cache_key
from hedge.lsm.keys import MAX_KEY_BYTES, MAX_SEQ, Kind
from hedge.lsm.table import PAGE, TableBuilder, TableReader
from hedge.lsm.table.reader import NOT_CACHED
from hedge.lsm.table.format import FOOTER_BYTES, Footer
from tests.lsm._drive import collect, memory_reader, run

FILE = "000042.sst"
SOAK = os.environ.get("HEDGE_SOAK") == "1"


def build(entries, block_bytes: int = 4096, bloom_bits_per_key: int = 10, compression: str = "none"):
    """Build a table; return (file bytes, properties).  Checks that the
    builder hands out contiguous, page-aligned chunks."""
    builder = TableBuilder(block_bytes, bloom_bits_per_key, compression)
    out = bytearray()

    def write(chunks):
        for offset, data in chunks:
            assert offset == len(out), "chunks must be contiguous and in file order"
            assert offset % PAGE == 0 and len(data) % PAGE == 0
            out.extend(data)

    for e in entries:
        builder.add(*e)
        write(builder.take_ready())
    chunks, props = builder.finish()
    write(chunks)
    assert props.file_size == len(out)
    return bytes(out), props


def open_table(data: bytes, cache=None, log=None, table_id: int = 1) -> TableReader:
    return run(TableReader.open(memory_reader(data, log), len(data), FILE, table_id, cache))


def random_entries(rng: random.Random, nkeys: int, max_value: int = 200):
    """Entries in entry order: some keys with many versions, deletes, empty
    values, keys sharing prefixes."""
    keys = sorted({b"%s%d" % (rng.choice((b"user", b"u", b"item:")), rng.randrange(10 * nkeys)) for _ in range(nkeys)})
    seq_pool = rng.sample(range(1, 1 << 40), 40 * len(keys) + 200)
    entries = []
    for key in keys:
        nversions = rng.choice((1, 1, 1, 2, 3)) if rng.random() > 0.02 else rng.randint(20, 120)
        for seq in sorted((seq_pool.pop() for _ in range(nversions)), reverse=True):
            if rng.random() < 0.15:
                entries.append((key, seq, Kind.DELETE, b""))
            else:
                entries.append((key, seq, Kind.PUT, rng.randbytes(rng.choice((0, 3, 20, max_value)))))
    return entries


class SortedModel:
    """The plain reference: a sorted list of entries."""

    def __init__(self, entries):
        self.entries = entries
        self.order = [(e[0], -e[1]) for e in entries]
        assert self.order == sorted(self.order)

    def get(self, key, snapshot):
        i = bisect.bisect_left(self.order, (key, -snapshot))
        if i < len(self.entries) and self.entries[i][0] == key:
            return self.entries[i][1:]
        return None

    def scan(self, start, end):
        return [e for e in self.entries if (start is None or e[0] >= start) and (end is None or e[0] < end)]


# ---- round trips against the model ----------------------------------------

@pytest.mark.parametrize("seed,block_bytes", [(0, 4096), (1, 4096), (2, 1024), (3, 16384), (4, 4096)])
def test_get_and_iter_match_sorted_model(seed, block_bytes):
    rng = random.Random(seed)
    entries = random_entries(rng, 1500)
    model = SortedModel(entries)
    data, _ = build(entries, block_bytes=block_bytes)
    reader = open_table(data, cache=BlockCache(1 << 20) if seed % 2 else None)
    seqs = [e[1] for e in entries]
    keys = [e[0] for e in entries]
    probes = rng.sample(keys, 300) + [b"user%d" % rng.randrange(10**6) for _ in range(100)] + [b"a", b"zzzz", b"u"]
    for key in probes:
        for snap in (MAX_SEQ, 0, rng.choice(seqs), rng.choice(seqs) - 1, rng.randrange(1 << 40)):
            assert run(reader.get(key, snap)) == model.get(key, snap), (key, snap)
    assert collect(reader.iter_from()) == entries
    bounds = [None, b"a", b"zzzz"] + rng.sample(keys, 8) + [k + b"\x00" for k in rng.sample(keys, 4)]
    for _ in range(25):
        start, end = rng.choice(bounds), rng.choice(bounds)
        assert collect(reader.iter_from(start, end)) == model.scan(start, end), (start, end)


def test_every_version_of_a_key_spanning_many_blocks_is_found():
    entries = [(b"hot", seq, Kind.PUT, b"%d" % seq * 30) for seq in range(2000, 0, -3)]
    entries.append((b"hot2", 5, Kind.PUT, b"x"))
    model = SortedModel(entries)
    data, props = build(entries)
    assert props.block_count > 5
    log = []
    reader = open_table(data, log=log)
    for snap in range(0, 2003):
        del log[:]
        assert run(reader.get(b"hot", snap)) == model.get(b"hot", snap), snap
        assert len(log) <= 1, "a point lookup reads at most one block"
    assert run(reader.get(b"hot2", 4)) is None
    assert run(reader.get(b"hot2", 5)) == (5, Kind.PUT, b"x")


def test_largest_keys_and_a_five_mib_value_round_trip():
    rng = random.Random(11)
    big_value = rng.randbytes(5 << 20)
    entries = [
        (b"a", 9, Kind.PUT, b""),
        (b"b" * MAX_KEY_BYTES, 8, Kind.PUT, rng.randbytes(100)),
        (b"b" * MAX_KEY_BYTES, 7, Kind.DELETE, b""),
        (b"c", 6, Kind.PUT, big_value),
        (b"c" * MAX_KEY_BYTES, 5, Kind.PUT, b"v"),
        (b"d", 4, Kind.PUT, b"w"),
    ]
    data, props = build(entries)
    reader = open_table(data)
    assert run(reader.get(b"c", 100)) == (6, Kind.PUT, big_value)
    assert run(reader.get(b"b" * MAX_KEY_BYTES, 7)) == (7, Kind.DELETE, b"")
    assert run(reader.get(b"c" * MAX_KEY_BYTES, 5)) == (5, Kind.PUT, b"v")
    assert collect(reader.iter_from()) == entries
    big = reader.block_range_for(b"c")
    assert big[1] >= (5 << 20) and big[1] % PAGE == 0
    assert props.largest_key == b"d" and props.raw_value_bytes == len(big_value) + 102


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="long variant: set HEDGE_SOAK=1")
@pytest.mark.parametrize("seed", range(1000, 1200))
def test_soak_get_and_iter_match_sorted_model(seed):
    rng = random.Random(seed)
    test_get_and_iter_match_sorted_model(seed, rng.choice((512, 1024, 4096, 8192, 65536)))


# ---- layout ----------------------------------------------------------------

def test_every_data_block_is_page_aligned_and_whole_pages():
    rng = random.Random(5)
    entries = random_entries(rng, 3000, max_value=3000)
    data, props = build(entries)
    reader = open_table(data)
    ranges = reader.block_ranges()
    assert len(ranges) == props.block_count > 10
    end = 0
    for offset, length in ranges:
        assert offset % PAGE == 0 and length % PAGE == 0 and offset == end
        end = offset + length
    assert end == props.data_bytes
    assert len(data) % PAGE == 0


def test_reader_only_issues_page_aligned_reads():
    rng = random.Random(6)
    entries = random_entries(rng, 2000)
    data, _ = build(entries)
    log = []
    reader = open_table(data, log=log)
    for e in rng.sample(entries, 200):
        run(reader.get(e[0], e[1]))
    collect(reader.iter_from(entries[100][0], entries[900][0]))
    assert log and all(off % PAGE == 0 and n % PAGE == 0 and n > 0 for off, n in log)


def test_open_reads_only_the_tail_when_metadata_fits_in_the_last_page():
    data, _ = build([(b"k%d" % i, 1, Kind.PUT, b"v") for i in range(10)])
    log = []
    open_table(data, log=log)
    assert log == [TableReader.footer_read_range(len(data))]


def test_small_blocks_stay_within_one_page():
    entries = [(b"key%06d" % i, 1, Kind.PUT, b"v" * 90) for i in range(5000)]
    data, props = build(entries)
    reader = open_table(data)
    assert all(length == PAGE for _, length in reader.block_ranges())
    assert props.data_bytes == props.block_count * PAGE


def test_blocks_of_large_entries_grow_to_hold_more_of_them():
    """1,000-byte values: after the first block, each block grows to
    MAX_BLOCK_GROWTH pages (MIN_BLOCK_ENTRIES entries would need more), so
    blocks hold 15 entries instead of 3 and the pages carry little
    padding; every lookup and scan still finds every entry."""
    from hedge.lsm.table.builder import MAX_BLOCK_GROWTH

    entries = [(b"key%06d" % i, 1, Kind.PUT, os.urandom(1000)) for i in range(600)]
    data, props = build(entries)
    reader = open_table(data)
    lengths = [length for _, length in reader.block_ranges()]
    assert lengths[0] == PAGE
    assert set(lengths[1:-1]) == {MAX_BLOCK_GROWTH * PAGE}
    assert props.block_count < 600 / 12
    assert props.data_bytes < 1.1 * (props.raw_key_bytes + props.raw_value_bytes)
    assert collect(reader.iter_from()) == entries
    for key, seq, kind, value in entries[::37]:
        assert run(reader.get(key, seq)) == (seq, kind, value)


def test_block_ranges_cover_what_iter_from_reads():
    entries = [(b"key%06d" % i, 1, Kind.PUT, b"v" * 200) for i in range(3000)]
    data, _ = build(entries)
    log = []
    reader = open_table(data, log=log)
    del log[:]
    items = collect(reader.iter_from(b"key001000", b"key001500"))
    assert len(items) == 500
    assert log == reader.block_ranges(b"key001000", b"key001500")


# ---- lookups, bloom, cache -------------------------------------------------

def test_absent_keys_rarely_read_a_block():
    entries = [(b"key%06d" % i, 1, Kind.PUT, b"v") for i in range(0, 20000, 2)]
    data, _ = build(entries)
    log = []
    reader = open_table(data, log=log)
    del log[:]
    for i in range(1, 20000, 2):
        assert run(reader.get(b"key%06d" % i, MAX_SEQ)) is None
    assert len(log) < 0.03 * 10000
    assert not reader.may_contain(b"a") and not reader.may_contain(b"z")
    assert reader.block_range_for(b"zzz") is None


def test_cached_block_is_not_read_again():
    entries = [(b"key%06d" % i, 1, Kind.PUT, b"v") for i in range(1000)]
    data, _ = build(entries)
    log = []
    cache = BlockCache(1 << 20)
    reader = open_table(data, cache=cache, log=log, table_id=7)
    del log[:]
    assert run(reader.get(b"key000500", 1)) == (1, Kind.PUT, b"v")
    assert run(reader.get(b"key000501", 1)) == (1, Kind.PUT, b"v")
    assert len(log) == 1
    assert cache.get(cache_key(7, log[0][0])) is not None
    reader.evict()
    assert cache.stats()["bytes"] == 0


@pytest.mark.parametrize("seed", range(4))
def test_cache_on_and_off_give_identical_answers(seed):
    """The same lookups and scans on one table with no cache, a large cache
    and a cache of three blocks (constant eviction); every answer is checked
    against the model, and get_cached against get."""
    rng = random.Random(70 + seed)
    entries = random_entries(rng, 1200)
    model = SortedModel(entries)
    data, _ = build(entries, block_bytes=rng.choice((1024, 4096)))
    readers = [open_table(data), open_table(data, cache=BlockCache(64 << 20), table_id=2),
               open_table(data, cache=BlockCache(3 * 4096 + 100), table_id=3)]
    seqs = [e[1] for e in entries]
    keys = [e[0] for e in entries]
    probes = rng.sample(keys, 250) + [b"user%d" % rng.randrange(10**6) for _ in range(50)] + [b"a", b"zzzz"]
    for _round in range(3):                  # miss, first hit (decodes), later hits
        for key in probes:
            snap = rng.choice((MAX_SEQ, 0, rng.choice(seqs), rng.choice(seqs) - 1))
            expected = model.get(key, snap)
            for reader in readers:
                cached = reader.get_cached(key, snap)
                assert cached is NOT_CACHED or cached == expected, (key, snap)
                assert run(reader.get(key, snap)) == expected, (key, snap)
        for _ in range(8):
            start = rng.choice([None] + rng.sample(keys, 3))
            end = rng.choice([None] + rng.sample(keys, 3))
            for reader in readers:
                assert collect(reader.iter_from(start, end)) == model.scan(start, end)


def test_get_cached_answers_from_memory_or_says_not_cached():
    entries = [(b"key%06d" % i, 1, Kind.PUT, b"v%d" % i) for i in range(1000)]
    data, _ = build(entries)
    log = []
    cache = BlockCache(1 << 20)
    reader = open_table(data, cache=cache, log=log)
    del log[:]
    assert reader.get_cached(b"key000500", 1) is NOT_CACHED
    assert reader.get_cached(b"key999999", 1) is None        # outside the key range
    assert reader.get_cached(b"key000999", 0) is None        # the index says: no version old enough
    assert run(reader.get(b"key000500", 1)) == (1, Kind.PUT, b"v500")
    assert len(log) == 1
    assert reader.get_cached(b"key000500", 1) == (1, Kind.PUT, b"v500")
    assert reader.get_cached(b"key000501", 1) == (1, Kind.PUT, b"v501")
    assert len(log) == 1
    uncached = open_table(data)
    assert uncached.get_cached(b"key000500", 1) is NOT_CACHED


def test_a_scans_first_cache_hit_swaps_in_the_decoded_block_and_a_gets_does_not(block_search):
    entries = [(b"key%06d" % i, 1, Kind.PUT, b"v") for i in range(1000)]
    data, _ = build(entries)
    log = []
    cache = BlockCache(1 << 20)
    reader = open_table(data, cache=cache, log=log, table_id=7)
    del log[:]
    run(reader.get(b"key000500", 1))
    (offset, _), = log
    charged = cache.stats()["bytes"]
    block = cache.get(cache_key(7, offset))
    assert not block.is_decoded
    assert reader.get_cached(b"key000501", 1) == (1, Kind.PUT, b"v")
    assert cache.get(cache_key(7, offset)) is block and cache.stats()["bytes"] == charged
    decoded = run(reader.read_block(offset, 4096))
    assert decoded.is_decoded and cache.get(cache_key(7, offset)) is decoded
    assert cache.stats()["bytes"] == decoded.nbytes > charged
    assert run(reader.read_block(offset, 4096)) is decoded
    assert reader.get_cached(b"key000502", 1) == (1, Kind.PUT, b"v")
    assert len(log) == 1                             # every hit came from the cache


def test_iter_without_fill_cache_leaves_cache_empty():
    entries = [(b"key%06d" % i, 1, Kind.PUT, b"v" * 50) for i in range(1000)]
    data, _ = build(entries)
    cache = BlockCache(1 << 20)
    reader = open_table(data, cache=cache)
    assert len(collect(reader.iter_from(fill_cache=False))) == 1000
    assert cache.stats()["bytes"] == 0
    assert len(collect(reader.iter_from())) == 1000
    assert cache.stats()["bytes"] == reader.properties.data_bytes


def test_properties_describe_the_entries():
    rng = random.Random(9)
    entries = random_entries(rng, 500)
    data, props = build(entries)
    reader = open_table(data)
    assert reader.properties == props
    assert props.entry_count == len(entries)
    assert props.deletes == sum(e[2] == Kind.DELETE for e in entries)
    assert (props.smallest_key, props.largest_key) == (entries[0][0], entries[-1][0])
    assert (reader.smallest_key, reader.largest_key) == (entries[0][0], entries[-1][0])
    assert props.smallest_seq == min(e[1] for e in entries)
    assert props.largest_seq == max(e[1] for e in entries)
    assert props.raw_key_bytes == sum(len(e[0]) for e in entries)
    assert props.raw_value_bytes == sum(len(e[3]) for e in entries)


# ---- builder contract --------------------------------------------------------

def test_take_ready_hands_out_blocks_before_finish():
    builder = TableBuilder()
    handed = 0
    for i in range(20000):
        builder.add(b"key%08d" % i, 1, Kind.PUT, b"v" * 100)
        handed += sum(len(d) for _, d in builder.take_ready())
        assert builder.take_ready() == []
    chunks, props = builder.finish()
    assert handed > 0.9 * props.data_bytes
    assert handed + sum(len(d) for _, d in chunks) == props.file_size


def test_estimated_file_size_tracks_the_final_size():
    builder = TableBuilder()
    for i in range(30000):
        builder.add(b"key%08d" % i, 1, Kind.PUT, b"v" * 100)
    estimate = builder.estimated_file_size()
    _, props = builder.finish()
    assert abs(estimate - props.file_size) <= 2 * PAGE


@pytest.mark.parametrize(
    "second",
    [(b"a", 1, Kind.PUT, b""), (b"m", 5, Kind.PUT, b""), (b"m", 6, Kind.PUT, b"")],
    ids=["smaller_key", "same_key_same_seq", "same_key_newer_seq"],
)
def test_out_of_order_add_raises_and_adds_nothing(second):
    builder = TableBuilder()
    builder.add(b"m", 5, Kind.PUT, b"x")
    with pytest.raises(ValueError, match="out of order"):
        builder.add(*second)
    builder.add(b"m", 4, Kind.PUT, b"y")
    chunks, props = builder.finish()
    assert props.entry_count == 2
    data = b"".join(d for _, d in chunks)
    assert collect(open_table(data).iter_from()) == [(b"m", 5, Kind.PUT, b"x"), (b"m", 4, Kind.PUT, b"y")]


@pytest.mark.parametrize(
    "entry,error",
    [
        ((b"k" * (MAX_KEY_BYTES + 1), 1, Kind.PUT, b""), ValueError),
        ((b"k", 1, Kind.DELETE, b"v"), ValueError),
        ((b"k", 1, 7, b""), ValueError),
        ((b"k", MAX_SEQ + 1, Kind.PUT, b""), ValueError),
        (("k", 1, Kind.PUT, b""), TypeError),
    ],
    ids=["oversize_key", "delete_with_value", "unknown_kind", "seq_too_large", "str_key"],
)
def test_bad_entry_is_rejected(entry, error):
    with pytest.raises(error):
        TableBuilder().add(*entry)


def test_finish_without_entries_raises():
    with pytest.raises(ValueError):
        TableBuilder().finish()


def test_add_after_finish_raises():
    builder = TableBuilder()
    builder.add(b"k", 1, Kind.PUT, b"")
    builder.finish()
    with pytest.raises(ValueError):
        builder.add(b"l", 1, Kind.PUT, b"")


# ---- corruption: one case each, always CorruptionError naming file and offset

def corruption_table():
    entries = [(b"key%06d" % i, 1000 - i % 7, Kind.PUT, b"value%d" % i * 20) for i in range(2000)]
    data, props = build(entries)
    footer = Footer.decode(data[-FOOTER_BYTES:], FILE, len(data) - FOOTER_BYTES)
    return bytearray(data), props, footer


def flip(data: bytearray, offset: int) -> bytes:
    data[offset] ^= 0x10
    return bytes(data)


def assert_corruption(exc_info, offset: int) -> None:
    assert exc_info.value.file == FILE
    assert exc_info.value.offset == offset
    assert FILE in str(exc_info.value)


def test_flipped_byte_in_a_data_block_fails_the_lookup():
    data, _, _ = corruption_table()
    reader = open_table(bytes(data))
    offset, length = reader.block_range_for(b"key001000")
    reader = open_table(flip(data, offset + 100))
    with pytest.raises(CorruptionError) as info:
        run(reader.get(b"key001000", MAX_SEQ))
    assert_corruption(info, offset)
    with pytest.raises(CorruptionError):
        collect(reader.iter_from())


def test_flipped_byte_in_a_data_block_padding_is_detected():
    data, _, _ = corruption_table()
    reader = open_table(bytes(data))
    offset, length = reader.block_ranges()[3]
    reader = open_table(flip(data, offset + length - 40))
    with pytest.raises(CorruptionError) as info:
        collect(reader.iter_from())
    assert_corruption(info, offset)


def test_flipped_byte_in_the_index_fails_open():
    data, _, footer = corruption_table()
    with pytest.raises(CorruptionError, match="index checksum") as info:
        open_table(flip(data, footer.index.offset + footer.index.length // 2))
    assert_corruption(info, footer.index.offset)


def test_flipped_byte_in_the_bloom_filter_fails_open():
    data, _, footer = corruption_table()
    with pytest.raises(CorruptionError, match="bloom") as info:
        open_table(flip(data, footer.bloom.offset + 5))
    assert_corruption(info, footer.bloom.offset)


def test_flipped_byte_in_the_properties_fails_open():
    data, _, footer = corruption_table()
    with pytest.raises(CorruptionError, match="properties") as info:
        open_table(flip(data, footer.properties.offset + 3))
    assert_corruption(info, footer.properties.offset)


def test_flipped_byte_in_the_footer_fails_open():
    data, _, _ = corruption_table()
    footer_offset = len(data) - FOOTER_BYTES
    with pytest.raises(CorruptionError, match="footer checksum") as info:
        open_table(flip(data, footer_offset + 17))
    assert_corruption(info, footer_offset)


def test_bad_magic_fails_open():
    data, _, _ = corruption_table()
    data[-8:] = b"LEVELDB!"
    with pytest.raises(CorruptionError, match="magic") as info:
        open_table(bytes(data))
    assert_corruption(info, len(data) - FOOTER_BYTES)


def test_unknown_format_version_fails_open():
    data, _, _ = corruption_table()
    version_at = len(data) - FOOTER_BYTES + 108
    data[version_at : version_at + 4] = struct.pack("<I", 99)
    with pytest.raises(CorruptionError, match="version 99") as info:
        open_table(bytes(data))
    assert_corruption(info, len(data) - FOOTER_BYTES)


def test_file_truncated_mid_page_fails_open():
    data, _, _ = corruption_table()
    truncated = bytes(data[:-100])
    with pytest.raises(CorruptionError, match="truncated") as info:
        open_table(truncated)
    assert_corruption(info, len(truncated))


def test_a_table_over_1_tib_is_refused_before_any_read():
    async def no_read(offset, length):
        raise AssertionError("read")

    size = (1 << 40) + PAGE
    with pytest.raises(CorruptionError, match="over the") as info:
        run(TableReader.open(no_read, size, FILE, 1))
    assert_corruption(info, size)
    assert TableReader.footer_read_range(1 << 40) == ((1 << 40) - PAGE, PAGE)


def test_file_truncated_by_whole_pages_fails_open():
    data, _, _ = corruption_table()
    truncated = bytes(data[: -2 * PAGE])
    with pytest.raises(CorruptionError, match="magic") as info:
        open_table(truncated)
    assert_corruption(info, len(truncated) - FOOTER_BYTES)


def test_short_read_fails_open():
    data, _, _ = corruption_table()

    async def short_read(offset, length):
        return bytes(data[offset : offset + length - 1])

    with pytest.raises(CorruptionError, match="truncated") as info:
        run(TableReader.open(short_read, len(data), FILE, 1))
    assert_corruption(info, len(data) - PAGE)


def test_empty_file_fails_open():
    with pytest.raises(CorruptionError) as info:
        open_table(b"")
    assert_corruption(info, 0)
