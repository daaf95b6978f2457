"""Record values derived from (key, version), so a read can be checked
without keeping the values written.

Layout of a value of ``size`` bytes (size >= 12):
    bytes 0..8    version, unsigned 64-bit big-endian (0 = the load phase's
                  write; each later write of the key a larger number)
    bytes 8..12   crc32 of the key, big-endian
    bytes 12..    a window of a fixed pseudo-random pool (incompressible, like
                  YCSB's random field contents), its offset a function of the
                  key and the version

Thread safety: a ValueFactory is immutable after construction.
"""
from __future__ import annotations

import random
import struct
import zlib

HEADER_BYTES = 12
_HEADER = struct.Struct(">QI")
_POOL_SLACK = 1 << 16


class ValueFactory:
    """Values of one size.  REQUIRES: size >= HEADER_BYTES."""

    def __init__(self, size: int, seed: int = 0x5EED):
        if size < HEADER_BYTES:
            raise ValueError(f"values must be at least {HEADER_BYTES} bytes (version and key check)")
        self.size = size
        self._filler = size - HEADER_BYTES
        self._pool = random.Random(seed).randbytes(self._filler + _POOL_SLACK)

    def make(self, key: bytes, version: int) -> bytes:
        """The value of ``key`` at ``version``."""
        crc = zlib.crc32(key)
        offset = (crc + version * 7919) % _POOL_SLACK
        return _HEADER.pack(version, crc) + self._pool[offset:offset + self._filler]

    def version_of(self, key: bytes, value: bytes) -> int | None:
        """The version ``value`` was made from for ``key``, or None when it
        is not a value this factory makes for that key (wrong size, wrong key,
        damaged bytes)."""
        if len(value) != self.size:
            return None
        version, crc = _HEADER.unpack_from(value)
        if crc != zlib.crc32(key) or self.make(key, version) != value:
            return None
        return version
