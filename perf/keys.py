"""Record keys: the names YCSB gives its record numbers.

A record number ``n`` (0, 1, 2, ... in insertion order) becomes the key
``b"user" + decimal(fnvhash64(n))`` when insert order is ``hashed`` (YCSB's
default, so consecutive inserts land all over the key space) or
``b"user" + n`` zero-padded to 12 digits when it is ``ordered`` (padded so the
byte order of keys is the numeric order of records, which YCSB's unpadded
names are not).

``fnvhash64`` is YCSB's: FNV-1a 64 over the eight little-endian bytes of the
number, read as a signed 64-bit integer and made non-negative.

Thread safety: the functions are pure; ``KeySpace`` may be shared by threads
(its cache only grows, under a lock).
"""
from __future__ import annotations

import threading

FNV1A_64_OFFSET = 0xCBF29CE484222325
FNV1A_64_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1

INSERT_ORDERS = ("hashed", "ordered")


def fnv1a_64(data: bytes) -> int:
    """FNV-1a, 64-bit, of ``data``: an unsigned 64-bit integer."""
    h = FNV1A_64_OFFSET
    for octet in data:
        h = ((h ^ octet) * FNV1A_64_PRIME) & _MASK64
    return h


def fnvhash64(n: int) -> int:
    """YCSB's record hash: FNV-1a 64 of ``n`` as 8 little-endian bytes, as a
    non-negative number (absolute value of the signed result).

    REQUIRES: 0 <= n < 2**64.
    """
    h = fnv1a_64(n.to_bytes(8, "little"))
    return (1 << 64) - h if h >> 63 else h


def key_name(n: int, insert_order: str = "hashed") -> bytes:
    """The key of record number ``n``.  Raises ValueError for an unknown order."""
    if insert_order == "hashed":
        return b"user%d" % fnvhash64(n)
    if insert_order == "ordered":
        return b"user%012d" % n
    raise ValueError(f"insert order must be one of {INSERT_ORDERS}, not {insert_order!r}")


class KeySpace:
    """Record number -> key, computed once per record and kept."""

    def __init__(self, insert_order: str = "hashed"):
        key_name(0, insert_order)  # validates the order
        self.insert_order = insert_order
        self._names: list[bytes] = []
        self._grow = threading.Lock()

    def name(self, n: int) -> bytes:
        names = self._names
        if n < len(names):
            return names[n]
        order = self.insert_order
        with self._grow:
            while len(names) <= n:
                names.append(key_name(len(names), order))
        return names[n]
