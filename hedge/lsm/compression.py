"""Block compression: how a data block is stored in a compressed table.

A table written with compression on (format version 2, docs/format/table.md
"Stored block") stores each data block as

    body | type (uint8) | xxh3_64 of body + type (uint64)

where ``type`` says how ``body`` was made from the encoded block: ``RAW`` (it
is the block itself) or ``ZSTD`` (a zstd frame of it, with its content size).
A block is stored compressed only when that saves at least an eighth of it
(RocksDB's rule): a block of incompressible values is stored raw and costs
nothing to read back.  The checksum covers the stored bytes, so damage is
found before the decompressor sees them; the block inside keeps its own
checksum, so a decompressor fault is found as well.

Codec: zstd at level 1 (the ``zstandard`` package).  Measured on 4 KiB
blocks (perf/compression_bench.py, docs/design.md "Block compression"): it
stores what lz4 cannot compress at all (one random printable character per
byte: 0.78 of the block against lz4's 1.0) and JSON in 0.29 against lz4's
0.42; level 3 gains under 0.01 on blocks this small.

Type bytes are on disk: never renumber.

Threads: ``store`` and ``load`` may be called from any thread; each thread
uses its own zstd contexts (a context is not thread-safe, and making one per
block costs more than the block).
"""
from __future__ import annotations

import struct
import threading

import xxhash
import zstandard

from hedge.errors import CorruptionError

# Stored-block type bytes.  Never renumber.
RAW = 0
ZSTD = 1
# Option value -> the type its compressed blocks carry (hedge/options.py
# COMPRESSIONS lists the same names).
CODECS = {"zstd": ZSTD}
ZSTD_LEVEL = 1
_NAMES = {RAW: "none", ZSTD: "zstd"}

_TRAILER = struct.Struct("<BQ")          # type, checksum
_CHECKSUM = struct.Struct("<Q")
TRAILER_BYTES = _TRAILER.size
_xxh3_64 = xxhash.xxh3_64_intdigest
_local = threading.local()


def _contexts() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    ctx = getattr(_local, "zstd", None)
    if ctx is None:
        ctx = _local.zstd = (zstandard.ZstdCompressor(level=ZSTD_LEVEL), zstandard.ZstdDecompressor())
    return ctx


def codec_name(codec: int) -> str:
    """The option name of a codec type byte ("none" for RAW)."""
    return _NAMES.get(codec, f"unknown ({codec})")


def store(block: bytes, codec: int) -> bytes:
    """The stored form of the encoded ``block``: compressed with ``codec``
    (ZSTD) when that saves an eighth of it or more, else raw; then the type
    byte and the checksum.  REQUIRES: codec is ZSTD."""
    body = _contexts()[0].compress(block) if codec == ZSTD else block
    if len(body) > len(block) - (len(block) >> 3):
        body, codec = block, RAW
    head = body + bytes((codec,))
    return head + _CHECKSUM.pack(_xxh3_64(head))


def stored_type(stored: bytes) -> int:
    """The type byte of a stored block (no checks)."""
    return stored[-TRAILER_BYTES]


def load(stored: bytes, file: str | None, offset: int) -> bytes:
    """The encoded block inside ``stored`` (bytes as ``store`` made them).

    Raises CorruptionError(file, offset, ...) for stored bytes too short, a
    checksum mismatch, an unknown type byte or a body the decompressor
    rejects."""
    n = len(stored)
    if n < TRAILER_BYTES:
        raise CorruptionError(file, offset, f"stored block of {n} bytes is shorter than its trailer")
    codec, checksum = _TRAILER.unpack_from(stored, n - TRAILER_BYTES)
    view = memoryview(stored)
    actual = _xxh3_64(view[: n - 8])
    if checksum != actual:
        raise CorruptionError(file, offset, f"stored block checksum mismatch (stored {checksum:#018x}, computed {actual:#018x})")
    body = view[: n - TRAILER_BYTES]
    if codec == RAW:
        return bytes(body)
    if codec == ZSTD:
        try:
            return _contexts()[1].decompress(body)
        except zstandard.ZstdError as e:
            raise CorruptionError(file, offset, f"zstd block does not decompress: {e}") from None
    raise CorruptionError(file, offset, f"unknown block compression type {codec}")
