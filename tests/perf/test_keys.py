"""Record keys: FNV-1a 64 against the published test vectors, YCSB's record
hash, and both insert orders."""
import struct

import pytest

from perf.keys import KeySpace, fnv1a_64, fnvhash64, key_name


@pytest.mark.parametrize("data, expected", [
    (b"", 0xCBF29CE484222325),
    (b"a", 0xAF63DC4C8601EC8C),
    (b"foobar", 0x85944171F73967E8),
])
def test_fnv1a_64_matches_published_vectors(data, expected):
    assert fnv1a_64(data) == expected


def test_fnvhash64_is_absolute_value_of_signed_hash_of_little_endian_bytes():
    seen_negative = False
    for n in range(200):
        signed = struct.unpack("<q", struct.pack("<Q", fnv1a_64(struct.pack("<Q", n))))[0]
        seen_negative |= signed < 0
        assert fnvhash64(n) == abs(signed)
    assert seen_negative  # the sign fix was exercised


def test_hashed_keys_are_user_plus_decimal_hash_and_spread():
    assert key_name(7) == b"user" + str(fnvhash64(7)).encode()
    keys = [key_name(n) for n in range(1000)]
    assert len(set(keys)) == 1000
    assert sorted(keys) != keys  # consecutive records are not adjacent in key order


def test_ordered_keys_sort_in_record_order():
    keys = [key_name(n, "ordered") for n in (0, 9, 10, 99, 100, 123456)]
    assert keys == sorted(keys)
    assert keys[0] == b"user000000000000"


def test_unknown_insert_order_is_refused():
    with pytest.raises(ValueError):
        key_name(1, "random")
    with pytest.raises(ValueError):
        KeySpace("random")


def test_keyspace_matches_key_name():
    space = KeySpace("hashed")
    assert space.name(50) == key_name(50)
    assert space.name(3) == key_name(3)
