"""Table writes through the ring (hedge/lsm/table_io.py): finished chunks
are gathered and written as one writev per run of adjacent chunks, the
file holds exactly what the builder made, and a failed write leaves no
file behind."""
from __future__ import annotations

import errno
import os

import pytest

from hedge.errors import HedgeIOError
from hedge.io import faults, ops
from hedge.lsm import table_io
from hedge.lsm.keys import Kind
from hedge.lsm.table import TableBuilder
from hedge.lsm.table_io import WRITE_BATCH_BYTES, WRITE_BATCH_CHUNKS, write_requests, write_table

PAGE = 4096


def entries(n: int, value_bytes: int) -> list:
    return [(b"key%08d" % i, i + 1, Kind.PUT, bytes([i % 251]) * value_bytes) for i in range(n)]


def built(items) -> tuple[bytes, int]:
    """The file the builder makes of ``items`` (its chunks laid at their
    offsets) and its chunk count."""
    builder = TableBuilder(block_bytes=4096, bloom_bits_per_key=10, compression="none")
    chunks = []
    for item in items:
        builder.add(*item)
        chunks += builder.take_ready()
    last, _props = builder.finish()
    chunks += last
    image = bytearray(chunks[-1][0] + len(chunks[-1][1]))
    for offset, data in chunks:
        image[offset:offset + len(data)] = data
    return bytes(image), len(chunks)


@pytest.fixture
def requests(monkeypatch) -> list[tuple[str, int]]:
    """The table writes issued from now on: (op, buffer count)."""
    seen = []
    real_write, real_writev = ops.write, ops.writev

    async def write(file, data, offset, *args):
        seen.append(("write", 1))
        return await real_write(file, data, offset, *args)

    async def writev(file, bufs, offset):
        seen.append(("writev", len(bufs)))
        return await real_writev(file, bufs, offset)

    monkeypatch.setattr(ops, "write", write)
    monkeypatch.setattr(ops, "writev", writev)
    return seen


def test_adjacent_chunks_become_one_request_up_to_the_chunk_bound():
    chunks = [(i * PAGE, b"x" * PAGE) for i in range(WRITE_BATCH_CHUNKS + 3)]
    got = write_requests(chunks)
    assert [(offset, len(bufs)) for offset, bufs in got] == [(0, WRITE_BATCH_CHUNKS),
                                                           (WRITE_BATCH_CHUNKS * PAGE, 3)]
    assert [data for _, bufs in got for data in bufs] == [data for _, data in chunks]


def test_a_gap_starts_a_new_request():
    chunks = [(0, b"a" * PAGE), (PAGE, b"b" * 2 * PAGE), (5 * PAGE, b"c" * PAGE), (6 * PAGE, b"d" * PAGE)]
    assert write_requests(chunks) == [(0, [b"a" * PAGE, b"b" * 2 * PAGE]), (5 * PAGE, [b"c" * PAGE, b"d" * PAGE])]
    assert write_requests([]) == []


def test_a_large_table_is_written_in_few_requests_and_byte_for_byte(executor, tmp_path, requests):
    items = entries(3000, 1000)          # about 3 MiB: more than one batch of chunks
    image, chunk_count = built(items)
    path = str(tmp_path / "000001.sst")
    meta, written = executor.run_sync(write_table(path, 1, items, 4096, 10, "none"))
    with open(path, "rb") as f:
        assert f.read() == image
    assert written == len(image) == meta.size
    assert meta.entries == len(items)
    # Every chunk was written once, and in far fewer requests than chunks.
    assert sum(n for _, n in requests) == chunk_count
    bound = -(-len(image) // WRITE_BATCH_BYTES) + -(-chunk_count // WRITE_BATCH_CHUNKS) + 1
    assert len(requests) <= bound < chunk_count // 4


def test_a_small_table_is_written_at_finish_in_one_request(executor, tmp_path, requests):
    items = entries(40, 100)
    image, chunk_count = built(items)
    path = str(tmp_path / "000002.sst")
    executor.run_sync(write_table(path, 2, items, 4096, 10, "none"))
    with open(path, "rb") as f:
        assert f.read() == image
    assert chunk_count > 1
    assert requests == [("writev", chunk_count)]


@pytest.mark.parametrize("op", ["write", "writev"])
def test_a_failed_write_removes_the_table(executor, tmp_path, op, monkeypatch):
    # One chunk per request: the failing op is met whichever it is.
    if op == "write":
        monkeypatch.setattr(table_io, "WRITE_BATCH_CHUNKS", 1)
    path = str(tmp_path / "000003.sst")
    with faults.inject(op, errno.ENOSPC, path_contains=".sst"):
        with pytest.raises(HedgeIOError) as info:
            executor.run_sync(write_table(path, 3, entries(3000, 1000), 4096, 10, "none"))
    assert info.value.errno == errno.ENOSPC
    assert not os.path.exists(path)
