"""VersionEdit encoding: round trips, the documented byte layout, and one
corruption case per test."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from hedge.errors import CorruptionError
from hedge.lsm.keys import MAX_KEY_BYTES, MAX_SEQ
from hedge.lsm.version_edit import NUM_LEVELS, FileMeta, Tag, VersionEdit
from tests.lsm.helpers import table

U64 = (1 << 64) - 1
keys = st.binary(min_size=0, max_size=40)
levels = st.integers(0, NUM_LEVELS - 1)
numbers = st.integers(1, U64)


@st.composite
def file_metas(draw) -> FileMeta:
    a, b = sorted((draw(keys), draw(keys)))
    s1, s2 = sorted((draw(st.integers(0, MAX_SEQ)), draw(st.integers(0, MAX_SEQ))))
    entries = draw(st.integers(0, U64))
    return FileMeta(number=draw(numbers), size=draw(st.integers(0, U64)), smallest_key=a,
                    largest_key=b, smallest_seq=s1, largest_seq=s2, entries=entries,
                    deletes=draw(st.integers(0, entries)))


@st.composite
def edits(draw) -> VersionEdit:
    optional = st.none() | st.integers(0, U64)
    added = draw(st.lists(st.tuples(levels, file_metas()), max_size=6,
                          unique_by=lambda pair: pair[1].number))
    return VersionEdit(wal_number=draw(optional), next_file_number=draw(optional),
                       last_seq=draw(optional),
                       compact_pointers=draw(st.dictionaries(levels, keys, max_size=NUM_LEVELS)),
                       deleted_files=draw(st.sets(st.tuples(levels, numbers), max_size=6)),
                       added_files=added)


@settings(max_examples=300, deadline=None)
@given(edits())
def test_encode_decode_round_trip(edit):
    assert VersionEdit.decode(edit.encode()) == edit


@settings(max_examples=100, deadline=None)
@given(edits())
def test_every_strict_prefix_of_a_file_record_is_rejected(edit):
    # Cutting an encoding anywhere inside an added-file record must never
    # decode silently into a smaller edit.
    edit.added_files.append((1, table(U64, "k", "m", seqs=(1, 2))))
    data = edit.encode()
    record_start = len(data) - len(VersionEdit(added_files=[(1, table(U64, "k", "m", seqs=(1, 2)))]).encode())
    for cut in range(record_start + 1, len(data)):
        with pytest.raises(CorruptionError):
            VersionEdit.decode(data[:cut])


def test_empty_edit_encodes_to_nothing():
    assert VersionEdit().encode() == b""
    assert VersionEdit.decode(b"") == VersionEdit()


def test_layout_matches_the_format_document():
    # docs/format/manifest.md: tag varint, then the tag's fields.
    edit = VersionEdit(wal_number=5)
    edit.delete_file(2, 9)
    edit.set_compact_pointer(3, b"p")
    edit.add_file(1, FileMeta(number=7, size=300, smallest_key=b"a", largest_key=b"b",
                              smallest_seq=1, largest_seq=2, entries=3, deletes=1))
    assert edit.encode() == bytes([
        0x01, 0x05,                                   # WAL_NUMBER 5
        0x04, 0x03, 0x01, ord("p"),                   # COMPACT_POINTER L3 "p"
        0x05, 0x02, 0x09,                             # DELETED_FILE L2 #9
        0x06, 0x01, 0x07, 0xAC, 0x02,                 # ADDED_FILE L1 #7 size 300
        0x01, ord("a"), 0x01, ord("b"),               # keys "a".."b"
        0x01, 0x02, 0x03, 0x01,                       # seqs 1..2, 3 entries, 1 delete
    ])


def test_tag_numbers_are_fixed():
    # On-disk enum: a renumbering would make old manifests unreadable.
    assert {t.name: t.value for t in Tag} == {
        "WAL_NUMBER": 1, "NEXT_FILE_NUMBER": 2, "LAST_SEQ": 3,
        "COMPACT_POINTER": 4, "DELETED_FILE": 5, "ADDED_FILE": 6}


def test_encode_rejects_a_number_wider_than_64_bits():
    with pytest.raises(ValueError):
        VersionEdit(last_seq=1 << 64).encode()


def test_unknown_tag_is_corruption():
    data = VersionEdit(wal_number=3).encode() + bytes([0x63, 0x00])
    with pytest.raises(CorruptionError, match="unknown tag 99") as info:
        VersionEdit.decode(data, file="MANIFEST-000004", offset=1000)
    assert info.value.file == "MANIFEST-000004"
    assert info.value.offset == 1002


def test_truncated_varint_is_corruption():
    with pytest.raises(CorruptionError, match="truncated varint"):
        VersionEdit.decode(bytes([Tag.LAST_SEQ, 0x80, 0x80]))


def test_truncated_key_is_corruption():
    data = VersionEdit(compact_pointers={1: b"abcdef"}).encode()
    with pytest.raises(CorruptionError, match="truncated compact pointer key") as info:
        VersionEdit.decode(data[:-2])
    assert info.value.offset is None


def test_overlong_varint_is_corruption():
    with pytest.raises(CorruptionError, match="longer than 10 bytes"):
        VersionEdit.decode(bytes([Tag.WAL_NUMBER]) + b"\xff" * 10 + b"\x01")


def test_varint_above_64_bits_is_corruption():
    with pytest.raises(CorruptionError, match="exceeds 64 bits"):
        VersionEdit.decode(bytes([Tag.WAL_NUMBER]) + b"\xff" * 9 + b"\x7f")


def test_level_out_of_range_is_corruption():
    with pytest.raises(CorruptionError, match="level 7"):
        VersionEdit.decode(bytes([Tag.DELETED_FILE, NUM_LEVELS, 0x01]))


def test_scalar_given_twice_is_corruption():
    data = VersionEdit(next_file_number=4).encode() * 2
    with pytest.raises(CorruptionError, match="next_file_number given twice"):
        VersionEdit.decode(data)


def test_file_added_twice_is_corruption():
    data = VersionEdit(added_files=[(1, table(8, "a", "b")), (2, table(8, "c", "d"))]).encode()
    with pytest.raises(CorruptionError, match="file 8 added twice"):
        VersionEdit.decode(data)


def test_added_file_with_inverted_key_range_is_corruption():
    good = VersionEdit(added_files=[(1, table(8, "a", "b"))]).encode()
    bad = good.replace(b"\x01a\x01b", b"\x01b\x01a")
    with pytest.raises(CorruptionError, match="smallest_key > largest_key"):
        VersionEdit.decode(bad)


def test_file_meta_rejects_bad_values():
    with pytest.raises(ValueError):
        table(0, "a", "b")
    with pytest.raises(ValueError):
        table(1, "b", "a")
    with pytest.raises(ValueError):
        table(1, "a", "b", seqs=(5, 4))
    with pytest.raises(ValueError):
        table(1, "a", "b", entries=1, deletes=2)
    with pytest.raises(ValueError):
        table(1, b"", b"b" * (MAX_KEY_BYTES + 1))
