"""Inline block reads (Options.inline_reads): a get whose block the OS page
cache holds reads it on its own thread and never suspends; one the page
cache lacks reads it through the ring; an O_DIRECT table never reads in
place; an I/O error of an inline read reaches the caller as HedgeIOError
and changes nothing.  The answers are those of the ring path (the
differential run is in test_block_cache.py)."""
from __future__ import annotations

import errno
import os

import pytest

from hedge.errors import HedgeIOError
from hedge.io import faults
from hedge.lsm.lookup import NeedsIO
from tests.db.helpers import open_db, sst_files
from tests.db.test_open_options import _direct_supported

pytestmark = pytest.mark.timeout(120)

KEYS = [b"key%05d" % i for i in range(2000)]


def _table_db(path, io_method, **options):
    """A database whose KEYS (value: the key reversed) are all in tables and
    whose block cache is off, so every table get needs its block read."""
    db = open_db(path, io_method, block_cache_bytes=0, **options)
    for k in KEYS:
        db.put(k, k[::-1])
    db.flush()
    return db


def _inline(db) -> tuple[int, int]:
    stats = db.stats()["table_cache"]
    return stats["inline_reads"], stats["inline_fallbacks"]


def _evict_tables(path) -> None:
    """Ask the kernel to drop every table's pages from the page cache (it
    may keep them: tmpfs does)."""
    for name in sst_files(path):
        fd = os.open(name, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def test_a_get_whose_block_the_page_cache_holds_does_not_suspend(tmp_path, io_method):
    with _table_db(tmp_path / "db", io_method) as db:
        engine = db._engine
        before = _inline(db)
        values = engine.multi_get_now(KEYS)
        assert not [v for v in values if type(v) is NeedsIO]
        assert values == [k[::-1] for k in KEYS]
        reads, fallbacks = _inline(db)
        assert reads - before[0] >= len(KEYS) and fallbacks == before[1]


def test_with_inline_reads_off_every_table_get_reads_through_the_ring(tmp_path, io_method):
    with _table_db(tmp_path / "db", io_method, inline_reads=False) as db:
        values = db._engine.multi_get_now(KEYS)
        assert all(type(v) is NeedsIO for v in values)
        assert db.multi_get(KEYS) == [k[::-1] for k in KEYS]
        assert _inline(db) == (0, 0)


def test_a_block_the_page_cache_lacks_is_read_through_the_ring(tmp_path, io_method):
    path = tmp_path / "db"
    with _table_db(path, io_method) as db:
        engine = db._engine
        _evict_tables(path)
        reads, fallbacks = _inline(db)
        first = engine.get_now(KEYS[0])
        if type(first) is not NeedsIO:
            pytest.skip("this file system keeps the tables' pages whatever is asked")
        assert _inline(db) == (reads, fallbacks + 1)
        assert db.run(first.finish()) == KEYS[0][::-1]
        # Read through the ring, the block is in the page cache again.
        assert engine.get_now(KEYS[0]) == KEYS[0][::-1]
        assert _inline(db)[0] == reads + 1
        assert db.multi_get(KEYS) == [k[::-1] for k in KEYS]


def test_an_o_direct_table_is_never_read_in_place(tmp_path, io_method):
    if not _direct_supported(tmp_path):
        pytest.skip(f"the file system of {tmp_path} does not support O_DIRECT")
    path = tmp_path / "db"
    db = open_db(path, io_method, direct_io=True, block_cache_bytes=4096)
    with db:
        for k in KEYS:
            db.put(k, k[::-1])
        db.flush()
        assert db.multi_get(KEYS) == [k[::-1] for k in KEYS]
        assert _inline(db) == (0, 0)


def test_an_io_error_of_an_inline_read_reaches_the_caller_and_changes_nothing(tmp_path, io_method):
    with _table_db(tmp_path / "db", io_method) as db:
        reads = _inline(db)[0]
        with faults.inject("read", errno.EIO, path_contains=".sst", times=1):
            with pytest.raises(HedgeIOError) as raised:
                db.get(KEYS[7])
        assert raised.value.errno == errno.EIO and raised.value.op == "read"
        assert _inline(db)[0] == reads                  # the failed read is not counted
        assert db.get(KEYS[7]) == KEYS[7][::-1]
        db.put(b"after", b"1")                          # not a background error: writes go on
        assert db.get(b"after") == b"1"
        assert db.stats()["background_error"] is None


def test_a_scan_reads_its_blocks_in_place_or_through_the_ring(tmp_path, io_method):
    path = tmp_path / "db"
    expected = [(k, k[::-1]) for k in KEYS]
    with _table_db(path, io_method) as db:
        reads = _inline(db)[0]
        assert list(db.scan()) == expected
        assert _inline(db)[0] > reads                   # the page cache held the tables
        _evict_tables(path)
        fallbacks = _inline(db)[1]
        assert list(db.scan(KEYS[100])) == expected[100:]
        assert list(db.scan(reverse=True)) == expected[::-1]
        if _inline(db)[1] == fallbacks:
            pytest.skip("this file system keeps the tables' pages whatever is asked")


def test_with_inline_reads_off_a_scan_reads_through_the_ring(tmp_path, io_method):
    with _table_db(tmp_path / "db", io_method, inline_reads=False) as db:
        assert list(db.scan()) == [(k, k[::-1]) for k in KEYS]
        assert _inline(db) == (0, 0)


def test_reads_the_gate_skips_go_through_the_ring(tmp_path, io_method):
    """After page-cache misses the gate asks for one read in ``skip``; the
    others go straight to the ring and answer the same."""
    with _table_db(tmp_path / "db", io_method) as db:
        db._engine.tables.inline_gate.skip = 4          # as after a window of misses
        assert db.stats()["table_cache"]["inline_skip"] == 4
        reads, fallbacks = _inline(db)
        values = db._engine.multi_get_now(KEYS[:200])
        assert sum(type(v) is NeedsIO for v in values) == 150
        assert _inline(db) == (reads + 50, fallbacks)
        assert db.run(db._engine.finish_gets(values)) == [k[::-1] for k in KEYS[:200]]
