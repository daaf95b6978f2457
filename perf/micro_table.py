"""Micro benchmark of the table read path (pure CPU, no disk): decoding and
verifying one 4 KiB block, a search inside a block, bloom probes, and a
TableReader.get whose block is in the cache.  Short: about two seconds.

Run: PYTHONPATH=. python -m perf.micro_table
"""
from __future__ import annotations

import itertools
import platform
import random
import timeit

import xxhash

from hedge.lsm.block import Block
from hedge.lsm.cache import BlockCache
from hedge.lsm.keys import Kind
from hedge.lsm.table import TableBuilder, TableReader

ENTRIES = 20_000
VALUE_BYTES = 100


def drive(coro):
    """Run a coroutine that never suspends (reads from memory)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("coroutine suspended")


def per_call_us(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, kernel {platform.release()}, xxhash {xxhash.VERSION}")
    builder = TableBuilder()
    for i in range(ENTRIES):
        builder.add(b"user%012d" % i, 5, Kind.PUT, b"v" * VALUE_BYTES)
    chunks, props = builder.finish()
    data = b"".join(d for _, d in chunks)

    async def read(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    cache = BlockCache(64 << 20)
    reader = drive(TableReader.open(read, len(data), "bench.sst", 1, cache))
    uncached = drive(TableReader.open(read, len(data), "bench.sst", 2))
    rng = random.Random(1)
    keys = [b"user%012d" % rng.randrange(ENTRIES) for _ in range(4096)]
    misses = [b"user%012d-absent" % rng.randrange(ENTRIES) for _ in range(4096)]
    for k in keys:
        drive(reader.get(k, 10))
    n = 20_000
    ki = itertools.cycle(keys)
    mi = itertools.cycle(misses)
    page = data[:4096]
    block = Block(page)
    inner = next(iter(block.iter_from()))[0]
    print(f"table: {props.entry_count} entries of {VALUE_BYTES}-byte values, {props.block_count} blocks, "
          f"{len(block)} entries per 4 KiB block")
    rows = [
        ("decode+verify one 4 KiB block", lambda: Block(page)),
        ("Block.get in a 4 KiB block", lambda: block.get(inner, 10)),
        ("bloom may_contain, present key", lambda: reader.may_contain(next(ki))),
        ("bloom may_contain, absent key (in key range)", lambda: reader.may_contain(next(mi))),
        ("TableReader.get, absent key (in key range)", lambda: drive(reader.get(next(mi), 10))),
        ("TableReader.get, block cached", lambda: drive(reader.get(next(ki), 10))),
        ("TableReader.get, no cache (read from bytes + verify)", lambda: drive(uncached.get(next(ki), 10))),
    ]
    for name, fn in rows:
        print(f"{name:55s} {per_call_us(fn, n):6.2f} us")


if __name__ == "__main__":
    main()
