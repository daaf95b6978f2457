"""Data block: a checksummed run of entries searchable in O(log n).

A block holds entries ``(user_key, seq, kind, value)`` in entry order (see
hedge/lsm/keys.py).  The byte layout is in docs/format/table.md ("Data
block"): the encoded entries, optional zero padding, a uint32 array with the
offset of each entry, the entry count, and an xxh3_64 checksum over
everything before it.  Because the offsets sit at the end, a reader
binary searches the block and decodes only the O(log n) entries it probes;
the Python search and scans take the offsets as one tuple of ints (one
``unpack_from``, on first use), the C search reads them in place.

The binary search runs in C when hedge.io._uring is built (the builtin
kernels ``block_find`` and ``block_seek``, docs/design.md "C kernels"):
one call on the block's bytes, about 0.25 us for a get's answer against
1.5 us in Python for a 16-entry block.  Its twin, the Python search below,
runs when the module is not built or HEDGE_PURE_PYTHON is set;
``use_search_kernel`` switches between them (for tests that compare the
two).  ``entries_between`` decodes in C the same way (``block_entries``).
The kernels are CPython builtins: they hold the GIL like any other call,
so they serve any number of threads.

A block that is scanned again (a block-cache hit) is worth more work:
``decoded()`` returns a copy that holds its entries as Python objects (the
list of its user keys and the list of its ``(key, seq, kind, value)``
tuples) instead of its bytes.  A scan then takes a slice of that list,
creating and copying nothing per entry, and a get is one ``bisect``.
Decoding costs about what one scan of the whole block costs (~0.4 us per
entry), so a block read once is never decoded, and a get never decodes a
block: YCSB A and C ran 10-15% slower when get hits decoded, with either
search (docs/design.md, "C kernels").

``BlockBuilder`` is owned by one thread (the one building a table).  A
``Block`` is immutable after construction, but for the offset tuple it
unpacks on first use, and may be shared by any number of threads (it lives
in the block cache).
"""
from __future__ import annotations

import functools
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterator

import xxhash

from hedge.errors import CorruptionError
from hedge.io import kernels
from hedge.lsm.keys import DELETE, PUT, Kind

# Entry header: key length, value length, (seq << 8 | kind).  Then key, value.
_HEADER = struct.Struct("<IIQ")
HEADER_BYTES = _HEADER.size
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
# Trailer: entry count (uint32), checksum (uint64).
_COUNT = struct.Struct("<I")
_CHECKSUM = struct.Struct("<Q")
TRAILER_BYTES = _COUNT.size + _CHECKSUM.size
# Largest block the uint32 offsets can address.
MAX_BLOCK_BYTES = (1 << 32) - 1

_KINDS = (DELETE, PUT)            # plain ints (hedge/lsm/keys.py), indexed by the stored kind byte
_LITTLE = sys.byteorder == "little"
_xxh3_64 = xxhash.xxh3_64_intdigest
# Memory a decoded entry costs beyond its key and value bytes: its tuple,
# its seq and the headers of its key and value bytes objects (its slots in
# the key and entry lists are in the lists' sizes).
_DECODED_ENTRY_OVERHEAD = sys.getsizeof((0, 0, 0, 0)) + sys.getsizeof(1 << 40) + 2 * sys.getsizeof(b"")


@functools.lru_cache(maxsize=1024)
def _offsets_format(count: int) -> struct.Struct:
    """The format of a block's offset array of ``count`` entries."""
    return struct.Struct(f"<{count}I")


# The C search (builtin functions: block_find, block_seek), or None: not built.
_KERNELS = kernels.load_builtin("block_find"), kernels.load_builtin("block_seek")
if None in _KERNELS:
    _KERNELS = None
# The kernels in use (None: the Python search); set by use_search_kernel.
_find = _seek = None


# The C decoding (a builtin function), or None: not built.
_DECODER = kernels.load_builtin("block_entries")
# The decoder in use (None: the Python loop); set by use_decode_kernel.
_decode = None


def decode_kernel_available() -> bool:
    """Whether the C decoding of entries can run (hedge/io/kernels.py)."""
    return _DECODER is not None


def use_decode_kernel(enabled: bool) -> None:
    """Decode entries in C (when available) or with the Python twin, as
    ``use_search_kernel`` does for the search."""
    global _decode
    _decode = _DECODER if enabled else None


def search_kernel_available() -> bool:
    """Whether the C block search can run (hedge/io/kernels.py)."""
    return _KERNELS is not None


def use_search_kernel(enabled: bool) -> None:
    """Search blocks in C (when available) or with the Python twin.  For
    tests and measurements that compare the two; the default is C when
    available.  Process-wide: call it with no search running."""
    global _find, _seek
    _find, _seek = _KERNELS if enabled and _KERNELS is not None else (None, None)


def entry_bytes(key: bytes, value: bytes) -> int:
    """Bytes one entry adds to a block (header, key, value, offset slot)."""
    return HEADER_BYTES + len(key) + len(value) + 4


class BlockBuilder:
    """Accumulates entries and encodes them as one block.

    REQUIRES: entries are added in entry order; the caller (TableBuilder)
    checks the order, this class does not.
    """

    __slots__ = ("target_bytes", "_buf", "_offsets", "_size")

    def __init__(self, target_bytes: int = 4096):
        if not 0 < target_bytes <= MAX_BLOCK_BYTES // 4:
            raise ValueError(f"target_bytes must be in 1..{MAX_BLOCK_BYTES // 4}, not {target_bytes}")
        self.target_bytes = target_bytes
        self._buf = bytearray()
        self._offsets = array("I")
        self._size = TRAILER_BYTES          # estimated_size(), kept up to date

    def add(self, key: bytes, seq: int, kind: int, value: bytes) -> None:
        """Append one entry.  Raises ValueError when the block would exceed
        MAX_BLOCK_BYTES."""
        size = self._size + HEADER_BYTES + len(key) + len(value) + 4
        if size > MAX_BLOCK_BYTES:
            raise ValueError("block would exceed the 4 GiB limit of its offsets")
        buf = self._buf
        self._offsets.append(len(buf))
        buf += _HEADER.pack(len(key), len(value), (seq << 8) | kind)
        buf += key
        buf += value
        self._size = size

    def try_add(self, key: bytes, seq: int, kind: int, value: bytes) -> bool:
        """``add`` the entry, unless the block is not empty and the entry
        would take it past target_bytes: then add nothing and return False
        (the caller finishes the block and adds the entry to the next)."""
        size = self._size + HEADER_BYTES + len(key) + len(value) + 4
        if size > self.target_bytes and self._offsets:
            return False
        if size > MAX_BLOCK_BYTES:
            raise ValueError("block would exceed the 4 GiB limit of its offsets")
        buf = self._buf
        self._offsets.append(len(buf))
        buf += _HEADER.pack(len(key), len(value), (seq << 8) | kind)
        buf += key
        buf += value
        self._size = size
        return True

    def estimated_size(self) -> int:
        """Exact size finish() would return without padding."""
        return self._size

    def empty(self) -> bool:
        return not self._offsets

    def __len__(self) -> int:
        return len(self._offsets)

    def finish(self, pad_to: int = 1) -> bytes:
        """Return the encoded block, its size rounded up to a multiple of
        ``pad_to`` with zeros placed between the entries and the offsets, and
        reset the builder for the next block."""
        size = self._size
        padded = -(-size // pad_to) * pad_to
        offsets = self._offsets
        if not _LITTLE:
            offsets.byteswap()
        out = self._buf
        if padded > size:
            out += bytes(padded - size)
        out += offsets.tobytes()
        out += _COUNT.pack(len(offsets))
        out += _CHECKSUM.pack(_xxh3_64(out))
        self._buf = bytearray()
        self._offsets = array("I")
        self._size = TRAILER_BYTES
        return bytes(out)


class Block:
    """A verified, read-only block.  Construction checks the checksum and the
    trailer; ``get`` and ``iter_from`` then decode only what they touch.

    Raises CorruptionError(file, offset, detail) for a checksum mismatch or an
    impossible trailer; ``offset`` is the block's offset in its file.
    """

    __slots__ = ("_data", "_offs", "_count", "_keys", "_entries", "_nbytes", "file", "offset")

    def __init__(self, data: bytes | bytearray | memoryview, file: str | None = None, offset: int = 0):
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        if n < TRAILER_BYTES:
            raise CorruptionError(file, offset, f"block of {n} bytes is shorter than its trailer")
        (stored,) = _CHECKSUM.unpack_from(data, n - 8)
        actual = _xxh3_64(memoryview(data)[: n - 8])
        if stored != actual:
            raise CorruptionError(file, offset, f"block checksum mismatch (stored {stored:#018x}, computed {actual:#018x})")
        (count,) = _COUNT.unpack_from(data, n - TRAILER_BYTES)
        if n - TRAILER_BYTES - 4 * count < 0:
            raise CorruptionError(file, offset, f"block entry count {count} does not fit in {n} bytes")
        self._data = data
        self._offs = None                   # _offsets() unpacks them when first needed
        self._count = count
        self._keys = None
        self._entries = None
        self._nbytes = n
        self.file = file
        self.offset = offset

    def __len__(self) -> int:
        return self._count

    def _offsets(self) -> tuple[int, ...]:
        """The entries' offsets, unpacked on first use: a get searched in C
        needs none of them (two threads may both unpack them; either tuple
        is the same)."""
        offs = self._offs
        if offs is None:
            data = self._data
            count = self._count
            offs = self._offs = _offsets_format(count).unpack_from(data, len(data) - TRAILER_BYTES - 4 * count)
        return offs

    @property
    def nbytes(self) -> int:
        """Bytes the block occupies in memory: its encoded size, or for a
        decoded block (``decoded``) an estimate of its Python objects."""
        return self._nbytes

    @property
    def is_decoded(self) -> bool:
        """Whether the block holds its entries as Python objects
        (``decoded``)."""
        return self._keys is not None

    def decoded(self) -> "Block":
        """This block with its entries decoded (no second verification):
        the list of its user keys and the list of its ``(key, seq, kind,
        value)`` tuples, sharing the keys; its encoded bytes are dropped.
        Itself when it is decoded already.  The copy answers ``get``,
        ``lower_bound`` and ``entries`` exactly as the original does."""
        if self._keys is not None:
            return self
        count = self._count
        entries = self.entries_between(0, count)
        keys = [entry[0] for entry in entries]
        # The keys' and values' bytes: the entries' encoded span (they sit
        # one after the other from offset 0) less their 16-byte headers.
        payload = 0
        if count:
            last = entries[-1]
            payload = max(self._offsets()[-1] + 16 + len(last[0]) + len(last[3]) - 16 * count, 0)
        copy = Block.__new__(Block)
        copy._data = None
        copy._offs = None
        copy._count = count
        copy._keys = keys
        copy._entries = entries
        copy._nbytes = (payload + _DECODED_ENTRY_OVERHEAD * count
                        + sys.getsizeof(keys) + sys.getsizeof(entries) + _BLOCK_BYTES)
        copy.file = self.file
        copy.offset = self.offset
        return copy

    def get(self, user_key: bytes, snapshot_seq: int) -> tuple[int, Kind, bytes] | None:
        """The first version of ``user_key`` with seq <= snapshot_seq, as
        ``(seq, kind, value)``, or None when this block holds no such version."""
        keys = self._keys
        if keys is not None:
            # Versions of one key are adjacent, newest first: find the first,
            # then step to the first one old enough.
            entries = self._entries
            i = bisect_left(keys, user_key)
            n = self._count
            while i < n and keys[i] == user_key:
                entry = entries[i]
                if entry[1] <= snapshot_seq:
                    return entry[1:]
                i += 1
            return None
        data = self._data
        if _find is not None:
            found = _find(data, user_key, snapshot_seq)
            if found is False:
                raise self._corrupt_offsets()
            return found
        offs = self._offsets()
        u32 = _U32
        lo = 0
        hi = self._count
        # Lower bound of (user_key, -snapshot_seq) in entry order; the entry
        # header is key length (+0), value length (+4), seq << 8 | kind (+8).
        while lo < hi:
            mid = (lo + hi) >> 1
            off = offs[mid]
            k = data[off + 16 : off + 16 + u32(data, off)[0]]
            if k < user_key:
                lo = mid + 1
            elif k != user_key:
                hi = mid
            elif (_U64(data, off + 8)[0] >> 8) > snapshot_seq:
                lo = mid + 1
            else:
                hi = mid
        if lo == self._count:
            return None
        off = offs[lo]
        klen, vlen, sk = _HEADER.unpack_from(data, off)
        start = off + 16 + klen
        if data[off + 16 : start] != user_key:
            return None
        return (sk >> 8, _KINDS[sk & 0xFF], data[start : start + vlen])

    def lower_bound(self, user_key: bytes) -> int:
        """Index of the first entry whose user key is >= user_key (the
        entry count when there is none)."""
        if self._keys is not None:
            return bisect_left(self._keys, user_key)
        data = self._data
        if _seek is not None:
            i = _seek(data, user_key)
            if i < 0:
                raise self._corrupt_offsets()
            return i
        offs = self._offsets()
        u32 = _U32
        lo = 0
        hi = self._count
        while lo < hi:
            mid = (lo + hi) >> 1
            off = offs[mid]
            if data[off + 16 : off + 16 + u32(data, off)[0]] < user_key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _corrupt_entries(self) -> CorruptionError:
        return CorruptionError(self.file, self.offset, "block entries do not fit in the block")

    def _corrupt_offsets(self) -> CorruptionError:
        return CorruptionError(self.file, self.offset, "block entry offsets point outside the block")

    def iter_from(self, start_key: bytes | None = None) -> Iterator[tuple[bytes, int, Kind, bytes]]:
        """Yield entries ``(user_key, seq, kind, value)`` in entry order,
        starting at the first entry whose user key is >= start_key (all
        entries when start_key is None)."""
        return iter(self.entries(start_key))

    def entries(self, start_key: bytes | None = None) -> list[tuple[bytes, int, Kind, bytes]]:
        """The entries ``iter_from(start_key)`` yields, as a list (cheaper
        per entry than a generator)."""
        first = 0 if start_key is None else self.lower_bound(start_key)
        return self.entries_between(first, self._count)

    def entries_between(self, first: int, stop: int) -> list[tuple[bytes, int, Kind, bytes]]:
        """The entries at index ``first`` up to (not including) ``stop``,
        decoded, in entry order.  REQUIRES: 0 <= first <= stop <= len(self).
        A scan that needs a few entries of a block decodes only those; a
        decoded block gives a slice of its list (a new list, shared
        tuples).  Decoded in C when the kernel is built
        (``use_decode_kernel``).  Raises CorruptionError for an entry that
        does not fit in the block (the kernel also checks every length and
        kind byte; the Python twin, the offsets and kinds)."""
        if self._entries is not None:
            return self._entries[first:stop]
        data = self._data
        if _decode is not None:
            entries = _decode(data, first, stop)
            if entries is None:
                raise self._corrupt_entries()
            return entries
        offs = self._offsets()
        header = _HEADER.unpack_from
        kinds = _KINDS
        if first or stop != self._count:
            offs = offs[first:stop]
        out = []
        append = out.append
        try:
            for off in offs:
                klen, vlen, sk = header(data, off)
                kstart = off + 16
                vstart = kstart + klen
                append((data[kstart:vstart], sk >> 8, kinds[sk & 0xFF], data[vstart : vstart + vlen]))
        except (struct.error, IndexError):
            raise self._corrupt_entries() from None
        return out


# The Block object itself (counted in a decoded block's size).
_BLOCK_BYTES = sys.getsizeof(Block.__new__(Block))

use_search_kernel(True)
use_decode_kernel(True)
