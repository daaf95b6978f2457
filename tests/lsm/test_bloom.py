"""Bloom filter: no false negatives, false-positive rate, corruption."""
from __future__ import annotations

import random
import struct

import pytest
import xxhash

from hedge.errors import CorruptionError
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
