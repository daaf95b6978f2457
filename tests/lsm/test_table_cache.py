"""TableCache: a bound on open table files (LRU), reopening on demand,
pinned files, dropped tables readable after unlink, close."""
from __future__ import annotations

import os

import pytest

from hedge.io import ops
from hedge.lsm.keys import Kind
from hedge.lsm.table_cache import TableCache
from hedge.lsm.table.reader import NOT_CACHED as RD_NOT_CACHED
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


def _after_each_system_read(monkeypatch, hook) -> None:
    """Call ``hook()`` inside every in-place read, right after its system
    call: through the C read when it is in use, else its Python twin's."""
    if ops._pread is not None:
        pread = ops._pread

        def pread_then_hook(*args):
            data = pread(*args)
            hook()
            return data

        monkeypatch.setattr(ops, "_pread", pread_then_hook)
    else:
        preadv = os.preadv

        def preadv_then_hook(*args):
            n = preadv(*args)
            hook()
            return n

        monkeypatch.setattr(ops.os, "preadv", preadv_then_hook)


def test_a_file_evicted_during_an_in_place_read_is_closed_when_the_read_ends(executor, directory, monkeypatch):
    before = fds()
    cache = TableCache(directory, False, None, max_open_files=TABLES, inline_reads=True)
    readers = open_all(executor, cache)
    pinned = executor.run_sync(cache.pin([2]))
    during = []

    def evict():
        if not during:
            cache.max_open_files = 1
            cache.unpin(executor.run_sync(cache.pin([3])))      # releasing it evicts all but table 2
            during.append(fds())

    _after_each_system_read(monkeypatch, evict)
    found = readers[1].get_cached(key(1, 5), 1 << 40)           # in place, on this thread
    assert found[2] == b"v5"
    # Table 1's file stayed open (beside pinned table 2's) until the read
    # ended; then the read closed it.
    assert during == [before + 2] and fds() == before + 1
    assert cache.stats()["inline_reads"] == 1
    cache.unpin(pinned)
    assert fds() == before + 1
    cache.close()
    assert fds() == before


def test_a_file_read_in_place_is_evicted_after_one_not_read(executor, directory):
    cache = TableCache(directory, False, None, max_open_files=2, inline_reads=True)
    readers = open_all(executor, cache)                         # 5 and 6 are open, 5 the older
    assert readers[5].get_cached(key(5, 1), 1 << 40)[2] == b"v1"
    assert cache.stats()["inline_reads"] == 1
    get(executor, readers[1], key(1, 1))                        # reopens 1: one of 5 and 6 goes
    reopens = cache.stats()["reopens"]
    get(executor, readers[5], key(5, 2))                        # still open: no reopen
    assert cache.stats()["reopens"] == reopens and cache.stats()["inline_reads"] == 2
    get(executor, readers[6], key(6, 2))
    assert cache.stats()["reopens"] == reopens + 1
    cache.close()


def test_in_place_reads_from_threads_with_evictions_meanwhile_answer_right_and_leak_no_file(
        executor, directory):
    """Threads read in place while the executor's ring reads keep
    reopening and evicting files (limit 2 for 6 tables); the switch
    interval is short so that threads interleave inside the reads."""
    import sys
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        before = fds()
        cache = TableCache(directory, False, None, max_open_files=2, inline_reads=True)
        readers = open_all(executor, cache)
        stop = threading.Event()
        wrong = []
        done = [0] * 4

        def read_in_place(t: int) -> None:
            i = 0
            while not stop.is_set():
                n = 1 + (i + t) % TABLES
                try:
                    found = readers[n].get_cached(key(n, i % 300), 1 << 40)
                except Exception as e:                  # a read of a closed file, say
                    wrong.append((n, i, e))
                    return
                if found is not RD_NOT_CACHED and found[2] != b"v%d" % (i % 300):
                    wrong.append((n, i, found))
                i += 1
                done[t] += 1

        threads = [threading.Thread(target=read_in_place, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for i in range(300):                            # ring reads: reopen, evict
            n = 1 + i % TABLES
            assert get(executor, readers[n], key(n, i))[2] == b"v%d" % i
        stop.set()
        for thread in threads:
            thread.join()
        assert wrong == [] and min(done) > 0
        assert cache.stats()["inline_reads"] > 0 and cache.stats()["reopens"] > 0
        assert fds() <= before + 2                      # every evicted file closed
        cache.close()
        assert fds() == before
    finally:
        sys.setswitchinterval(interval)
