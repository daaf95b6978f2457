"""WAL record framing: how one record (header + payload) is laid out in a file.

A WAL file, and a manifest, is a sequence of records written back to back
from offset 0.  The framing does not know what a payload means; the record
type says (``RecordType``).  Every record carries the number of the file it
was written to, so records left over in a reused, preallocated or stale file
are recognised and never replayed.  The byte layout is in docs/format/wal.md.

Pure functions and constants; any thread may use them.
"""
from __future__ import annotations

import struct
from enum import IntEnum

import xxhash

# Layout: docs/format/wal.md.
#   0  u64 checksum   xxh3_64 of bytes [8, 24 + length)
#   8  u64 file_number
#  16  u32 length     of the payload
#  20  u8  type       RecordType
#  21  3 bytes reserved, zero
#  24  payload
HEADER = struct.Struct("<QQIB3x")
HEADER_BYTES = HEADER.size
CHECKSUM_BYTES = 8
_CHECKSUM = struct.Struct("<Q")
_COVERED = struct.Struct("<QIB3x")   # the header after the checksum
_RESERVED = slice(21, 24)
_ZERO_RESERVED = b"\0\0\0"
MAX_PAYLOAD_BYTES = (1 << 32) - 1
# Payloads up to this size are copied once and hashed in one call.
_SMALL_PAYLOAD_BYTES = 4096
_xxh3_64_intdigest = xxhash.xxh3_64_intdigest
MAX_FILE_NUMBER = (1 << 64) - 1


class RecordType(IntEnum):
    """What a record's payload holds.  Stored on disk: never renumber.

    0 is never written, so an all-zero header (preallocated or zero-filled
    space) can never be taken for a record.
    """

    BATCHES = 1          # one or more encoded WriteBatches back to back (WAL)
    VERSION_EDIT = 2     # one encoded version edit (manifest)


_TYPES = {int(t): t for t in RecordType}


def encode_record(file_number: int, payload, record_type: RecordType = RecordType.BATCHES) -> bytes:
    """The record holding ``payload`` (bytes-like) for file ``file_number``.

    REQUIRES: 1 <= file_number <= MAX_FILE_NUMBER, len(payload) <=
    MAX_PAYLOAD_BYTES, record_type a RecordType (ValueError otherwise).
    """
    if not 1 <= file_number <= MAX_FILE_NUMBER:
        raise ValueError(f"file number {file_number} is outside 1..{MAX_FILE_NUMBER}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"record payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    rtype = _TYPES.get(record_type)
    if rtype is None:
        raise ValueError(f"unknown record type {record_type!r}")
    covered = _COVERED.pack(file_number, len(payload), rtype)
    if len(payload) <= _SMALL_PAYLOAD_BYTES:
        # One hash call over one small copy costs less than a hasher object.
        covered += payload
        return _CHECKSUM.pack(_xxh3_64_intdigest(covered)) + covered
    hasher = xxhash.xxh3_64(covered)
    hasher.update(payload)   # streamed: no copy of a large payload
    return b"".join((_CHECKSUM.pack(hasher.intdigest()), covered, payload))


def record_bytes(payload_len: int) -> int:
    """Size on disk of a record whose payload is ``payload_len`` bytes."""
    return HEADER_BYTES + payload_len


def checksum_of(data, start: int, end: int) -> int:
    """xxh3_64 of ``data[start + 8 : end]``: the checksum a record occupying
    ``data[start:end]`` must carry."""
    return xxhash.xxh3_64_intdigest(memoryview(data)[start + CHECKSUM_BYTES:end])


def reserved_is_zero(data, start: int) -> bool:
    """Whether the reserved header bytes of the record at ``start`` are zero."""
    return data[start + _RESERVED.start:start + _RESERVED.stop] == _ZERO_RESERVED


def record_type_of(value: int) -> RecordType | None:
    """The RecordType for a stored type byte, or None when unknown."""
    return _TYPES.get(value)
