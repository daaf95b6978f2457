"""Table reads through the ring (hedge/lsm/table_io.py): the bytes read at
page-aligned spans, and read buffers reused per size and thread."""
from __future__ import annotations

import os

import pytest

from hedge.io import ops
from hedge.lsm import table_io
from hedge.lsm.table_io import POOLED_PAGES, read_at

PAGE = 4096


@pytest.fixture
def made(monkeypatch) -> list[int]:
    """The sizes of the Buffers table_io makes from now on."""
    sizes = []
    real = table_io.Buffer

    def counting_buffer(size):
        sizes.append(size)
        return real(size)

    monkeypatch.setattr(table_io, "Buffer", counting_buffer)
    return sizes


async def read_all(path: str, offsets, length: int) -> list[bytes]:
    file = await ops.open_file(path, os.O_RDONLY)
    try:
        return [await read_at(file, off, length) for off in offsets]
    finally:
        file.close()


@pytest.mark.parametrize("pages", [1, 2, POOLED_PAGES])
def test_reads_of_up_to_pooled_pages_reuse_their_buffers(executor, data_file, made, pages):
    path, data = data_file
    length = pages * PAGE
    offsets = (0, 3 * PAGE, 17 * PAGE, 3 * PAGE)
    got = executor.run_sync(read_all(path, offsets, length))
    assert got == [data[off:off + length] for off in offsets]
    # One new buffer at most (none when an earlier test on this thread left
    # one of this size in the free list).
    assert made in ([], [length])


def test_larger_reads_get_a_buffer_each(executor, data_file, made):
    path, data = data_file
    length = (POOLED_PAGES + 1) * PAGE
    assert executor.run_sync(read_all(path, (0, PAGE), length)) == [data[off:off + length] for off in (0, PAGE)]
    assert made == [length, length]
