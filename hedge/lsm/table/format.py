"""The table file's fixed parts: page size, footer, index and properties
encodings.  The byte layouts are in docs/format/table.md; this module is their
only implementation, shared by the builder and the reader.

Pure functions and immutable values; any thread may use them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import xxhash

from hedge.errors import CorruptionError

# Every data block starts at a multiple of PAGE and spans whole pages; the
# file size is a multiple of PAGE and the footer fills the end of the last page.
PAGE = 4096
MAGIC = b"HEDGETBL"
# Bump when any layout in docs/format/table.md changes.  Never reuse a number.
# Version 1: data blocks of whole pages, uncompressed (written with
# compression "none").  Version 2: stored blocks back to back, each with a
# compression type byte and a checksum (hedge/lsm/compression.py).
FORMAT_VERSION = 1
COMPRESSED_FORMAT_VERSION = 2
READABLE_VERSIONS = (FORMAT_VERSION, COMPRESSED_FORMAT_VERSION)

# Footer: (offset, length, xxh3_64) for index, bloom and properties, the
# compression codec (version 2; zero in version 1), reserved zeros, format
# version, footer checksum (xxh3_64 of bytes 0..112), magic.
_FOOTER = struct.Struct("<9QB35xIQ8s")
FOOTER_BYTES = _FOOTER.size
assert FOOTER_BYTES == 128
_FOOTER_CHECKSUMMED = 112

# Index: entry count, then per block (last user key length, last seq, block
# offset, block length) followed by the last user key.
_INDEX_COUNT = struct.Struct("<I")
_INDEX_ENTRY = struct.Struct("<IQQI")

# Properties: fixed fields then the smallest and largest user keys.
_PROPS = struct.Struct("<9QII")

xxh3_64 = xxhash.xxh3_64_intdigest


def round_up(n: int, multiple: int = PAGE) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True, slots=True)
class Section:
    """Where a metadata section lives and what its bytes hash to."""

    offset: int
    length: int
    checksum: int


@dataclass(frozen=True, slots=True)
class Footer:
    """The last 128 bytes of a table.  ``version`` is FORMAT_VERSION or
    COMPRESSED_FORMAT_VERSION; ``compression`` is the codec type byte of
    the table's compressed blocks (hedge/lsm/compression.py), 0 (none) in
    a version 1 table."""

    index: Section
    bloom: Section
    properties: Section
    version: int = FORMAT_VERSION
    compression: int = 0

    @property
    def packed(self) -> bool:
        """Whether data blocks are stored blocks, back to back (version 2)."""
        return self.version == COMPRESSED_FORMAT_VERSION

    def encode(self) -> bytes:
        head = _FOOTER.pack(
            self.index.offset, self.index.length, self.index.checksum,
            self.bloom.offset, self.bloom.length, self.bloom.checksum,
            self.properties.offset, self.properties.length, self.properties.checksum,
            self.compression, self.version, 0, MAGIC,
        )
        checksum = xxh3_64(head[:_FOOTER_CHECKSUMMED])
        return head[:_FOOTER_CHECKSUMMED] + struct.pack("<Q", checksum) + MAGIC

    @staticmethod
    def decode(data: bytes | memoryview, file: str | None, offset: int) -> "Footer":
        """Parse FOOTER_BYTES bytes found at file ``offset``.  Raises
        CorruptionError for a bad magic, an unknown version or a checksum
        mismatch (checked in that order).  The compression byte of a
        version 1 footer is reserved and read as 0."""
        if len(data) != FOOTER_BYTES:
            raise CorruptionError(file, offset, f"footer is {len(data)} bytes, expected {FOOTER_BYTES}")
        fields = _FOOTER.unpack_from(data)
        magic = fields[-1]
        if magic != MAGIC:
            raise CorruptionError(file, offset, f"bad magic {magic!r}: not a hedge table, or truncated")
        version = fields[10]
        if version not in READABLE_VERSIONS:
            raise CorruptionError(file, offset, f"unsupported table format version {version} (this build reads {READABLE_VERSIONS})")
        actual = xxh3_64(memoryview(data)[:_FOOTER_CHECKSUMMED])
        if fields[11] != actual:
            raise CorruptionError(file, offset, f"footer checksum mismatch (stored {fields[11]:#018x}, computed {actual:#018x})")
        compression = fields[9] if version == COMPRESSED_FORMAT_VERSION else 0
        return Footer(Section(*fields[0:3]), Section(*fields[3:6]), Section(*fields[6:9]), version, compression)


@dataclass(frozen=True, slots=True)
class TableProperties:
    """Summary of one table, written in its properties section.

    ``file_size`` is the size of the whole file; ``data_bytes`` the bytes of
    its (padded) data blocks; raw_* the sum of key / value lengths as added.
    """

    file_size: int
    entry_count: int
    smallest_key: bytes
    largest_key: bytes
    smallest_seq: int
    largest_seq: int
    deletes: int
    raw_key_bytes: int
    raw_value_bytes: int
    data_bytes: int
    block_count: int

    def encode(self) -> bytes:
        return _PROPS.pack(
            self.file_size, self.entry_count, self.smallest_seq, self.largest_seq, self.deletes,
            self.raw_key_bytes, self.raw_value_bytes, self.data_bytes, self.block_count,
            len(self.smallest_key), len(self.largest_key),
        ) + self.smallest_key + self.largest_key

    @staticmethod
    def decode(data: bytes | memoryview, file: str | None, offset: int) -> "TableProperties":
        """Raises CorruptionError when the section's lengths do not add up."""
        if len(data) < _PROPS.size:
            raise CorruptionError(file, offset, "properties section is too short")
        (file_size, entries, smallest_seq, largest_seq, deletes, raw_k, raw_v, data_bytes, blocks,
         slen, llen) = _PROPS.unpack_from(data)
        end = _PROPS.size + slen + llen
        if end != len(data):
            raise CorruptionError(file, offset, "properties section length does not match its key lengths")
        smallest = bytes(data[_PROPS.size : _PROPS.size + slen])
        largest = bytes(data[_PROPS.size + slen : end])
        return TableProperties(file_size, entries, smallest, largest, smallest_seq, largest_seq,
                               deletes, raw_k, raw_v, data_bytes, blocks)


def encode_index_entry(last_key: bytes, last_seq: int, block_offset: int, block_length: int) -> bytes:
    return _INDEX_ENTRY.pack(len(last_key), last_seq, block_offset, block_length) + last_key


def encode_index(count: int, entries: bytes | bytearray) -> bytes:
    """The index section: count followed by the encoded entries."""
    return _INDEX_COUNT.pack(count) + entries


def decode_index(data: bytes, file: str | None, offset: int, data_end: int, packed: bool = False
                 ) -> tuple[list[bytes], list[int], list[int], list[int]]:
    """Return (last_keys, last_seqs, block_offsets, block_lengths).

    Checks the structure: blocks are page-aligned, whole pages, contiguous
    from offset 0 to ``data_end`` (``packed``, version 2: in file order,
    each after the previous one by less than a page of padding, the last
    ending in the page before ``data_end``), and their last keys are in
    entry order.  Raises CorruptionError at the index's file ``offset``
    otherwise.
    """
    if len(data) < _INDEX_COUNT.size:
        raise CorruptionError(file, offset, "index section is too short")
    (count,) = _INDEX_COUNT.unpack_from(data)
    keys: list[bytes] = []
    seqs: list[int] = []
    offsets: list[int] = []
    lengths: list[int] = []
    pos = _INDEX_COUNT.size
    entry = _INDEX_ENTRY.unpack_from
    hsize = _INDEX_ENTRY.size
    expected_offset = 0
    n = len(data)
    for _ in range(count):
        if pos + hsize > n:
            raise CorruptionError(file, offset, "index entry runs past the section")
        klen, seq, boff, blen = entry(data, pos)
        pos += hsize
        key = data[pos : pos + klen]
        pos += klen
        if pos > n:
            raise CorruptionError(file, offset, "index key runs past the section")
        if packed:
            if not expected_offset <= boff < expected_offset + PAGE or blen <= 0:
                raise CorruptionError(file, offset, f"index entry {len(keys)} has block ({boff}, {blen}); expected a block within a page after {expected_offset}")
        elif boff != expected_offset or blen <= 0 or blen % PAGE:
            raise CorruptionError(file, offset, f"index entry {len(keys)} has block ({boff}, {blen}); expected a page-aligned block at {expected_offset}")
        if keys and (key < keys[-1] or (key == keys[-1] and seq >= seqs[-1])):
            raise CorruptionError(file, offset, f"index entry {len(keys)} is out of order")
        expected_offset = boff + blen
        keys.append(key)
        seqs.append(seq)
        offsets.append(boff)
        lengths.append(blen)
    if pos != n:
        raise CorruptionError(file, offset, f"index has {n - pos} trailing bytes")
    if (round_up(expected_offset) if packed else expected_offset) != data_end:
        raise CorruptionError(file, offset, f"index covers data up to {expected_offset}, but the data ends at {data_end}")
    return keys, seqs, offsets, lengths
