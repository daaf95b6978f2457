"""WriteBatch: an ordered group of puts and removes applied atomically.

A batch is built by one thread (it is not thread-safe) and handed to the
engine, which gives its operations consecutive sequence numbers
``first_seq, first_seq + 1, ...`` in the order they were added, logs the
encoded batch in the WAL and applies it to the memtable.  Later operations on
the same key win because they get larger sequence numbers.

Invariants: every key and value held is ``bytes`` that passed
``keys.check_key`` / ``keys.check_value``; a DELETE's value is ``b""``; a call
that raises leaves the batch unchanged.

The encoded layout (also the WAL payload, several batches back to back for a
group commit) is described in docs/format/batch.md.
"""
from __future__ import annotations

import struct

from hedge.errors import CorruptionError
from hedge.lsm.keys import DELETE, MAX_KEY_BYTES, MAX_SEQ, MAX_VALUE_BYTES, PUT, Kind, check_key, check_value

# Layout: docs/format/batch.md.
_HEADER = struct.Struct("<QI")      # first_seq, count
_OP = struct.Struct("<BII")         # kind, key length, value length
_ONE_OP_HEADER = struct.Struct("<QIBII")     # _HEADER then _OP: a batch of one operation
HEADER_BYTES = _HEADER.size
OP_HEADER_BYTES = _OP.size
_PUT = PUT
_DELETE = DELETE

# The kind an operation byte stands for, as the plain int entries hold
# (hedge/lsm/keys.py).
_KIND_BY_BYTE = {int(k): int(k) for k in Kind}

# The largest encoded batch a write takes.  A group commit joins batches into
# one WAL record (at most wal.format.MAX_PAYLOAD_BYTES, 4 GiB - 1) and a group
# holds under 4 MiB besides its last batch, so every group fits one record.
MAX_BATCH_BYTES = 2 << 30

Op = tuple[Kind, bytes, bytes]


class WriteBatch:
    """Puts and removes to apply atomically, in order.

    Not thread-safe: one thread builds a batch, then hands it to the store.
    """

    __slots__ = ("_ops", "_bytes")

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._bytes = HEADER_BYTES

    def put(self, key: bytes | bytearray | memoryview, value: bytes | bytearray | memoryview) -> None:
        """Add ``key -> value``.  Raises TypeError for non-bytes-like input and
        ValueError for an oversize key or an oversize value; the
        batch is unchanged then."""
        # Plain bytes within the limits pass without a call (the common case).
        k = key if type(key) is bytes and len(key) <= MAX_KEY_BYTES else check_key(key)
        v = value if type(value) is bytes and len(value) <= MAX_VALUE_BYTES else check_value(value)
        self._ops.append((_PUT, k, v))
        self._bytes += OP_HEADER_BYTES + len(k) + len(v)

    def remove(self, key: bytes | bytearray | memoryview) -> None:
        """Add a removal of ``key`` (a tombstone).  Raises like ``put``."""
        k = key if type(key) is bytes and len(key) <= MAX_KEY_BYTES else check_key(key)
        self._ops.append((_DELETE, k, b""))
        self._bytes += OP_HEADER_BYTES + len(k)

    def clear(self) -> None:
        """Drop every operation."""
        self._ops.clear()
        self._bytes = HEADER_BYTES

    def append(self, other: "WriteBatch") -> None:
        """Add every operation of ``other``, in its order, after this
        batch's own.  Raises TypeError for anything but a WriteBatch."""
        if not isinstance(other, WriteBatch):
            raise TypeError(f"append() takes a WriteBatch, not {type(other).__name__}")
        self._ops.extend(other._ops)
        self._bytes += other._bytes - HEADER_BYTES

    def __len__(self) -> int:
        return len(self._ops)

    def byte_size(self) -> int:
        """Length in bytes of ``encode(...)``'s result."""
        return self._bytes

    def check_size(self) -> None:
        """Raise ValueError when the batch is too large for one write
        (MAX_BATCH_BYTES encoded); the engine asks before queueing it."""
        if self._bytes > MAX_BATCH_BYTES:
            raise ValueError(f"the batch encodes to {self._bytes} bytes; one write takes at most {MAX_BATCH_BYTES}")

    def encode(self, first_seq: int) -> bytes:
        """The batch as bytes, its operations numbered from ``first_seq``.

        REQUIRES: 1 <= first_seq and first_seq + len(self) - 1 <= MAX_SEQ
        (ValueError otherwise).
        """
        ops = self._ops
        n = len(ops)
        if first_seq < 1 or first_seq + n > MAX_SEQ or not n:
            _check_seq_range(first_seq, n)
        if n == 1:                      # a single put or remove: one pack, one join
            kind, k, v = ops[0]
            return b"".join((_ONE_OP_HEADER.pack(first_seq, 1, kind, len(k), len(v)), k, v))
        parts = [_HEADER.pack(first_seq, n)]
        append = parts.append
        pack = _OP.pack
        for kind, k, v in ops:
            append(pack(kind, len(k), len(v)))
            append(k)
            if v:
                append(v)
        return b"".join(parts)

    def entries(self, first_seq: int) -> list[tuple[bytes, int, Kind, bytes]]:
        """The entries ``(key, seq, kind, value)`` the batch becomes when
        numbered from ``first_seq``, in the order they were added.

        REQUIRES: the same sequence range as ``encode``.
        """
        ops = self._ops
        n = len(ops)
        if first_seq < 1 or first_seq + n > MAX_SEQ or not n:
            _check_seq_range(first_seq, n)
        if n == 1:
            kind, k, v = ops[0]
            return [(k, first_seq, kind, v)]
        return [(k, seq, kind, v) for seq, (kind, k, v) in zip(range(first_seq, first_seq + n), ops)]

    def __repr__(self) -> str:
        return f"<WriteBatch {len(self._ops)} ops, {self._bytes} bytes>"


def _check_seq_range(first_seq: int, count: int) -> None:
    """Raise ValueError unless first_seq .. first_seq + count - 1 (one
    number for an empty batch) lies in 1..MAX_SEQ."""
    if first_seq < 1 or first_seq + max(count, 1) - 1 > MAX_SEQ:
        raise ValueError(f"sequence numbers {first_seq}..{first_seq + count - 1} are outside 1..{MAX_SEQ}")


def decode(data, *, file: str | None = None, offset: int = 0) -> tuple[int, list[Op]]:
    """Decode one encoded batch that fills all of ``data``.

    Returns ``(first_seq, [(kind, key, value), ...])``; operation i has
    sequence number ``first_seq + i``.  Raises CorruptionError(file, offset of
    the bad byte) for a malformed batch; ``offset`` is where ``data`` starts in
    ``file`` so the error points into the file.
    """
    first_seq, ops, end = _decode_at(data, 0, file, offset)
    if end != len(data):
        raise CorruptionError(file, offset + end, f"{len(data) - end} bytes after the end of the batch")
    return first_seq, ops


def decode_many(data, *, file: str | None = None, offset: int = 0) -> list[tuple[int, list[Op]]]:
    """Decode the batches laid back to back in ``data`` (a group-commit WAL
    payload).  Returns ``[(first_seq, ops), ...]`` in order; raises like
    ``decode``.  An empty ``data`` holds no batch."""
    out = []
    pos = 0
    n = len(data)
    while pos < n:
        first_seq, ops, pos = _decode_at(data, pos, file, offset)
        out.append((first_seq, ops))
    return out


def _decode_at(data, pos: int, file: str | None, base: int) -> tuple[int, list[Op], int]:
    n = len(data)
    if n - pos < HEADER_BYTES:
        raise CorruptionError(file, base + pos, "truncated batch header")
    first_seq, count = _HEADER.unpack_from(data, pos)
    if first_seq < 1 or first_seq + max(count, 1) - 1 > MAX_SEQ:
        raise CorruptionError(file, base + pos, f"batch sequence numbers {first_seq}+{count} out of range")
    pos += HEADER_BYTES
    ops: list[Op] = []
    append = ops.append
    unpack = _OP.unpack_from
    kinds = _KIND_BY_BYTE
    for _ in range(count):
        if n - pos < OP_HEADER_BYTES:
            raise CorruptionError(file, base + pos, "truncated operation header")
        kind_byte, klen, vlen = unpack(data, pos)
        kind = kinds.get(kind_byte)
        if kind is None:
            raise CorruptionError(file, base + pos, f"unknown operation kind {kind_byte}")
        if kind == _DELETE and vlen:
            raise CorruptionError(file, base + pos, "delete with a value")
        kstart = pos + OP_HEADER_BYTES
        vstart = kstart + klen
        end = vstart + vlen
        if end > n:
            raise CorruptionError(file, base + pos, "operation runs past the end of the batch")
        append((kind, bytes(data[kstart:vstart]), bytes(data[vstart:end])))
        pos = end
    return first_seq, ops, pos
