"""WriteBatch: building, validation, encoding and decoding."""
import random

import pytest

from hedge.errors import CorruptionError
from hedge.lsm.batch import HEADER_BYTES, OP_HEADER_BYTES, WriteBatch, decode, decode_many
from hedge.lsm.keys import MAX_KEY_BYTES, MAX_SEQ, Kind


def random_batch(rng: random.Random, n: int) -> tuple[WriteBatch, list]:
    batch = WriteBatch()
    ops = []
    for _ in range(n):
        key = rng.randbytes(rng.randint(1, 40))
        if rng.random() < 0.3:
            batch.remove(key)
            ops.append((Kind.DELETE, key, b""))
        else:
            value = rng.randbytes(rng.randint(0, 300))
            batch.put(key, value)
            ops.append((Kind.PUT, key, value))
    return batch, ops


def test_encode_decode_round_trip():
    rng = random.Random(7)
    for n in (0, 1, 2, 50, 500):
        batch, ops = random_batch(rng, n)
        first_seq = rng.randint(1, 1 << 40)
        data = batch.encode(first_seq)
        assert len(data) == batch.byte_size()
        assert decode(data) == (first_seq, ops)


@pytest.mark.parametrize("seed", range(4))
def test_single_operation_batches_encode_like_any_other(seed):
    """A batch of one operation takes a shortcut in encode and entries;
    its bytes are the general layout (docs/format/batch.md) built by hand."""
    import struct
    rng = random.Random(seed)
    for _ in range(200):
        batch, ops = random_batch(rng, 1)
        (kind, key, value), = ops
        first_seq = rng.choice((1, MAX_SEQ, rng.randint(1, 1 << 50)))
        expected = struct.pack("<QI", first_seq, 1) + struct.pack("<BII", kind, len(key), len(value)) + key + value
        assert batch.encode(first_seq) == expected
        assert batch.entries(first_seq) == [(key, first_seq, kind, value)]
        assert len(expected) == batch.byte_size()


def test_entries_take_consecutive_sequence_numbers():
    batch, ops = random_batch(random.Random(3), 20)
    assert list(batch.entries(100)) == [(k, 100 + i, kind, v) for i, (kind, k, v) in enumerate(ops)]


def test_decode_many_reads_a_group_of_batches():
    rng = random.Random(11)
    group = []
    payload = b""
    seq = 1
    for n in (3, 0, 7, 1):
        batch, ops = random_batch(rng, n)
        payload += batch.encode(seq)
        group.append((seq, ops))
        seq += n
    assert decode_many(payload) == group
    assert decode_many(b"") == []


def test_bytes_like_keys_and_values_are_stored_as_bytes():
    batch = WriteBatch()
    batch.put(bytearray(b"k1"), memoryview(b"v1"))
    batch.remove(memoryview(b"k2"))
    assert decode(batch.encode(1))[1] == [(Kind.PUT, b"k1", b"v1"), (Kind.DELETE, b"k2", b"")]
    assert all(type(x) is bytes for e in batch.entries(1) for x in (e[0], e[3]))


def test_clear_empties_the_batch():
    batch, _ = random_batch(random.Random(1), 10)
    batch.clear()
    assert len(batch) == 0
    assert batch.byte_size() == HEADER_BYTES
    assert decode(batch.encode(5)) == (5, [])


def test_byte_size_counts_every_operation():
    batch = WriteBatch()
    batch.put(b"abc", b"12345")
    batch.remove(b"xy")
    assert batch.byte_size() == HEADER_BYTES + 2 * OP_HEADER_BYTES + 3 + 5 + 2


@pytest.mark.parametrize("call, exc", [
    (lambda b: b.put("text", b"v"), TypeError),
    (lambda b: b.put(b"k", "text"), TypeError),
    (lambda b: b.put(None, b"v"), TypeError),
    (lambda b: b.put(b"k" * (MAX_KEY_BYTES + 1), b"v"), ValueError),
    (lambda b: b.remove(123), TypeError),
    (lambda b: b.remove(b"k" * (MAX_KEY_BYTES + 1)), ValueError),
])
def test_bad_input_raises_and_leaves_the_batch_unchanged(call, exc):
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.remove(b"b")
    before = (len(batch), batch.byte_size(), batch.encode(9))
    with pytest.raises(exc):
        call(batch)
    assert (len(batch), batch.byte_size(), batch.encode(9)) == before


@pytest.mark.parametrize("first_seq", [0, -1, MAX_SEQ])
def test_encode_rejects_sequence_numbers_out_of_range(first_seq):
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.put(b"b", b"2")
    with pytest.raises(ValueError):
        batch.encode(first_seq)


def _sample() -> bytes:
    batch = WriteBatch()
    batch.put(b"key", b"value")
    batch.remove(b"gone")
    return batch.encode(42)


def test_every_truncation_raises_corruption():
    data = _sample()
    for cut in range(len(data)):
        with pytest.raises(CorruptionError):
            decode(data[:cut])


def test_trailing_bytes_raise_corruption_with_offset():
    data = _sample()
    with pytest.raises(CorruptionError) as info:
        decode(data + b"\x00", file="000007.wal", offset=1000)
    assert info.value.file == "000007.wal"
    assert info.value.offset == 1000 + len(data)


def test_unknown_kind_raises_corruption_at_the_operation():
    data = bytearray(_sample())
    data[HEADER_BYTES] = 9
    with pytest.raises(CorruptionError) as info:
        decode(bytes(data), offset=100)
    assert info.value.offset == 100 + HEADER_BYTES


def test_delete_with_a_value_raises_corruption():
    data = bytearray(_sample())
    second = HEADER_BYTES + OP_HEADER_BYTES + 3 + 5
    assert data[second] == Kind.DELETE
    data[second + 5] = 1          # value length of the delete
    with pytest.raises(CorruptionError):
        decode(bytes(data))


def test_zero_first_seq_raises_corruption():
    data = bytearray(_sample())
    data[0:8] = bytes(8)
    with pytest.raises(CorruptionError):
        decode(bytes(data))


def test_empty_key_decodes():
    data = bytearray(WriteBatch().encode(1))
    data[8] = 1                   # count = 1
    data += bytes([Kind.PUT]) + bytes(8)
    assert decode(bytes(data))[1] == [(Kind.PUT, b"", b"")]


def test_empty_key_round_trips():
    batch = WriteBatch()
    batch.put(b"", b"v")
    batch.remove(bytearray())
    batch.put(memoryview(b""), b"")
    assert decode(batch.encode(7)) == (7, [(Kind.PUT, b"", b"v"), (Kind.DELETE, b"", b""), (Kind.PUT, b"", b"")])


def test_check_size_refuses_a_batch_over_the_write_limit(monkeypatch):
    from hedge.lsm import batch as batch_module

    monkeypatch.setattr(batch_module, "MAX_BATCH_BYTES", 1000)
    b = WriteBatch()
    b.put(b"k", b"v" * 900)
    b.check_size()
    b.put(b"k2", b"v" * 200)
    with pytest.raises(ValueError, match="at most 1000"):
        b.check_size()


def test_the_largest_batch_and_a_full_group_fit_one_wal_record():
    from hedge.lsm.batch import MAX_BATCH_BYTES
    from hedge.lsm.commit import MAX_GROUP_BYTES
    from hedge.lsm.wal.format import MAX_PAYLOAD_BYTES

    group_cap = MAX_GROUP_BYTES
    assert group_cap + MAX_BATCH_BYTES <= MAX_PAYLOAD_BYTES
