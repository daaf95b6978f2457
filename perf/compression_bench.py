"""Block compression: what each codec gives on the YCSB driver's data.

Builds data blocks (hedge/lsm/block.py) from the records the YCSB driver
writes (perf/keys.py names, perf/values.py values, in key order as a table
holds them) and, for 4 KiB, 16 KiB and 64 KiB blocks, measures per codec:
the compressed size as a fraction of the block, and the µs to compress and
to decompress one block (best of three passes).  Two more data sets show
what the codecs do when values are compressible: ``ycsb-ascii`` (values of
the real YCSB's generator: one of 64 printable characters per byte, 6 random
bits in 8) and ``json`` (small JSON documents with repeated field names).

Then the tables: the same records written by TableBuilder with
compression off and on (docs/format/table.md), their file sizes, and the
pages a point lookup reads (one aligned read covering the block).

Run: .venv/bin/python -m perf.compression_bench [--records N]
"""
from __future__ import annotations

import argparse
import json
import random
import timeit

import lz4
import lz4.block
import lz4.frame
import zstandard

from hedge.lsm.block import BlockBuilder
from perf import environment
from perf.keys import key_name
from perf.values import ValueFactory

BLOCK_SIZES = (4096, 16384, 65536)


def ycsb_records(n: int, value_size: int) -> list[tuple[bytes, bytes]]:
    """The driver's load phase: record i is (key_name(i), its version-0 value)."""
    values = ValueFactory(value_size)
    keys = sorted(key_name(i) for i in range(n))
    return [(k, values.make(k, 0)) for k in keys]


def ascii_records(n: int, value_size: int) -> list[tuple[bytes, bytes]]:
    """Values as the real YCSB's RandomByteIterator makes them: each byte is
    ' ' plus 6 random bits."""
    rng = random.Random(7)
    keys = sorted(key_name(i) for i in range(n))
    return [(k, bytes(32 + (b & 63) for b in rng.randbytes(value_size))) for k in keys]


def json_records(n: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(11)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    keys = sorted(key_name(i) for i in range(n))
    out = []
    for k in keys:
        doc = {"id": k.decode(), "name": " ".join(rng.choices(words, k=3)), "age": rng.randrange(100),
               "email": f"{rng.choice(words)}.{rng.randrange(10**6)}@example.com",
               "tags": rng.choices(words, k=4), "score": round(rng.random() * 1000, 3),
               "active": rng.random() < 0.5, "city": rng.choice(words).title()}
        out.append((k, json.dumps(doc).encode()))
    return out


def blocks_of(records, block_bytes: int) -> list[bytes]:
    builder = BlockBuilder(block_bytes)
    out = []
    for seq, (key, value) in enumerate(records, 1):
        if not builder.try_add(key, seq, 1, value):
            out.append(builder.finish())
            builder.add(key, seq, 1, value)
    if not builder.empty():
        out.append(builder.finish())
    return out


def codecs():
    """name -> (compress(bytes) -> bytes, decompress(bytes) -> bytes).  The
    zstd contexts are made once and reused, as a reader thread would."""
    table = {}
    for level in (1, 3):
        c = zstandard.ZstdCompressor(level=level)
        d = zstandard.ZstdDecompressor()
        table[f"zstd-{level}"] = (c.compress, d.decompress)
    table["lz4-block"] = (lz4.block.compress, lz4.block.decompress)
    table["lz4-frame"] = (lz4.frame.compress, lz4.frame.decompress)
    return table


def per_block_us(fn, items: list[bytes]) -> float:
    def run():
        for item in items:
            fn(item)
    return min(timeit.repeat(run, number=1, repeat=3)) / len(items) * 1e6


def measure_codecs(name: str, records) -> None:
    print(f"\n{name}: {len(records):,} records, value {len(records[0][1])} B")
    print(f"  {'block':>6} {'codec':<10} {'ratio':>6} {'comp us':>8} {'decomp us':>9}")
    for size in BLOCK_SIZES:
        blocks = blocks_of(records, size)[:400]
        raw = sum(map(len, blocks))
        for codec, (compress, decompress) in codecs().items():
            packed = [compress(b) for b in blocks]
            assert all(decompress(p) == b for p, b in zip(packed, blocks))
            ratio = sum(map(len, packed)) / raw
            print(f"  {size // 1024:>4}Ki {codec:<10} {ratio:6.3f} {per_block_us(compress, blocks):8.1f} "
                  f"{per_block_us(decompress, packed):9.1f}")


def measure_tables(name: str, records) -> None:
    from hedge.lsm.table import TableBuilder
    from hedge.lsm.table.format import PAGE

    print(f"\n{name}: tables of {len(records):,} records")
    for compression in ("none", "zstd"):
        builder = TableBuilder(compression=compression)
        for seq, (key, value) in enumerate(records, 1):
            builder.add(key, seq, 1, value)
        chunks, props = builder.finish()
        ranges = builder_block_ranges(chunks, props)
        pages = [(-(-(off + length) // PAGE)) - off // PAGE for off, length in ranges]
        print(f"  {compression:<5} file {props.file_size / 1e6:8.3f} MB  data {props.data_bytes / 1e6:8.3f} MB  "
              f"blocks {props.block_count:6}  pages per lookup {sum(pages) / len(pages):.3f}  "
              f"(raw keys+values {(props.raw_key_bytes + props.raw_value_bytes) / 1e6:.3f} MB)")


def builder_block_ranges(chunks, props) -> list[tuple[int, int]]:
    """The (offset, length) of every data block, read back through a TableReader."""
    from hedge.lsm.table import TableReader

    image = bytearray(props.file_size)
    for off, data in chunks:
        image[off:off + len(data)] = data

    async def read(off, length):
        return bytes(image[off:off + length])

    coro = TableReader.open(read, len(image), "bench", 1)
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value.block_ranges()
    raise RuntimeError("reader suspended")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    env = environment.collect(".")
    print(f"cpu {env['cpu']} ({env['cores']} cores), {env['kernel']}, {env['python']}")
    print(f"zstandard {zstandard.__version__} (libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))}, "
          f"{zstandard.backend}), lz4 {lz4.__version__} (liblz4 {lz4.library_version_string()})")
    sets = {
        "ycsb-1000 (driver default: 10 fields x 100 B)": ycsb_records(args.records, 1000),
        "ycsb-100 (--value-size 100)": ycsb_records(args.records, 100),
        "ycsb-ascii-1000 (real YCSB value bytes)": ascii_records(args.records, 1000),
        "json": json_records(args.records),
    }
    for name, records in sets.items():
        measure_codecs(name, records)
    try:
        for name, records in sets.items():
            measure_tables(name, records)
    except TypeError as exc:            # a TableBuilder without the compression option
        print(f"\n(tables not measured: {exc})")


if __name__ == "__main__":
    main()
