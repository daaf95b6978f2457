"""Data block: encode/decode round trips, search at snapshots, corruption."""
from __future__ import annotations

import random
import struct
import sys

import pytest
import xxhash

from hedge.errors import CorruptionError
from hedge.lsm import block as block_module
from hedge.lsm.block import Block, BlockBuilder
from hedge.lsm.keys import MAX_KEY_BYTES, Kind


def random_entries(rng: random.Random, nkeys: int) -> list[tuple[bytes, int, Kind, bytes]]:
    """Entries in entry order: several versions per key, deletes, empty values."""
    keys = sorted({bytes(rng.choice(b"abcdef") for _ in range(rng.randint(1, 6))) for _ in range(nkeys)})
    seqs = iter(rng.sample(range(1, 10 * nkeys * 8), 8 * len(keys)))
    entries = []
    for key in keys:
        versions = sorted((next(seqs) for _ in range(rng.choice((1, 1, 2, 3, 8)))), reverse=True)
        for seq in versions:
            if rng.random() < 0.2:
                entries.append((key, seq, Kind.DELETE, b""))
            else:
                entries.append((key, seq, Kind.PUT, rng.randbytes(rng.choice((0, 1, 5, 40)))))
    return entries


def model_get(entries, key, snapshot):
    for k, seq, kind, value in entries:
        if k == key and seq <= snapshot:
            return (seq, kind, value)
    return None


def build(entries, pad_to: int = 1) -> bytes:
    builder = BlockBuilder(1 << 20)
    for e in entries:
        builder.add(*e)
    return builder.finish(pad_to)


@pytest.mark.parametrize("seed", range(5))
def test_get_matches_model_at_every_snapshot(seed, block_search):
    rng = random.Random(seed)
    entries = random_entries(rng, 60)
    block = Block(build(entries))
    assert len(block) == len(entries)
    seqs = sorted({e[1] for e in entries})
    snapshots = [0] + seqs + [s - 1 for s in seqs] + [1 << 55]
    probe_keys = sorted({e[0] for e in entries}) + [b"", b"a\x00", b"zzz", b"ab\xff"]
    for key in probe_keys:
        for snap in rng.sample(snapshots, 20):
            assert block.get(key, snap) == model_get(entries, key, snap), (key, snap)


@pytest.mark.parametrize("seed", range(3))
def test_iter_from_yields_entries_from_start_key(seed, block_search, block_decode):
    rng = random.Random(100 + seed)
    entries = random_entries(rng, 80)
    block = Block(build(entries, pad_to=4096))
    assert list(block.iter_from()) == entries
    for start in [e[0] for e in rng.sample(entries, 10)] + [b"0", b"abc\x00", b"zz"]:
        assert list(block.iter_from(start)) == [e for e in entries if e[0] >= start]


def test_estimated_size_is_the_unpadded_size():
    builder = BlockBuilder(4096)
    for i in range(20):
        builder.add(b"k%03d" % i, 9, Kind.PUT, b"x" * i)
    expected = builder.estimated_size()
    assert len(builder.finish()) == expected
    assert builder.empty()


def test_padding_rounds_size_up_and_keeps_entries():
    entries = [(b"k%03d" % i, 3, Kind.PUT, b"v" * 30) for i in range(10)]
    data = build(entries, pad_to=4096)
    assert len(data) == 4096
    block = Block(data)
    assert block.nbytes == 4096
    assert list(block.iter_from()) == entries


def test_try_add_refuses_only_past_the_target_of_a_nonempty_block():
    builder = BlockBuilder(100)
    assert builder.try_add(b"k", 1, Kind.PUT, b"v" * 1000)      # alone, it may exceed the target
    assert not builder.try_add(b"l", 1, Kind.PUT, b"")
    assert len(builder) == 1
    builder.finish()
    assert builder.try_add(b"a", 1, Kind.PUT, b"x" * 40)
    assert builder.try_add(b"b", 1, Kind.PUT, b"x" * 6)           # 12 + 61 + 27: exactly the target
    assert not builder.try_add(b"c", 1, Kind.PUT, b"")
    assert builder.estimated_size() == 100
    assert Block(builder.finish()).entries() == [(b"a", 1, Kind.PUT, b"x" * 40), (b"b", 1, Kind.PUT, b"x" * 6)]


def test_largest_key_and_large_value_round_trip():
    big_key = b"k" * MAX_KEY_BYTES
    value = random.Random(1).randbytes(3 << 20)
    entries = [(b"a", 5, Kind.PUT, b""), (big_key, 7, Kind.PUT, value), (big_key, 2, Kind.DELETE, b"")]
    block = Block(build(entries, pad_to=4096))
    assert block.get(big_key, 10) == (7, Kind.PUT, value)
    assert block.get(big_key, 6) == (2, Kind.DELETE, b"")
    assert block.get(big_key, 1) is None
    assert list(block.iter_from(big_key)) == entries[1:]


def test_empty_block_has_no_entries():
    block = Block(BlockBuilder().finish())
    assert len(block) == 0
    assert block.get(b"a", 10) is None
    assert list(block.iter_from()) == []


def test_accepts_memoryview_and_bytearray():
    entries = [(b"a", 2, Kind.PUT, b"1"), (b"b", 1, Kind.PUT, b"2")]
    data = build(entries)
    assert list(Block(memoryview(data)).iter_from()) == entries
    assert Block(bytearray(data)).get(b"b", 5) == (1, Kind.PUT, b"2")


@pytest.mark.parametrize("position", [0, 7, -9, -1, -13])
def test_flipped_byte_raises_corruption_naming_file_and_offset(position):
    data = bytearray(build([(b"key%d" % i, 1, Kind.PUT, b"value") for i in range(10)], pad_to=4096))
    data[position] ^= 0x40
    with pytest.raises(CorruptionError) as info:
        Block(bytes(data), file="000007.sst", offset=8192)
    assert info.value.file == "000007.sst"
    assert info.value.offset == 8192
    assert "checksum" in info.value.detail


def test_block_shorter_than_trailer_raises_corruption():
    with pytest.raises(CorruptionError) as info:
        Block(b"\x00" * 5, file="x.sst", offset=4096)
    assert info.value.offset == 4096


def test_impossible_count_with_valid_checksum_raises_corruption():
    body = struct.pack("<I", 1000)
    data = body + struct.pack("<Q", xxhash.xxh3_64_intdigest(body))
    with pytest.raises(CorruptionError, match="count"):
        Block(data, file="x.sst", offset=0)


# ---- the decoded copy (Block.decoded) answers like the block ----

@pytest.mark.parametrize("seed", range(6))
def test_decoded_copy_answers_exactly_like_the_plain_block(seed, block_search, block_decode):
    rng = random.Random(500 + seed)
    entries = random_entries(rng, rng.choice((1, 5, 60, 200)))
    plain = Block(build(entries, pad_to=rng.choice((1, 4096))))
    decoded = plain.decoded()
    assert decoded.is_decoded and not plain.is_decoded
    assert decoded.decoded() is decoded
    assert len(decoded) == len(plain)
    seqs = sorted({e[1] for e in entries})
    snapshots = [0, 1 << 55] + rng.sample(seqs, min(10, len(seqs))) + [s - 1 for s in rng.sample(seqs, min(10, len(seqs)))]
    probes = [e[0] for e in entries] + [b"", b"\x00", b"a\x00", b"zzz", b"ab\xff", b"f" * 7]
    for key in probes:
        assert decoded.lower_bound(key) == plain.lower_bound(key) == sum(e[0] < key for e in entries)
        for snap in snapshots:
            assert decoded.get(key, snap) == plain.get(key, snap) == model_get(entries, key, snap), (key, snap)
    for start in [None, b"", b"zz", b"c"] + [e[0] for e in rng.sample(entries, min(8, len(entries)))]:
        expected = [e for e in entries if start is None or e[0] >= start]
        assert decoded.entries(start) == plain.entries(start) == expected
        assert list(decoded.iter_from(start)) == expected
    for _ in range(10):
        first = rng.randint(0, len(entries))
        stop = rng.randint(first, len(entries))
        assert decoded.entries_between(first, stop) == plain.entries_between(first, stop) == entries[first:stop]


def test_a_decoded_blocks_entries_are_not_changed_by_what_a_reader_does_with_them():
    entries = [(b"k%03d" % i, 5, Kind.PUT, b"v%d" % i) for i in range(20)]
    decoded = Block(build(entries)).decoded()
    taken = decoded.entries()
    taken.reverse()
    del decoded.entries_between(2, 9)[:]
    assert decoded.entries() == entries
    assert decoded.get(b"k003", 9) == (5, Kind.PUT, b"v3")


@pytest.mark.parametrize("count, value_bytes", [(100, 10), (15, 1000), (1, 0), (0, 0)])
def test_decoded_copy_charges_what_its_objects_take(count, value_bytes):
    entries = [(b"k%05d" % i, (1 << 40) + i, Kind.PUT, b"x" * value_bytes) for i in range(count)]
    plain = Block(build(entries, pad_to=4096))
    assert plain.nbytes == len(build(entries, pad_to=4096))
    decoded = plain.decoded()
    # Every distinct object the decoded block holds, counted once (a key is
    # in the key list and in its entry; the kinds are shared constants).
    held = {id(decoded): decoded, id(decoded._keys): decoded._keys, id(decoded._entries): decoded._entries}
    for entry in decoded._entries:
        for obj in (entry, entry[0], entry[1], entry[3]):
            held[id(obj)] = obj
    assert decoded.nbytes == sum(map(sys.getsizeof, held.values()))


# ---- the C search (hedge_block_find / hedge_block_seek) and its Python twin ----

needs_kernel = pytest.mark.skipif(not block_module.search_kernel_available(),
                                  reason="the C block search is not built (hedge.io._uring) or HEDGE_PURE_PYTHON is set")


def _answers(block: Block, probes, snapshots):
    """Every get and lower_bound of ``probes`` the block gives now."""
    return ([block.get(key, snap) for key in probes for snap in snapshots],
            [block.lower_bound(key) for key in probes])


@needs_kernel
@pytest.mark.parametrize("seed", range(8))
def test_c_search_answers_like_its_python_twin(seed):
    rng = random.Random(900 + seed)
    entries = random_entries(rng, rng.choice((1, 3, 16, 60, 300)))
    if seed % 2:                 # keys that are prefixes of others, the empty key, 0x00 and 0xff bytes
        extra = {b"", b"\x00", b"\xff", b"\xff\xff", b"a", b"a\x00", b"ab"}
        keys = sorted({e[0] for e in entries} | extra)
        entries = [(k, 7, Kind.PUT, b"v" + k) for k in keys]
    block = Block(build(entries, pad_to=rng.choice((1, 4096))))
    seqs = sorted({e[1] for e in entries})
    seqs = rng.sample(seqs, min(12, len(seqs)))
    snapshots = [0, 1, (1 << 56) - 1, (1 << 64) - 1] + seqs + [s - 1 for s in seqs]
    probes = sorted({e[0] for e in entries}) + [b"", b"\x00", b"a\x00", b"zzz", b"ab\xff", b"f" * 7, b"\xff" * 3]
    try:
        block_module.use_search_kernel(False)
        python = _answers(block, probes, snapshots)
        block_module.use_search_kernel(True)
        c = _answers(block, probes, snapshots)
    finally:
        block_module.use_search_kernel(True)
    assert c == python
    gets, bounds = python
    assert gets == [model_get(entries, key, snap) for key in probes for snap in snapshots]
    assert bounds == [sum(e[0] < key for e in entries) for key in probes]


@needs_kernel
def test_c_search_of_an_empty_block_finds_nothing():
    block = Block(BlockBuilder().finish())
    assert block.get(b"a", 1) is None
    assert block.lower_bound(b"a") == 0


def _forged(entries, patch) -> bytes:
    """A block of ``entries`` with ``patch(body)`` applied to its bytes before
    the checksum, and a checksum that matches them."""
    raw = bytearray(build(entries))
    body = raw[:-8]
    patch(body)
    return bytes(body) + struct.pack("<Q", xxhash.xxh3_64_intdigest(bytes(body)))


# Ten entries, the fifth (index 5) damaged as named, the checksum matching.
DAMAGED_ENTRIES = [(b"k%03d" % i, 5, Kind.PUT, b"x" * 20) for i in range(10)]


def _damaged_block(damage: str) -> Block:
    """A block of DAMAGED_ENTRIES whose entry 5 has ``damage``: "offset
    past the end", "key longer than the block", "value longer than the
    block" or "kind byte 7" (file "x.sst", offset 8192)."""
    count = len(DAMAGED_ENTRIES)

    def patch(body):
        offsets_at = len(body) - 4 - 4 * count
        (fifth,) = struct.unpack_from("<I", body, offsets_at + 4 * 5)
        if damage == "offset past the end":
            struct.pack_into("<I", body, offsets_at + 4 * 5, len(body) + 100)
        elif damage == "key longer than the block":
            struct.pack_into("<I", body, fifth, 1 << 30)
        elif damage == "value longer than the block":
            struct.pack_into("<I", body, fifth + 4, offsets_at - fifth - 16 - 4 + 1)
        else:
            body[fifth + 8] = 7

    return Block(_forged(DAMAGED_ENTRIES, patch), file="x.sst", offset=8192)


@needs_kernel
@pytest.mark.parametrize("damage", ["offset past the end", "key longer than the block", "value longer than the block",
                                    "kind byte 7"])
def test_c_search_raises_corruption_for_an_entry_that_does_not_fit(damage):
    block = _damaged_block(damage)
    with pytest.raises(CorruptionError, match="outside the block") as info:
        block.get(b"k005", 9)
    assert (info.value.file, info.value.offset) == ("x.sst", 8192)
    if damage in ("offset past the end", "key longer than the block"):
        with pytest.raises(CorruptionError, match="outside the block"):    # the seek reads that key too
            block.lower_bound(b"k005")
    else:
        assert block.get(b"k004", 9) == (5, Kind.PUT, b"x" * 20)   # the other entries still answer


# ---- the C decoding (block_entries) and its Python twin ----

needs_decoder = pytest.mark.skipif(not block_module.decode_kernel_available(),
                                   reason="the C block decoding is not built (hedge.io._uring) or HEDGE_PURE_PYTHON is set")


def _decoded_with(enabled: bool, block: Block, spans) -> list:
    block_module.use_decode_kernel(enabled)
    try:
        return [block.entries_between(first, stop) for first, stop in spans]
    finally:
        block_module.use_decode_kernel(True)


@needs_decoder
@pytest.mark.parametrize("seed", range(8))
def test_c_decoding_gives_what_its_python_twin_gives(seed):
    rng = random.Random(1300 + seed)
    entries = random_entries(rng, rng.choice((1, 3, 16, 60, 300)))
    if seed % 2:                 # big values, seqs up to 2**56 - 1, the empty key
        entries = [(b"", (1 << 56) - 1, Kind.PUT, rng.randbytes(70_000))] + [
            (b"k%d" % i, (1 << 56) - 2 - i, Kind.DELETE if i % 3 == 0 else Kind.PUT, rng.randbytes(i * 37))
            for i in range(40)]
    block = Block(build(entries, pad_to=rng.choice((1, 4096))))
    n = len(entries)
    spans = [(0, n), (0, 0), (n, n)] + [sorted((rng.randint(0, n), rng.randint(0, n))) for _ in range(20)]
    c = _decoded_with(True, block, spans)
    assert c == _decoded_with(False, block, spans)
    assert c == [entries[first:stop] for first, stop in spans]
    kinds = {type(entry[2]) for run in c for entry in run}
    assert kinds <= {int}, kinds                # plain ints, as the memtables hold


@needs_decoder
@pytest.mark.parametrize("damage", ["offset past the end", "key longer than the block", "value longer than the block",
                                    "kind byte 7"])
def test_c_decoding_raises_corruption_for_entries_outside_the_block(damage):
    block = _damaged_block(damage)
    count = len(DAMAGED_ENTRIES)
    with pytest.raises(CorruptionError, match="do not fit") as info:
        block.entries_between(0, count)
    assert (info.value.file, info.value.offset) == ("x.sst", 8192)
    with pytest.raises(CorruptionError, match="do not fit"):
        block.entries_between(5, 6)
    assert block.entries_between(0, 5) == DAMAGED_ENTRIES[:5]       # the entries before it still decode
    assert block.entries_between(6, count) == DAMAGED_ENTRIES[6:]


@pytest.mark.parametrize("damage", ["offset past the end", "kind byte 7"])
def test_python_decoding_raises_corruption_for_an_offset_or_kind_it_cannot_read(damage):
    block = _damaged_block(damage)
    block_module.use_decode_kernel(False)
    try:
        with pytest.raises(CorruptionError, match="do not fit") as info:
            block.entries_between(0, len(DAMAGED_ENTRIES))
    finally:
        block_module.use_decode_kernel(True)
    assert (info.value.file, info.value.offset) == ("x.sst", 8192)