"""Keys, sequence numbers and entry kinds shared by every LSM component.

An *entry* is the tuple ``(user_key, seq, kind, value)``:
  - ``user_key``: bytes, 0..MAX_KEY_BYTES long (the empty key ``b""`` is a
    key like any other, the smallest of all, as in LevelDB and RocksDB);
  - ``seq``: the sequence number of the write, 1..MAX_SEQ, unique per write
    (a WriteBatch takes consecutive numbers);
  - ``kind``: ``Kind.PUT`` (1) or ``Kind.DELETE`` (0, a tombstone; its
    value is b"").  Entries made by the engine (write batches, blocks,
    memtables) hold the plain ints ``PUT`` and ``DELETE``, not the enum
    members: a tuple of bytes and ints is left alone by the garbage
    collector, one holding an enum member (an object with a ``__dict__``)
    is tracked for life, and a memtable holds hundreds of thousands of
    them.  ``Kind(kind).name`` names one for people;
  - ``value``: bytes, 0..MAX_VALUE_BYTES long.

Entries are ordered by user key ascending, then seq *descending*, so the
newest version of a key comes first.  ``entry_order`` gives that order as a
sort key.  A reader at snapshot S sees, for each key, the first entry with
seq <= S; a DELETE there means the key is absent.
"""
from __future__ import annotations

from enum import IntEnum


class Kind(IntEnum):
    """Entry kind as stored on disk.  Never renumber."""

    DELETE = 0
    PUT = 1


# The kinds as plain ints, what entries hold (see the module docstring).
PUT = int(Kind.PUT)
DELETE = int(Kind.DELETE)

MAX_KEY_BYTES = 64 * 1024
MAX_VALUE_BYTES = 64 * 1024 * 1024
MAX_SEQ = (1 << 56) - 1


def entry_order(entry) -> tuple:
    """Sort key giving the entry order: user key ascending, seq descending."""
    return (entry[0], -entry[1])


def check_key(key) -> bytes:
    """Return ``key`` as bytes.  Raises TypeError for a non-bytes-like key and
    ValueError for an oversize key.  The empty key is valid."""
    if isinstance(key, bytes):
        k = key
    elif isinstance(key, (bytearray, memoryview)):
        k = bytes(key)
    else:
        raise TypeError(f"key must be bytes-like, not {type(key).__name__}")
    if len(k) > MAX_KEY_BYTES:
        raise ValueError(f"key is {len(k)} bytes; the limit is {MAX_KEY_BYTES}")
    return k


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with ``prefix``, or None
    (no bound) when the prefix is all 0xff bytes or empty."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def key_after(key: bytes) -> bytes | None:
    """The smallest key a database can hold above ``key``, or None when
    there is none: ``key + b"\x00"``, except after a key of MAX_KEY_BYTES
    (no longer key exists): its last byte raised, past trailing 0xff bytes.
    Turns an inclusive bound into an exclusive one and back."""
    if len(key) < MAX_KEY_BYTES:
        return key + b"\x00"
    return prefix_end(key)


def check_value(value) -> bytes:
    """Return ``value`` as bytes.  Raises TypeError for a non-bytes-like value
    and ValueError for an oversize value."""
    if isinstance(value, bytes):
        v = value
    elif isinstance(value, (bytearray, memoryview)):
        v = bytes(value)
    else:
        raise TypeError(f"value must be bytes-like, not {type(value).__name__}")
    if len(v) > MAX_VALUE_BYTES:
        raise ValueError(f"value is {len(v)} bytes; the limit is {MAX_VALUE_BYTES}")
    return v
