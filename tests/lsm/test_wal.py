"""WAL framing and replay: round trips, and one test per kind of damage."""
import random

import pytest
import xxhash

from hedge.errors import CorruptionError
from hedge.lsm.batch import WriteBatch, decode_many
from hedge.lsm.wal import HEADER_BYTES, EndReason, RecordType, Recovery, WalReader, encode_record, record_bytes

WAL = 7
NAME = "000007.wal"


def payloads(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice((0, 1, 10, 100, 1000))) for _ in range(n)]


def wal_image(items: list[bytes], number: int = WAL) -> tuple[bytes, list[int]]:
    """The file holding ``items`` as records, and each record's offset."""
    offsets = []
    out = b""
    for p in items:
        offsets.append(len(out))
        out += encode_record(number, p)
    return out, offsets


def read(data: bytes, mode: str = "tolerate_tail") -> tuple[list[bytes], WalReader]:
    reader = WalReader(data, WAL, NAME, mode)
    return [r.payload for r in reader], reader


def flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x40
    return bytes(out)


# --- round trips -----------------------------------------------------------

@pytest.mark.parametrize("mode", list(Recovery))
def test_round_trip_many_records(mode):
    items = payloads(2000)
    data, offsets = wal_image(items)
    reader = WalReader(data, WAL, NAME, mode)
    records = reader.read_all()
    assert [r.payload for r in records] == items
    assert [r.offset for r in records] == offsets
    assert all(r.record_type is RecordType.BATCHES for r in records)
    assert reader.end_offset == len(data)
    assert reader.end_reason is EndReason.END_OF_DATA
    assert reader.dropped_tail_bytes == 0 and reader.damage is None


def test_round_trip_of_group_committed_batches():
    batches = []
    seq = 1
    payload = b""
    for n in (1, 5, 2):
        batch = WriteBatch()
        for i in range(n):
            batch.put(b"key%d" % (seq + i), b"v" * i)
        payload += batch.encode(seq)
        batches.append((seq, n))
        seq += n
    (record,) = WalReader(encode_record(WAL, payload), WAL, NAME).read_all()
    assert [(s, len(ops)) for s, ops in decode_many(record.payload)] == batches


def test_record_type_and_size_round_trip():
    data = encode_record(WAL, b"edit", RecordType.VERSION_EDIT)
    assert len(data) == record_bytes(4) == HEADER_BYTES + 4
    (record,) = WalReader(data, WAL, NAME).read_all()
    assert record.record_type is RecordType.VERSION_EDIT and record.payload == b"edit"


def test_empty_file_is_a_clean_end():
    records, reader = read(b"", "absolute")
    assert records == [] and reader.end_reason is EndReason.END_OF_DATA and reader.end_offset == 0


@pytest.mark.parametrize("args", [(0, b"x"), (-1, b"x"), (1 << 64, b"x"), (WAL, b"x", 0), (WAL, b"x", 99)])
def test_encode_record_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        encode_record(*args)


def test_unknown_recovery_mode_is_a_value_error():
    with pytest.raises(ValueError):
        WalReader(b"", WAL, NAME, "best_effort")


# --- end of log --------------------------------------------------------------

@pytest.mark.parametrize("mode", list(Recovery))
@pytest.mark.parametrize("zeros", [1, HEADER_BYTES - 1, HEADER_BYTES, 4096])
def test_zero_filled_tail_is_clean_end(mode, zeros):
    items = payloads(10)
    data, _ = wal_image(items)
    records, reader = read(data + bytes(zeros), mode)
    assert records == items
    assert reader.end_reason is EndReason.ZERO_FILL
    assert reader.end_offset == len(data)
    assert reader.dropped_tail_bytes == 0 and reader.damage is None


@pytest.mark.parametrize("mode", list(Recovery))
def test_record_with_another_wal_number_ends_the_log(mode):
    # A reused file: records of WAL 7 written over the records of old WAL 3,
    # ending where an old record starts.
    items = payloads(5, seed=3)
    new, _ = wal_image(items)
    old, old_offsets = wal_image(payloads(50, seed=2), number=3)
    records, reader = read(new + old[old_offsets[10]:], mode)
    assert records == items
    assert reader.end_reason is EndReason.STALE_RECORD
    assert reader.end_offset == len(new)
    assert reader.dropped_tail_bytes == 0 and reader.damage is None


def test_remains_of_an_old_record_after_the_last_record_dropped_in_tolerate_tail():
    # A reused file whose new data ends inside an old record: what follows is
    # neither a record nor zeros, and no record of this WAL comes after it.
    items = payloads(5, seed=3)
    new, _ = wal_image(items)
    old, old_offsets = wal_image(payloads(50, seed=2), number=3)
    remains = old[old_offsets[10] + 3:]
    records, reader = read(new + remains)
    assert records == items
    assert reader.end_reason is EndReason.DAMAGED_TAIL
    assert reader.dropped_tail_bytes == len(remains)


def test_stale_record_followed_by_a_record_of_this_wal_raises():
    data, _ = wal_image(payloads(3))
    stale = encode_record(3, b"stale")
    mixed = data + stale + encode_record(WAL, b"after")
    with pytest.raises(CorruptionError) as info:
        read(mixed)
    assert info.value.offset == len(data)


# --- damage ----------------------------------------------------------------

def test_torn_final_record_dropped_in_tolerate_tail():
    items = payloads(20)
    data, offsets = wal_image(items)
    last = offsets[-1]
    for cut in range(last + 1, len(data)):      # every tear inside the last record
        records, reader = read(data[:cut])
        assert records == items[:-1]
        assert reader.end_reason is EndReason.DAMAGED_TAIL
        assert reader.end_offset == last
        assert reader.dropped_tail_bytes == cut - last
        assert reader.damage.offset == last and reader.damage.file == NAME


def test_torn_final_record_raises_in_absolute():
    data, offsets = wal_image(payloads(20))
    with pytest.raises(CorruptionError) as info:
        read(data[:-3], "absolute")
    assert info.value.file == NAME and info.value.offset == offsets[-1]


def test_torn_final_record_followed_by_zeros_raises_in_absolute():
    # A preallocated file: the tail of the torn record reads as zeros.
    data, offsets = wal_image(payloads(20))
    torn = data[:-5] + bytes(5 + 4096)
    with pytest.raises(CorruptionError) as info:
        read(torn, "absolute")
    assert info.value.offset == offsets[-1]


def test_torn_final_record_followed_by_zeros_dropped_in_tolerate_tail():
    items = payloads(20)
    data, offsets = wal_image(items)
    records, reader = read(data[:-5] + bytes(4096))
    assert records == items[:-1]
    assert reader.end_reason is EndReason.DAMAGED_TAIL and reader.end_offset == offsets[-1]


def test_truncated_header_at_the_end_dropped_in_tolerate_tail():
    items = payloads(5)
    data, _ = wal_image(items)
    records, reader = read(data + encode_record(WAL, b"next")[:HEADER_BYTES - 4])
    assert records == items
    assert reader.end_reason is EndReason.DAMAGED_TAIL and reader.dropped_tail_bytes == HEADER_BYTES - 4


def test_flipped_byte_in_middle_record_raises_naming_file_and_offset():
    data, offsets = wal_image([b"first" * 10, b"middle" * 10, b"last" * 10])
    middle = offsets[1]
    for at in range(middle, offsets[2]):        # every byte of the middle record
        with pytest.raises(CorruptionError) as info:
            read(flip(data, at))
        assert info.value.file == NAME
        assert info.value.offset == middle, at
        assert NAME in str(info.value)


def test_flipped_byte_in_middle_record_raises_in_absolute():
    data, offsets = wal_image(payloads(10))
    with pytest.raises(CorruptionError) as info:
        read(flip(data, offsets[4] + HEADER_BYTES), "absolute")
    assert info.value.offset == offsets[4]


def test_flipped_wal_number_in_middle_record_raises_not_stale():
    data, offsets = wal_image(payloads(10))
    with pytest.raises(CorruptionError) as info:
        read(flip(data, offsets[4] + 8))        # first byte of the file number
    assert info.value.offset == offsets[4]


def test_zero_hole_followed_by_a_record_raises_in_tolerate_tail():
    # A lost write in the middle (zeros) with a later record that did land.
    data, offsets = wal_image(payloads(10))
    holed = data[:offsets[5]] + bytes(offsets[6] - offsets[5]) + data[offsets[6]:]
    with pytest.raises(CorruptionError) as info:
        read(holed)
    assert info.value.offset == offsets[5]


def test_flipped_byte_in_the_last_record_tolerated_as_torn_tail():
    items = [b"first" * 10, b"middle" * 10, b"last" * 10]
    data, offsets = wal_image(items)
    last = offsets[-1]
    for at in range(last, len(data)):           # every byte of the last record
        records, reader = read(flip(data, at))
        assert records == items[:-1], at
        assert reader.end_reason is EndReason.DAMAGED_TAIL
        assert reader.end_offset == last
        assert reader.dropped_tail_bytes == len(data) - last


def test_damaged_record_end_tells_a_whole_damaged_record_from_a_cut_one():
    items = [b"first" * 10, b"last" * 10]
    data, offsets = wal_image(items)
    _, reader = read(flip(data, len(data) - 1))                  # whole, checksum mismatch
    assert reader.end_reason is EndReason.DAMAGED_TAIL and reader.damaged_record_end == len(data)
    _, reader = read(data[:-1])                                  # cut by the end of the file
    assert reader.end_reason is EndReason.DAMAGED_TAIL and reader.damaged_record_end is None
    _, reader = read(data[:offsets[-1] + HEADER_BYTES - 1])      # cut inside the header
    assert reader.damaged_record_end is None
    _, reader = read(data)
    assert reader.end_reason is EndReason.END_OF_DATA and reader.damaged_record_end is None


def test_flipped_byte_in_the_last_record_raises_in_absolute():
    data, offsets = wal_image(payloads(10))
    with pytest.raises(CorruptionError) as info:
        read(flip(data, len(data) - 1), "absolute")
    assert info.value.offset == offsets[-1]


def test_point_in_time_stops_at_first_bad_record():
    items = payloads(10)
    items[3] = b"\xff"                        # record 3 has a payload byte to flip
    data, offsets = wal_image(items)
    damaged = flip(flip(data, offsets[3] + HEADER_BYTES), offsets[7] + 2)
    records, reader = read(damaged, "point_in_time")
    assert records == items[:3]
    assert reader.end_reason is EndReason.DAMAGED
    assert reader.end_offset == offsets[3]
    assert reader.damage.offset == offsets[3] and reader.damage.file == NAME
    assert reader.dropped_tail_bytes == len(data) - offsets[3]


def test_point_in_time_torn_tail_is_a_damaged_tail():
    items = payloads(10)
    data, offsets = wal_image(items)
    records, reader = read(data[:-1], "point_in_time")
    assert records == items[:-1]
    assert reader.end_reason is EndReason.DAMAGED_TAIL and reader.end_offset == offsets[-1]


def test_unknown_record_type_with_good_checksum_raises_in_every_mode():
    data = bytearray(encode_record(WAL, b"payload"))
    data[20] = 77
    data[0:8] = xxhash.xxh3_64_intdigest(bytes(data[8:])).to_bytes(8, "little")
    for mode in Recovery:
        with pytest.raises(CorruptionError, match="unknown record type"):
            read(bytes(data), mode)


def test_reserved_bytes_set_with_good_checksum_raise():
    data = bytearray(encode_record(WAL, b"payload"))
    data[22] = 1
    data[0:8] = xxhash.xxh3_64_intdigest(bytes(data[8:])).to_bytes(8, "little")
    with pytest.raises(CorruptionError, match="reserved"):
        read(bytes(data), "point_in_time")


def test_reiterating_starts_over():
    items = payloads(5)
    data, _ = wal_image(items)
    reader = WalReader(data + b"junk", WAL, NAME)
    assert [r.payload for r in reader] == items
    assert [r.payload for r in reader] == items
    assert reader.dropped_tail_bytes == 4
