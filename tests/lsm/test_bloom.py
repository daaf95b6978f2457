"""Bloom filter: no false negatives, false-positive rate, corruption."""
from __future__ import annotations

import os
import random
import struct
import subprocess
import sys

import pytest
import xxhash

from hedge.errors import CorruptionError
from hedge.lsm import bloom as bloom_module
from hedge.lsm.bloom import BloomBuilder, BloomFilter, probes_for


def build(keys, bits_per_key: int = 10) -> bytes:
    builder = BloomBuilder(bits_per_key)
    for k in keys:
        builder.add(k)
    return builder.finish()


def test_no_false_negatives_and_false_positive_rate_near_one_percent():
    rng = random.Random(7)
    keys = {rng.randbytes(rng.randint(4, 24)) for _ in range(20_000)}
    bloom = BloomFilter(build(keys))
    assert all(bloom.may_contain(k) for k in keys)
    others = [b"other:%d" % i for i in range(20_000)]
    rate = sum(bloom.may_contain(k) for k in others) / len(others)
    assert 0.003 <= rate <= 0.025, rate


def test_fewer_bits_per_key_give_more_false_positives():
    keys = [b"key%d" % i for i in range(5000)]
    others = [b"miss%d" % i for i in range(20_000)]
    rates = []
    for bits in (4, 10, 16):
        bloom = BloomFilter(build(keys, bits))
        assert all(bloom.may_contain(k) for k in keys)
        rates.append(sum(bloom.may_contain(k) for k in others))
    assert rates[0] > rates[1] > rates[2]


def test_probes_grow_with_bits_per_key_within_limits():
    probes = [probes_for(b) for b in range(1, 65)]
    assert probes == sorted(probes)
    assert probes[0] >= 1 and probes[-1] <= 30


def test_estimated_size_is_exact():
    builder = BloomBuilder(10)
    for i in range(1234):
        builder.add(b"%d" % i)
    expected = builder.estimated_size()
    assert len(builder.finish()) == expected


def test_empty_filter_rejects_keys():
    bloom = BloomFilter(build([]))
    assert sum(bloom.may_contain(b"%d" % i) for i in range(1000)) == 0


def test_bits_per_key_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        BloomBuilder(0)


@pytest.mark.parametrize("position", [0, 100, -16, -9, -1])
def test_flipped_byte_raises_corruption_naming_file_and_offset(position):
    data = bytearray(build([b"k%d" % i for i in range(100)]))
    data[position] ^= 0x01
    with pytest.raises(CorruptionError) as info:
        BloomFilter(bytes(data), file="000009.sst", offset=40960)
    assert (info.value.file, info.value.offset) == ("000009.sst", 40960)


def test_inconsistent_trailer_with_valid_checksum_raises_corruption():
    body = bytes(16) + struct.pack("<B3xI", 7, 99)  # claims 99 bitmap bytes, has 16
    data = body + struct.pack("<Q", xxhash.xxh3_64_intdigest(body))
    with pytest.raises(CorruptionError, match="inconsistent"):
        BloomFilter(data, file="f", offset=0)


@pytest.mark.parametrize("bits_per_key,nkeys", [(10, 5000), (1, 300), (4, 2), (20, 1000), (64, 50)])
def test_probe_follows_the_documented_formula(bits_per_key, nkeys, bloom_probe):
    """docs/format/bloom.md, computed the plain way: bit (h1 + i*h2) mod
    nbits for i < k, with exact integers, for added and absent keys."""
    rng = random.Random(bits_per_key * 1000 + nkeys)
    keys = [rng.randbytes(rng.randint(1, 30)) for _ in range(nkeys)]
    data = build(keys, bits_per_key)
    k, nbytes = struct.unpack_from("<B3xI", data, len(data) - 16)
    bitmap = data[:nbytes]
    nbits = 8 * nbytes
    bloom = BloomFilter(data)

    def by_the_book(key: bytes) -> bool:
        h = xxhash.xxh3_128_intdigest(key)
        h1, h2 = h & ((1 << 64) - 1), h >> 64
        return all(bitmap[p >> 3] >> (p & 7) & 1 for p in ((h1 + i * h2) % nbits for i in range(k)))

    probes = keys[:500] + [rng.randbytes(rng.randint(0, 30)) for _ in range(3000)]
    assert [bloom.may_contain(key) for key in probes] == [by_the_book(key) for key in probes]


@pytest.mark.parametrize("bits_per_key,nkeys", [(10, 3000), (1, 1), (3, 17), (7, 500), (64, 40), (10, 0)])
def test_bitmap_is_the_documented_one(bits_per_key, nkeys):
    """The builder's bitmap, bit by bit, against docs/format/bloom.md done
    the plain way: for each key, bits (h1 + i*h2) mod nbits for i < k."""
    rng = random.Random(nkeys + bits_per_key)
    keys = [rng.randbytes(rng.randint(1, 20)) for _ in range(nkeys)]
    data = build(keys, bits_per_key)
    k, nbytes = struct.unpack_from("<B3xI", data, len(data) - 16)
    assert k == probes_for(bits_per_key)
    nbits = 8 * nbytes
    expected = bytearray(nbytes)
    for key in keys:
        h = xxhash.xxh3_128_intdigest(key)
        h1, h2 = h & ((1 << 64) - 1), h >> 64
        for i in range(k):
            p = (h1 + i * h2) % nbits
            expected[p >> 3] |= 1 << (p & 7)
    assert data[:nbytes] == bytes(expected)


# ---- the C kernel and its pure-Python twin --------------------------------------

_C_SET_BITS = bloom_module._c_kernel()
needs_kernel = pytest.mark.skipif(_C_SET_BITS is None, reason="hedge.io._uring is not built: no C kernel to compare")


@needs_kernel
@pytest.mark.parametrize("seed", range(8))
def test_c_kernel_sets_the_same_bits_as_its_python_twin(seed):
    """Random digests (the high bits set, so unsigned 64-bit arithmetic
    matters), bitmaps from the smallest to large, 1 to MAX_PROBES probes."""
    rng = random.Random(seed)
    for _ in range(20):
        nkeys = rng.choice((0, 1, 2, rng.randint(3, 5000)))
        digests = bytes(rng.getrandbits(8) for _ in range(16 * nkeys)) if nkeys < 50 else rng.randbytes(16 * nkeys)
        nbytes = rng.choice((8, 9, 4095, rng.randint(8, 20_000)))
        probes = rng.randint(1, 30)
        expected = bytearray(nbytes)
        bloom_module._set_bits_python(digests, expected, nbytes * 8, probes)
        got = bytearray(nbytes)
        _C_SET_BITS(bytearray(digests), got, nbytes * 8, probes)
        assert got == expected, (nkeys, nbytes, probes)


@needs_kernel
def test_tables_built_with_and_without_the_kernel_are_identical(monkeypatch):
    from hedge.lsm.keys import Kind
    from hedge.lsm.table import TableBuilder

    entries = [(b"key%06d" % i, 10, Kind.PUT, b"v%d" % i) for i in range(3000)]

    def table() -> bytes:
        builder = TableBuilder()
        for e in entries:
            builder.add(*e)
        chunks, _ = builder.finish()
        return b"".join(data for _, data in chunks)

    monkeypatch.setattr(bloom_module, "set_bits", _C_SET_BITS)
    with_kernel = table()
    monkeypatch.setattr(bloom_module, "set_bits", bloom_module._set_bits_python)
    assert table() == with_kernel


def test_pure_python_is_chosen_when_asked(monkeypatch):
    monkeypatch.setenv("HEDGE_PURE_PYTHON", "1")
    assert bloom_module._c_kernel() is None


@pytest.mark.skipif(not bloom_module.probe_kernel_available(),
                    reason="the C probes are not built (hedge.io._uring) or HEDGE_PURE_PYTHON is set")
@pytest.mark.parametrize("seed", range(6))
def test_c_probes_answer_as_their_python_twin(seed):
    """Random filters from 1 to 64 bits per key (1 to MAX_PROBES probes),
    empty to large, asked for their keys and for random others, with each
    probe in turn."""
    rng = random.Random(seed)
    bits_per_key = rng.choice([1, 2, 10, 23, 64])
    keys = [rng.randbytes(rng.randint(0, 40)) for _ in range(rng.choice([0, 1, 60, 4000]))]
    bloom = BloomFilter(build(keys, bits_per_key))
    asked = keys + [rng.randbytes(rng.randint(0, 40)) for _ in range(4000)]
    answers = {}
    try:
        for kernel in (True, False):
            bloom_module.use_probe_kernel(kernel)
            answers[kernel] = [bloom.may_contain(key) for key in asked]
    finally:
        bloom_module.use_probe_kernel(True)
    assert answers[True] == answers[False]
    assert all(answers[True][:len(keys)])


def test_pure_python_probes_are_chosen_when_asked():
    """HEDGE_PURE_PYTHON is read when the module loads: a fresh interpreter."""
    env = dict(os.environ, HEDGE_PURE_PYTHON="1")
    code = "from hedge.lsm import bloom; print(bloom.probe_kernel_available(), bloom._probe)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "None"]


@pytest.mark.skipif(not bloom_module.probe_kernel_available(),
                    reason="the C probes are not built (hedge.io._uring) or HEDGE_PURE_PYTHON is set")
@pytest.mark.parametrize("nbits, digest_bytes", [(0, 16), (8 * 8 + 1, 16), (64, 15), (64, 17)])
def test_c_probes_refuse_a_bitmap_or_digest_they_cannot_read(nbits, digest_bytes):
    """The kernel reads no bit past the bitmap and no byte past the digest:
    a call that would gets ValueError."""
    with pytest.raises(ValueError, match="bloom_probe"):
        bloom_module._PROBE_KERNEL(bytes(8), nbits, 7, bytes(digest_bytes))
    assert bloom_module._PROBE_KERNEL(b"\xff" * 8, 64, 7, bytes(16)) is True
