"""Block compression: what each codec gives on the YCSB driver's data.

Builds data blocks (hedge/lsm/block.py) from the records the YCSB driver
writes (perf/keys.py names, perf/values.py values, in key order as a table
holds them) and, for 4 KiB, 16 KiB and 64 KiB blocks, measures per codec:
the compressed size as a fraction of the block, and the µs to compress and
to decompress one block (CPU time of the thread, best of five passes).  Two more data sets show
what the codecs do when values are compressible: ``ycsb-ascii`` (values of
the real YCSB's generator: one of 64 printable characters per byte, 6 random
bits in 8) and ``json`` (small JSON documents with repeated field names).

Then the tables: the same records written by TableBuilder with
compression off and on (docs/format/table.md), their file sizes, and the
pages a point lookup reads (one aligned read covering the block).  Then
what a lookup pays, as CPU time of the thread (the machine is shared):
uncached gets on a TableReader over memory, random gets through the
blocking API (sync I/O method) with no block cache (every get reads and
decodes a block; the file is in the page cache) and with a cache holding
every block; and the device side: O_DIRECT reads of one page against two
(the span of a block that crosses a page boundary), queue depth 1.

Run: .venv/bin/python -m perf.compression_bench [--records N]
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import tempfile
import time
import timeit

import lz4
import lz4.block
import lz4.frame
import zstandard

from hedge.lsm.block import BlockBuilder
from perf import environment
from perf.keys import key_name
from perf.micro_table import drive
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
    return min(timeit.repeat(run, number=1, repeat=5, timer=time.thread_time)) / len(items) * 1e6


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
    return memory_table(chunks, props).block_ranges()


def memory_table(chunks, props):
    """A TableReader (no block cache) over the table's bytes in memory."""
    from hedge.lsm.table import TableReader

    image = bytearray(props.file_size)
    for off, data in chunks:
        image[off:off + len(data)] = data
    image = bytes(image)

    async def read(off, length):
        return image[off:off + length]

    return drive(TableReader.open(read, len(image), "bench", 1))


def measure_reader_gets(name: str, records, gets: int = 3000, rounds: int = 7) -> None:
    """Uncached gets on a TableReader over memory: the CPU a lookup spends
    reading back its block (slicing, checks, decompression, search)."""
    from hedge.lsm.keys import MAX_SEQ
    from hedge.lsm.table import TableBuilder

    keys = [k for k, _ in random.Random(1).choices(records, k=gets)]
    readers = {}
    for compression in ("none", "zstd"):
        builder = TableBuilder(compression=compression)
        for seq, (key, value) in enumerate(records, 1):
            builder.add(key, seq, 1, value)
        readers[compression] = memory_table(*builder.finish())
    best = dict.fromkeys(readers, float("inf"))
    for _ in range(rounds):                     # alternating, as in measure_gets
        for compression, reader in readers.items():
            t = thread_seconds(lambda: [drive(reader.get(k, MAX_SEQ)) for k in keys])
            best[compression] = min(best[compression], t / gets * 1e6)
    row = [f"{c} {us:6.1f}" for c, us in best.items()]
    print(f"  {name:<48} " + "  ".join(row))


def thread_seconds(fn) -> float:
    """CPU seconds this thread spends in ``fn()`` (the sync I/O method's
    reads included): time the shared machine gives other work is left out."""
    t = time.thread_time()
    fn()
    return time.thread_time() - t


def measure_gets(name: str, records, io_method: str, gets: int = 3000, rounds: int = 7) -> None:
    """Random gets through the blocking API on two databases holding
    ``records``, one per setting, timed in alternation (the machine is
    shared: alternating spreads its noise over both); best round of each."""
    import hedge

    print(f"\n{name}: random gets, {io_method}, {len(records):,} records (CPU us per get, best of {rounds} alternating rounds)")
    rng = random.Random(1)
    keys = [k for k, _ in rng.choices(records, k=gets)]
    settings = ("none", "zstd")
    lean = dict(io_method=io_method, pin=False, foreground_threads=1, background_threads=1, compaction_process=False)
    with tempfile.TemporaryDirectory(dir=".") as top:
        dirs = {}
        for compression in settings:
            dirs[compression] = os.path.join(top, compression)
            with hedge.open(dirs[compression], compression=compression, memtable_bytes=64 << 20, **lean) as db:
                batch = hedge.WriteBatch()
                for key, value in records:
                    batch.put(key, value)
                db.write(batch)
                db.compact(records[0][0], None)
        for cache, label in ((0, "no block cache"), (256 << 20, "cache of every block")):
            dbs = {c: hedge.open(dirs[c], block_cache_bytes=cache, **lean) for c in settings}
            try:
                best = dict.fromkeys(settings, float("inf"))
                for db in dbs.values():
                    for key in keys:              # page cache and block cache warm
                        db.get(key)
                for _ in range(rounds):
                    for c, db in dbs.items():
                        get = db.get
                        t = thread_seconds(lambda: [get(k) for k in keys])
                        best[c] = min(best[c], t / gets * 1e6)
            finally:
                for db in dbs.values():
                    db.close()
            print(f"  {label:<22}" + "".join(f"  {c} {best[c]:6.1f}" for c in settings))


def measure_direct_reads(reads: int = 3000) -> None:
    """O_DIRECT pread of 4 KiB against 8 KiB at random page offsets of a
    64 MiB file, queue depth 1."""
    size = 64 << 20
    with tempfile.TemporaryDirectory(dir=".") as d:
        path = os.path.join(d, "pages")
        with open(path, "wb") as f:
            for _ in range(size // (1 << 20)):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError as exc:
            print(f"\n(O_DIRECT reads not measured: {exc})")
            return
        try:
            buf = mmap.mmap(-1, 8192)
            rng = random.Random(2)
            print(f"\nO_DIRECT random reads, queue depth 1, {reads} each (us per read, median / p99)")
            for length in (4096, 8192):
                view = memoryview(buf)[:length]
                times = []
                for _ in range(reads):
                    off = rng.randrange(size // 4096 - 2) * 4096
                    t = time.perf_counter()
                    os.preadv(fd, [view], off)
                    times.append(time.perf_counter() - t)
                times.sort()
                print(f"  {length // 1024} KiB  {times[len(times) // 2] * 1e6:7.1f} / {times[len(times) * 99 // 100] * 1e6:7.1f}")
        finally:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--io-method", default="sync", help="I/O method of the get measurement (default: sync)")
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
    for name, records in sets.items():
        measure_tables(name, records)
    print("\nuncached TableReader.get over memory, no engine (CPU us per get, best of 7 alternating rounds)")
    for name, records in sets.items():
        measure_reader_gets(name, records)
    for name in (next(iter(sets)), "json"):
        measure_gets(name, sets[name], args.io_method)
    measure_direct_reads()


if __name__ == "__main__":
    main()
