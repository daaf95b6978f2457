"""Bloom filter over user keys: "certainly absent" or "maybe present".

One filter per table, built while the table is written and held in memory
while the table is open.  Probe bit i of a key is ``(h1 + i*h2) mod nbits``
where ``h1``/``h2`` are the low/high 64 bits of the key's xxh3_128 (double
hashing); the number of probes is derived from bits per key (~0.69 * bits,
7 at 10 bits/key, ~1% false positives).  A filter never answers False for a
key that was added.  The byte layout is in docs/format/bloom.md.

``BloomBuilder`` is owned by one thread; a ``BloomFilter`` is immutable and
may be read by any thread.

A probe costs about 1,500 machine instructions of interpreter work (small
integers), so a present key (all probes) costs several times an absent
one (most stop at the first or second probe); perf/lsm_micro.py measures
both.  So ``may_contain`` probes in C (the builtin kernel ``bloom_probe``)
when the kernel is built, the Python probes being its twin;
``use_probe_kernel`` switches between them.
"""
from __future__ import annotations

import struct
import sys
from array import array

import xxhash

from hedge.errors import CorruptionError
from hedge.io import kernels

# Trailer: probes (uint8), reserved (3 zero bytes), bitmap bytes (uint32),
# checksum (uint64, xxh3_64 of everything before it).
_PARAMS = struct.Struct("<B3xI")
_CHECKSUM = struct.Struct("<Q")
TRAILER_BYTES = _PARAMS.size + _CHECKSUM.size
MIN_BITS = 64
MAX_PROBES = 30
_MAX_BITMAP_BYTES = (1 << 32) - 1

_xxh3_128_digest = xxhash.xxh3_128_digest
_xxh3_64 = xxhash.xxh3_64_intdigest
# xxh3_128's digest is big-endian: the high 64 bits (h2) come first.
_U128 = struct.Struct(">QQ").unpack
_BIT = (1, 2, 4, 8, 16, 32, 64, 128)
_LITTLE = sys.byteorder == "little"

# The last key probed and its digest.  A point lookup probes the filters
# of several tables with the same key object, and the hash costs as much
# as a probe.  One tuple, replaced whole (atomic under the GIL), holding
# the key so that its identity cannot be reused; only immutable bytes keys
# are remembered.
_last_hash: tuple = (None, b"")

_PROBE_KERNEL = kernels.load_builtin("bloom_probe")
# The kernel in use (None: the Python probes); set by use_probe_kernel.
_probe = None


def probe_kernel_available() -> bool:
    """Whether the C probes can run (hedge/io/kernels.py)."""
    return _PROBE_KERNEL is not None


def use_probe_kernel(enabled: bool) -> None:
    """Probe filters in C (when available) or in Python.  For tests and
    measurements that compare the two; the default is C when available.
    Process-wide: call it with no lookup running."""
    global _probe
    _probe = _PROBE_KERNEL if enabled else None


def probes_for(bits_per_key: int) -> int:
    """Number of probes that minimises false positives at bits_per_key."""
    return max(1, min(MAX_PROBES, round(bits_per_key * 0.69)))


class BloomBuilder:
    """Collects key hashes (16 bytes per key, in an array); ``finish`` sizes
    the bitmap and encodes it."""

    __slots__ = ("bits_per_key", "_digests")

    def __init__(self, bits_per_key: int = 10):
        if not 1 <= bits_per_key <= 64:
            raise ValueError(f"bits_per_key must be in 1..64, not {bits_per_key}")
        self.bits_per_key = bits_per_key
        self._digests = bytearray()  # the 16-byte xxh3_128 digest of each key

    def add(self, key: bytes) -> None:
        """Add one user key (adding a key twice only wastes bits)."""
        self._digests += _xxh3_128_digest(key)

    def __len__(self) -> int:
        return len(self._digests) >> 4

    def estimated_size(self) -> int:
        """Exact size finish() would return now."""
        return _bitmap_bytes(len(self), self.bits_per_key) + TRAILER_BYTES

    def finish(self) -> bytes:
        """Return the encoded, checksummed filter and reset the builder."""
        nbytes = _bitmap_bytes(len(self), self.bits_per_key)
        nbits = nbytes * 8
        k = probes_for(self.bits_per_key)
        bits = bytearray(nbytes)
        set_bits(self._digests, bits, nbits, k)
        self._digests = bytearray()
        bits += _PARAMS.pack(k, nbytes)
        bits += _CHECKSUM.pack(_xxh3_64(bits))
        return bytes(bits)


def _set_bits_python(digests: bytes | bytearray, bits: bytearray, nbits: int, probes: int) -> None:
    """Set the ``probes`` bits of each key whose 16-byte digest is in
    ``digests`` (big-endian h2, h1) in ``bits`` (``nbits`` bits).  The
    pure-Python twin of the C kernel ``hedge_bloom_set``."""
    hashes = array("Q", digests)
    if _LITTLE:
        hashes.byteswap()                   # the digests are big-endian
    more_probes = range(probes - 1)
    bit = _BIT
    for h2, h1 in zip(hashes[0::2], hashes[1::2]):
        b = h1 % nbits
        bits[b >> 3] |= bit[b & 7]
        d = h2 % nbits
        for _ in more_probes:
            b += d
            if b >= nbits:
                b -= nbits
            bits[b >> 3] |= bit[b & 7]


def _c_kernel():
    """``_set_bits_python``'s C twin, or None (hedge/io/kernels.py says
    when)."""
    loaded = kernels.load("hedge_bloom_set")
    if loaded is None:
        return None
    ffi, kernel = loaded
    from_buffer = ffi.from_buffer

    def set_bits_c(digests: bytes | bytearray, bits: bytearray, nbits: int, probes: int) -> None:
        """``_set_bits_python`` in C (cffi releases the GIL for the loop)."""
        kernel(from_buffer(digests), len(digests) >> 4, from_buffer(bits), nbits, probes)

    return set_bits_c


# How BloomBuilder.finish sets the bits: the C kernel when built.
set_bits = _c_kernel() or _set_bits_python


def _bitmap_bytes(nkeys: int, bits_per_key: int) -> int:
    nbytes = (max(MIN_BITS, nkeys * bits_per_key) + 7) // 8
    if nbytes > _MAX_BITMAP_BYTES:
        raise ValueError(f"bloom filter for {nkeys} keys exceeds the 4 GiB bitmap limit")
    return nbytes


class BloomFilter:
    """A verified filter.  Raises CorruptionError(file, offset, detail) when
    the checksum or the trailer is wrong; ``offset`` is the filter's offset in
    its file."""

    __slots__ = ("_bits", "_nbits", "_probes", "_more_probes")

    def __init__(self, data: bytes | bytearray | memoryview, file: str | None = None, offset: int = 0):
        data = bytes(data) if type(data) is not bytes else data
        n = len(data)
        if n < TRAILER_BYTES:
            raise CorruptionError(file, offset, f"bloom filter of {n} bytes is shorter than its trailer")
        k, nbytes = _PARAMS.unpack_from(data, n - TRAILER_BYTES)
        (stored,) = _CHECKSUM.unpack_from(data, n - 8)
        actual = _xxh3_64(memoryview(data)[: n - 8])
        if stored != actual:
            raise CorruptionError(file, offset, f"bloom filter checksum mismatch (stored {stored:#018x}, computed {actual:#018x})")
        if nbytes != n - TRAILER_BYTES or nbytes * 8 < MIN_BITS or not 1 <= k <= MAX_PROBES:
            raise CorruptionError(file, offset, f"bloom filter trailer is inconsistent (probes {k}, bitmap {nbytes} of {n} bytes)")
        self._bits = data
        self._nbits = nbytes * 8
        self._probes = k
        self._more_probes = range(k - 1)

    def may_contain(self, key: bytes) -> bool:
        """False only when ``key`` was certainly never added."""
        global _last_hash
        last = _last_hash
        if last[0] is key:
            digest = last[1]
        else:
            digest = _xxh3_128_digest(key)
            if type(key) is bytes:
                _last_hash = (key, digest)
        probe = _probe
        if probe is not None:
            # A present key's seven probes cost about 2 us in Python in
            # place, 1 us more than this call (docs/design.md, "C kernels").
            return probe(self._bits, self._nbits, self._probes, digest)
        h2, h1 = _U128(digest)
        # Probe i is (h1 + i*h2) mod nbits, as b + i*d with both reduced.
        # The first probe rejects about half of the absent keys, so h2 is
        # reduced only after it.
        nbits = self._nbits
        bits = self._bits
        b = h1 % nbits
        if not bits[b >> 3] & _BIT[b & 7]:
            return False
        d = h2 % nbits
        for _ in self._more_probes:
            b += d
            if b >= nbits:
                b -= nbits
            if not bits[b >> 3] & _BIT[b & 7]:
                return False
        return True

    @property
    def nbytes(self) -> int:
        return len(self._bits)


use_probe_kernel(True)
