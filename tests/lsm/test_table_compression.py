"""Compressed tables (format version 2): round trips against the sorted
model and against the same entries written uncompressed, the stored-block
layout (types, placement, page-covering reads), the cache holding decoded
blocks, a format 1 file written before compression existed, and one test
per corruption case."""
from __future__ import annotations

import os
import random
import struct

import pytest
import xxhash
import zstandard

from hedge.errors import CorruptionError
from hedge.lsm import compression
from hedge.lsm.cache import BlockCache, cache_key
from hedge.lsm.compression import RAW, TRAILER_BYTES, ZSTD, stored_type
from hedge.lsm.keys import MAX_SEQ, Kind
from hedge.lsm.table import PAGE, TableBuilder, TableReader
from hedge.lsm.table.builder import MAX_BLOCK_GROWTH, PAD_LIMIT
from hedge.lsm.table.format import COMPRESSED_FORMAT_VERSION, FOOTER_BYTES, FORMAT_VERSION, Footer
from hedge.lsm.table.reader import page_span
from tests.lsm._drive import collect, memory_reader, run
from tests.lsm.test_table import FILE, SortedModel, build, open_table, random_entries

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def text_entries(n: int, seed: int = 3):
    """Entries whose values compress (repeated words), in entry order."""
    rng = random.Random(seed)
    words = [b"alpha", b"bravo", b"charlie", b"delta", b"echo"]
    return [(b"key%06d" % i, 10 + i, Kind.PUT, b" ".join(rng.choices(words, k=rng.randrange(5, 60))))
            for i in range(n)]


def random_value_entries(n: int, size: int = 1000, seed: int = 4):
    rng = random.Random(seed)
    return [(b"user%06d" % i, 10 + i, Kind.PUT, rng.randbytes(size)) for i in range(n)]


def stored_blocks(data: bytes) -> list[bytes]:
    reader = open_table(data)
    return [data[off:off + length] for off, length in reader.block_ranges()]


def footer_of(data: bytes) -> Footer:
    return Footer.decode(data[-FOOTER_BYTES:], FILE, len(data) - FOOTER_BYTES)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("block_bytes", [256, 4096, 16384])
def test_compressed_table_matches_sorted_model(seed, block_bytes):
    rng = random.Random(seed)
    entries = random_entries(rng, 400)
    data, props = build(entries, block_bytes, compression="zstd")
    model = SortedModel(entries)
    for cache in (None, BlockCache(1 << 20)):
        reader = open_table(data, cache)
        assert collect(reader.iter_from()) == entries
        for key, seq, _kind, _value in rng.sample(entries, 150):
            for snapshot in (MAX_SEQ, seq, seq - 1):
                assert run(reader.get(key, snapshot)) == model.get(key, snapshot)
        assert run(reader.get(b"absent-key", MAX_SEQ)) is None
        start, end = sorted(rng.sample([e[0] for e in entries], 2))
        assert collect(reader.iter_from(start, end)) == model.scan(start, end)
    assert props.entry_count == len(entries)


@pytest.mark.parametrize("make", [text_entries, random_value_entries])
def test_compressed_and_uncompressed_tables_answer_alike(make):
    entries = make(3000)
    plain, plain_props = build(entries)
    packed, packed_props = build(entries, compression="zstd")
    a, b = open_table(plain), open_table(packed)
    assert collect(a.iter_from()) == collect(b.iter_from()) == entries
    for key, seq, _, _ in entries[::7]:
        assert run(a.get(key, MAX_SEQ)) == run(b.get(key, MAX_SEQ))
        assert run(a.get(key + b"\x00", MAX_SEQ)) == run(b.get(key + b"\x00", MAX_SEQ)) is None
    assert a.approximate_bytes(None, None) == len(plain)
    assert b.approximate_bytes(None, None) == len(packed)
    for field in ("entry_count", "smallest_key", "largest_key", "smallest_seq", "largest_seq", "deletes",
                  "raw_key_bytes", "raw_value_bytes"):
        assert getattr(plain_props, field) == getattr(packed_props, field), field


def test_compressed_table_is_format_2_naming_its_codec():
    data, _ = build(text_entries(500), compression="zstd")
    footer = footer_of(data)
    assert (footer.version, footer.compression, footer.packed) == (COMPRESSED_FORMAT_VERSION, ZSTD, True)
    reader = open_table(data)
    assert reader.footer == footer


def test_uncompressed_table_stays_format_1():
    data, _ = build(text_entries(500))
    footer = footer_of(data)
    assert (footer.version, footer.compression, footer.packed) == (FORMAT_VERSION, 0, False)
    assert data[len(data) - FOOTER_BYTES + 72] == 0       # the reserved bytes stay zero


def test_format_1_file_written_before_compression_existed_opens():
    """tests/lsm/data/format1.sst was written by the table code before
    format version 2 existed; the same entries built today give the same
    bytes, and the file opens and answers."""
    with open(os.path.join(DATA, "format1.sst"), "rb") as f:
        old = f.read()
    entries = []
    for i in range(300):
        key = b"v1key%04d" % i
        if i % 10 == 3:
            entries.append((key, 1000 + i, Kind.DELETE, b""))
        entries.append((key, 500 + i, Kind.PUT, (b"value-%d-" % i) * (1 + i % 5)))
    assert build(entries)[0] == old
    reader = open_table(old)
    assert reader.footer.version == FORMAT_VERSION
    assert collect(reader.iter_from()) == entries
    assert run(reader.get(b"v1key0013", MAX_SEQ)) == (1013, Kind.DELETE, b"")
    assert run(reader.get(b"v1key0013", 1012)) == (513, Kind.PUT, b"value-13-" * 4)


def test_compressible_blocks_are_stored_zstd_and_the_file_is_smaller():
    entries = text_entries(3000)
    plain, _ = build(entries)
    packed, props = build(entries, compression="zstd")
    assert {stored_type(b) for b in stored_blocks(packed)} == {ZSTD}
    assert len(packed) < len(plain) // 2
    assert props.data_bytes < props.raw_key_bytes + props.raw_value_bytes


def test_incompressible_blocks_are_stored_raw_and_each_fits_its_pages():
    """1,000-byte entries make blocks grown to MAX_BLOCK_GROWTH pages (the
    MIN_BLOCK_ENTRIES they would hold need more); stored raw, each still
    fits those pages with its trailer."""
    entries = random_value_entries(400, size=1000)
    packed, _ = build(entries, compression="zstd")
    blocks = stored_blocks(packed)
    assert {stored_type(b) for b in blocks} == {RAW}
    # The raw block was built TRAILER_BYTES short so it fits its pages
    # with its trailer.
    assert all(len(b) <= MAX_BLOCK_GROWTH * 4096 for b in blocks)
    assert max(len(b) for b in blocks) > (MAX_BLOCK_GROWTH - 1) * 4096


def test_block_builder_target_leaves_room_for_the_stored_trailer():
    # Entries of exactly a page's worth: a raw stored block of a 4096-byte
    # target must still be at most 4096 bytes.
    entries = [(b"k%05d" % i, 1, Kind.PUT, os.urandom(4096 - 16 - 6 - 4 - 12 - TRAILER_BYTES))
               for i in range(20)]
    packed, _ = build(entries, compression="zstd")
    sizes = [len(b) for b in stored_blocks(packed)]
    # The first block has the base target; later ones grow to whole pages
    # (entries this large), and fit them.
    assert sizes[0] == 4096
    assert all(4096 < size <= MAX_BLOCK_GROWTH * 4096 for size in sizes[1:-1]), sizes


def test_blocks_are_back_to_back_padded_only_to_avoid_a_needless_page_crossing():
    entries = text_entries(6000, seed=9) + random_value_entries(600, size=700, seed=10)
    entries = sorted(entries, key=lambda e: (e[0], -e[1]))
    packed, props = build(entries, compression="zstd")
    reader = open_table(packed)
    end = 0
    padded = 0
    for offset, length in reader.block_ranges():
        gap = offset - end
        assert 0 <= gap <= PAD_LIMIT
        if gap:
            padded += 1
            # Padding only where the block, placed at `end`, would have
            # crossed a page boundary it does not cross now.
            assert offset % PAGE == 0
            assert page_span(end, length)[1] > page_span(offset, length)[1]
            assert packed[end:offset] == bytes(gap)
        end = offset + length
    assert padded > 0
    assert props.data_bytes == -(-end // PAGE) * PAGE


def test_reads_cover_exactly_the_pages_of_the_block():
    entries = text_entries(3000)
    packed, _ = build(entries, compression="zstd")
    reader = open_table(packed)
    ranges = reader.block_ranges()
    log = []
    reader = run(TableReader.open(memory_reader(packed, log), len(packed), FILE, 1))
    log.clear()
    for key, _, _, _ in entries[::50]:
        run(reader.get(key, MAX_SEQ))
    collect(reader.iter_from())
    assert log
    assert all(off % PAGE == 0 and length % PAGE == 0 for off, length in log)
    spans = {page_span(off, length) for off, length in ranges}
    assert set(log) <= spans


def test_cache_holds_decoded_blocks_and_a_hit_decompresses_nothing(monkeypatch):
    entries = text_entries(3000)
    packed, _ = build(entries, compression="zstd")
    cache = BlockCache(1 << 20)
    reader = open_table(packed, cache)
    loads = []
    real_load = compression.load

    def counting_load(stored, file, offset):
        loads.append(offset)
        return real_load(stored, file, offset)

    monkeypatch.setattr(compression, "load", counting_load)
    key = entries[1234][0]
    offset, length = reader.block_range_for(key)
    assert run(reader.get(key, MAX_SEQ))[2] == entries[1234][3]
    assert loads == [offset]
    block = cache.get(cache_key(1, offset))
    assert block is not None
    # Decoded: the entries themselves, larger than the stored bytes.
    assert block.nbytes > length
    assert [e[0] for e in block.entries()] == [e[0] for e in entries if reader.block_range_for(e[0]) == (offset, length)]
    for _ in range(3):
        assert run(reader.get(key, MAX_SEQ))[2] == entries[1234][3]
    assert loads == [offset]


def test_bad_compression_name_is_rejected():
    with pytest.raises(ValueError, match="compression must be 'none' or one of \\('zstd',\\), not 'lz4'"):
        TableBuilder(compression="lz4")


# ---- corruption: one case each, CorruptionError naming the file and the block

def corrupt_block(data: bytes, index: int, position: int) -> tuple[bytes, int]:
    reader = open_table(data)
    offset, length = reader.block_ranges()[index]
    out = bytearray(data)
    out[offset + (position % length)] ^= 0x10
    return bytes(out), offset


@pytest.mark.parametrize("position", [0, 50, -TRAILER_BYTES, -1])
def test_flipped_byte_in_a_compressed_block_fails_the_lookup(position):
    entries = text_entries(3000)
    packed, _ = build(entries, compression="zstd")
    damaged, offset = corrupt_block(packed, 5, position)
    reader = open_table(damaged)
    key = next(e[0] for e in entries if reader.block_range_for(e[0])[0] == offset)
    with pytest.raises(CorruptionError) as info:
        run(reader.get(key, MAX_SEQ))
    assert (info.value.file, info.value.offset) == (FILE, offset)
    with pytest.raises(CorruptionError):
        collect(reader.iter_from())


def test_flipped_byte_in_a_raw_stored_block_fails_the_lookup():
    entries = random_value_entries(50)
    packed, _ = build(entries, compression="zstd")
    damaged, offset = corrupt_block(packed, 3, 200)
    reader = open_table(damaged)
    with pytest.raises(CorruptionError, match="stored block checksum") as info:
        collect(reader.iter_from())
    assert info.value.offset == offset


def test_decompressed_bytes_are_checked_by_the_block_checksum():
    """A body damaged before its stored checksum was made decompresses (zstd
    frames carry no checksum here) into a block whose own checksum fails."""
    entries = text_entries(3000)
    packed = bytearray(build(entries, compression="zstd")[0])
    reader = open_table(bytes(packed))
    offset, length = reader.block_ranges()[2]
    body_end = offset + length - TRAILER_BYTES
    body = bytes(packed[offset:body_end])
    original = zstandard.ZstdDecompressor().decompress(body)
    for position in range(len(body) - 1, 0, -1):        # a flip zstd itself does not notice
        damaged = bytearray(body)
        damaged[position] ^= 0x01
        try:
            if zstandard.ZstdDecompressor().decompress(bytes(damaged)) != original:
                break
        except zstandard.ZstdError:
            pass
    else:
        pytest.fail("no undetected flip found")
    packed[offset:body_end] = damaged
    head = bytes(packed[offset:body_end + 1])
    packed[body_end + 1:body_end + TRAILER_BYTES] = struct.pack("<Q", xxhash.xxh3_64_intdigest(head))
    reader = open_table(bytes(packed))
    with pytest.raises(CorruptionError, match=r"offset \d+: block checksum mismatch") as info:
        collect(reader.iter_from())
    assert info.value.offset == offset
