"""Stored blocks (hedge/lsm/compression.py): round trips, the raw fallback
for data that does not compress, and one test per corruption case."""
from __future__ import annotations

import random
import struct
import threading

import pytest
import xxhash
import zstandard

from hedge.errors import CorruptionError
from hedge.lsm import compression
from hedge.lsm.compression import RAW, TRAILER_BYTES, ZSTD, codec_name, load, store, stored_type
from hedge.options import COMPRESSIONS

FILE = "000007.sst"


def compressible(n: int = 4000) -> bytes:
    return (b"{\"name\": \"alpha bravo\", \"age\": 42}" * (n // 34 + 1))[:n]


def with_checksum(body: bytes, codec: int) -> bytes:
    head = body + bytes((codec,))
    return head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head))


def test_option_names_are_none_then_the_codecs():
    assert COMPRESSIONS == ("none", *compression.CODECS)
    assert [codec_name(RAW), codec_name(ZSTD)] == ["none", "zstd"]
    assert codec_name(9) == "unknown (9)"


def test_compressible_block_is_stored_zstd_and_loads_back():
    block = compressible()
    stored = store(block, ZSTD)
    assert stored_type(stored) == ZSTD
    assert len(stored) < len(block) // 4
    assert load(stored, FILE, 0) == block


def test_incompressible_block_is_stored_raw():
    block = random.Random(1).randbytes(4000)
    stored = store(block, ZSTD)
    assert stored_type(stored) == RAW
    assert stored[:-TRAILER_BYTES] == block
    assert load(stored, FILE, 0) == block


def test_block_that_saves_less_than_an_eighth_is_stored_raw():
    # Half compressible, half random: zstd saves about half; a block that is
    # 7/8 random saves less than the eighth the rule asks for.
    rng = random.Random(2)
    half = compressible(2000) + rng.randbytes(2000)
    assert stored_type(store(half, ZSTD)) == ZSTD
    mostly_random = compressible(400) + rng.randbytes(3600)
    assert len(zstandard.ZstdCompressor(level=1).compress(mostly_random)) < len(mostly_random)
    assert stored_type(store(mostly_random, ZSTD)) == RAW


def test_empty_block_round_trips():
    assert load(store(b"", ZSTD), FILE, 0) == b""


def test_threads_compress_and_decompress_at_once():
    blocks = [compressible(1000 + 97 * i) for i in range(40)]
    errors = []

    def work():
        try:
            for _ in range(20):
                for block in blocks:
                    assert load(store(block, ZSTD), FILE, 0) == block
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ---- corruption: one case each, CorruptionError naming the file and offset

def assert_corruption(exc_info, offset: int) -> None:
    assert exc_info.value.file == FILE
    assert exc_info.value.offset == offset


@pytest.mark.parametrize("position", [0, 10, -TRAILER_BYTES, -1])
def test_flipped_byte_fails_the_checksum(position):
    stored = bytearray(store(compressible(), ZSTD))
    stored[position] ^= 0x01
    with pytest.raises(CorruptionError, match="checksum") as info:
        load(bytes(stored), FILE, 8192)
    assert_corruption(info, 8192)


def test_stored_block_shorter_than_its_trailer_fails():
    with pytest.raises(CorruptionError, match="shorter than its trailer") as info:
        load(b"\x00" * (TRAILER_BYTES - 1), FILE, 4096)
    assert_corruption(info, 4096)


def test_unknown_type_byte_fails():
    with pytest.raises(CorruptionError, match="unknown block compression type 7") as info:
        load(with_checksum(b"abc", 7), FILE, 12)
    assert_corruption(info, 12)


def test_zstd_body_that_does_not_decompress_fails():
    good = store(compressible(), ZSTD)
    body = bytearray(good[:-TRAILER_BYTES])
    body[0] ^= 0xFF                        # the frame's magic, damaged before the checksum was made
    with pytest.raises(CorruptionError, match="does not decompress") as info:
        load(with_checksum(bytes(body), ZSTD), FILE, 40)
    assert_corruption(info, 40)


def test_zstd_body_without_content_size_fails():
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(compressible())
    with pytest.raises(CorruptionError, match="does not decompress"):
        load(with_checksum(frame, ZSTD), FILE, 0)
