"""TableCache: a bound on open table files (LRU), reopening on demand,
pinned files, dropped tables readable after unlink, close."""
from __future__ import annotations

import os

import pytest

from hedge.lsm.keys import Kind
from hedge.lsm.table_cache import TableCache
from hedge.lsm.table_io import write_table

TABLES = 6


def key(table: int, i: int) -> bytes:
    return b"t%02d-%04d" % (table, i)


@pytest.fixture
def directory(executor, tmp_path):
    """TABLES tables numbered 1..TABLES, 300 entries each."""
    async def make():
        for n in range(1, TABLES + 1):
            entries = [(key(n, i), n * 1000 + i, Kind.PUT, b"v%d" % i) for i in range(300)]
            await write_table(os.path.join(tmp_path, "%06d.sst" % n), n, entries, 4096, 10, "none")

    executor.run_sync(make())
    return str(tmp_path)


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def open_all(executor, cache: TableCache) -> dict:
    async def run():
        return {n: await cache.open(n) for n in range(1, TABLES + 1)}

    return executor.run_sync(run())


def get(executor, reader, k: bytes):
    return executor.run_sync(reader.get(k, 1 << 40))


def test_opening_beyond_the_limit_closes_the_least_recently_used_files(executor, directory):
    before = fds()
    cache = TableCache(directory, False, None, max_open_files=2)
    readers = open_all(executor, cache)
    assert cache.stats()["open_files"] == 2 and fds() == before + 2
    # Every table still answers: closed files are reopened, others closed.
    for n, reader in readers.items():
        assert get(executor, reader, key(n, 7))[2] == b"v7"
        assert fds() <= before + 2
    assert cache.stats()["reopens"] >= TABLES - 2
    cache.close()
    assert fds() == before


def test_the_most_recently_read_file_stays_open(executor, directory):
    cache = TableCache(directory, False, None, max_open_files=2)
    readers = open_all(executor, cache)
    get(executor, readers[1], key(1, 0))       # reopens 1, closes the LRU
    reopens = cache.stats()["reopens"]
    get(executor, readers[1], key(1, 1))
    get(executor, readers[2], key(2, 1))
    get(executor, readers[1], key(1, 2))
    assert cache.stats()["reopens"] == reopens + 1
    cache.close()


def test_a_pinned_file_outlives_the_limit_and_a_dropped_table_reads_after_unlink(executor, directory):
    before = fds()
    cache = TableCache(directory, False, None, max_open_files=1)
    readers = open_all(executor, cache)
    pinned = executor.run_sync(cache.pin([1]))      # closed by now: reopened and held
    cache.drop(1)
    cache.unpin(pinned)
    os.unlink(os.path.join(directory, "000001.sst"))
    for n in range(2, TABLES + 1):                  # churn through the rest
        get(executor, readers[n], key(n, 3))
    assert get(executor, readers[1], key(1, 299))[2] == b"v299"
    assert cache.stats()["tables"] == TABLES - 1 and fds() <= before + 2
    cache.close()
    assert fds() == before


def test_discard_closes_a_table_at_once(executor, directory):
    before = fds()
    cache = TableCache(directory, False, None, max_open_files=TABLES)
    open_all(executor, cache)
    assert fds() == before + TABLES
    cache.discard(3)
    assert fds() == before + TABLES - 1 and cache.stats()["tables"] == TABLES - 1
    cache.close()
    assert fds() == before


def test_a_dropped_table_is_released_open_when_its_last_reader_goes(executor, directory):
    before = fds()
    cache = TableCache(directory, False, None, max_open_files=TABLES)
    readers = open_all(executor, cache)
    pinned = executor.run_sync(cache.pin([2, 5]))
    cache.drop(2)
    cache.drop(5)
    cache.unpin(pinned)
    del pinned
    assert cache.unreleased == 2 and not cache.has_released and cache.take_released() == []
    assert get(executor, readers[2], key(2, 10))[2] == b"v10"     # still read by its holders
    del readers[2]                  # the last reference goes on this thread: the file stays open
    assert cache.has_released and fds() == before + TABLES
    released = cache.take_released()
    assert [number for number, _file in released] == [2] and cache.unreleased == 1
    number, file = released[0]
    assert not file.closed and fds() == before + TABLES
    file.close()                    # the taker closes it (and would then unlink the table)
    assert fds() == before + TABLES - 1
    assert cache.take_released() == [] and cache.unreleased == 1
    cache.close()                   # table 5's reader is still held: close shuts its file anyway
    assert fds() == before
    del readers[5]
    assert [n for n, _file in cache.take_released()] == [5] and cache.unreleased == 0
