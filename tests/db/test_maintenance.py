"""The maintenance API: compact(start, end) over a key range, on the
blocking API and db.aio; approximate_size; the named properties."""
from __future__ import annotations

import asyncio
import os
import threading

import pytest

import hedge
from hedge.lsm.maintenance import L0_SCAN_MIN
from hedge.lsm import filenames
from tests.db.helpers import SMALL, open_db, sst_files

pytestmark = pytest.mark.timeout(120)

# No compaction unless asked: the shape of the tree is the test's.
MANUAL = dict(l0_compaction_trigger=20, l0_slowdown_trigger=30, l0_stop_trigger=40)


@pytest.fixture(params=["blocking", "aio"])
def api(request) -> str:
    return request.param


def compact(db, api: str, start=None, end=None) -> None:
    if api == "blocking":
        db.compact(start, end)
    else:
        async def main():
            await db.aio.compact(start, end)
        asyncio.run(main())


def names(path) -> set[str]:
    return {os.path.basename(p) for p in sst_files(path)}


def four_l0_tables(db, model: dict) -> list[set[str]]:
    """L0 tables a000..a099, m000..m099, m000..m049 (every other key
    rewritten, m010..m019 removed), x000..x099; the new table names after
    each flush."""
    path = db.directory
    made = []
    for step in ("a", "m", "m2", "x"):
        before = names(path)
        for i in range(100):
            if step == "m2":
                if 10 <= i < 20:
                    db.remove(b"m%03d" % i)
                    model.pop(b"m%03d" % i, None)
                elif i < 50 and i % 2 == 0:
                    db.put(b"m%03d" % i, b"new")
                    model[b"m%03d" % i] = b"new"
            else:
                key = b"%s%03d" % (step.encode(), i)
                db.put(key, b"v" * 40)
                model[key] = b"v" * 40
        db.flush()
        made.append(names(path) - before)
    return made


def test_compact_range_merges_only_the_tables_overlapping_the_range(tmp_path, io_method, api):
    model: dict[bytes, bytes] = {}
    with open_db(tmp_path / "db", io_method, **MANUAL) as db:
        a, m1, m2, x = four_l0_tables(db, model)
        assert db.property("hedge.num-files-at-level0") == 4
        # 100 + 100 + (20 puts + 10 removes - 10 tombstones) + 100.
        assert db.property("hedge.estimate-num-keys") == 100 + 100 + 20 + 100
        compact(db, api, b"m000", b"m099")
        after = names(db.directory)
        assert a <= after and x <= after                # the other tables are untouched
        assert not (m1 | m2) & after                    # both m tables were merged
        assert db.property("hedge.num-files-at-level0") == 2
        assert db.property("hedge.num-files-at-level1") == 1
        # One version per key and no tombstone left (nothing lies below L1).
        assert db.property("hedge.estimate-num-keys") == 100 + 90 + 100
        assert dict(db.scan()) == model

        # A lone table without tombstones moves down without a rewrite.
        compact(db, api, b"a", b"b")
        assert names(db.directory) == after
        assert [db.property(f"hedge.num-files-at-level{n}") for n in (0, 1)] == [1, 2]
        assert dict(db.scan()) == model
    with hedge.open(str(tmp_path / "db"), create=False, io_method=io_method, pin=False, **MANUAL) as db:
        assert dict(db.scan()) == model
        assert db.property("hedge.num-files-at-level1") == 2


def test_compact_range_brings_the_range_down_to_the_deepest_level_holding_it(tmp_path, io_method):
    model: dict[bytes, bytes] = {}
    with open_db(tmp_path / "db", io_method, **MANUAL) as db:
        four_l0_tables(db, model)
        db.compact(b"a", b"z")                          # everything to L1
        assert db.property("hedge.num-files-at-level0") == 0
        for i in range(0, 100, 3):                      # newer data for part of the range, in L0
            db.put(b"m%03d" % i, b"newer")
            model[b"m%03d" % i] = b"newer"
        db.remove(b"a005")
        model.pop(b"a005")
        db.flush()
        assert db.property("hedge.num-files-at-level0") == 1
        db.compact(b"a000", b"m050")
        assert db.property("hedge.num-files-at-level0") == 0
        assert sum(db.property(f"hedge.num-files-at-level{n}") for n in range(2, 7)) == 0
        assert dict(db.scan()) == model
        assert db.get(b"a005") is None and db.get(b"m003") == b"newer"


def test_compact_without_a_range_runs_only_what_is_due(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, **MANUAL) as db:
        four_l0_tables(db, {})
        db.compact()
        assert db.property("hedge.num-files-at-level0") == 4     # below the trigger: nothing due


def test_scans_that_paid_for_l0_compact_it_below_the_trigger(tmp_path, io_method, api):
    model: dict[bytes, bytes] = {}
    with open_db(tmp_path / "db", io_method, **MANUAL) as db:
        four_l0_tables(db, model)
        db.compact(b"a", b"z")                          # everything to L1
        for i in range(0, 100, 7):                      # newer data in one L0 table
            db.put(b"m%03d" % i, b"newer")
            model[b"m%03d" % i] = b"newer"
        db.flush()
        assert db.property("hedge.num-files-at-level0") == 1
        expected = sorted(model.items())[95:100]
        for _ in range(L0_SCAN_MIN - 1):                # a small table: the least a budget can be
            assert list(db.scan(expected[0][0], limit=5)) == expected
        compact(db, api)                                # waits until nothing is due
        assert db.property("hedge.num-files-at-level0") == 1
        assert list(db.scan(expected[0][0], limit=5)) == expected      # the scan that pays
        compact(db, api)
        assert db.property("hedge.num-files-at-level0") == 0
        assert db.stats()["compaction"]["count"] >= 2
        assert dict(db.scan()) == model
        assert db.get(b"m007") == b"newer"


def test_scans_leave_l0_alone_when_told_to(tmp_path, io_method):
    model: dict[bytes, bytes] = {}
    with open_db(tmp_path / "db", io_method, l0_scan_compaction=False, **MANUAL) as db:
        four_l0_tables(db, model)
        for _ in range(2 * L0_SCAN_MIN):
            assert dict(db.scan(b"m000", limit=3)) == dict(sorted(model.items())[100:103])
        db.compact()
        assert db.property("hedge.num-files-at-level0") == 4


def test_a_compactions_inputs_stay_on_disk_until_their_last_reader_goes(tmp_path, io_method):
    """A scan holding an older version reads the tables a compaction dropped
    to its end; the maintenance task unlinks them only once the scan lets go
    (the last close of an unlinked file frees its blocks, which must not
    happen on the thread that ends the scan), woken by its release timer."""
    model: dict[bytes, bytes] = {}
    with open_db(tmp_path / "db", io_method, **MANUAL) as db:
        inputs = set().union(*four_l0_tables(db, model))
        scan = db.scan()
        first = next(scan)
        compact(db, "blocking", b"a", b"z")             # everything to L1
        assert db.property("hedge.num-files-at-level0") == 0
        outputs = names(db.directory) - inputs
        assert outputs and inputs <= names(db.directory)    # still held by the scan
        assert [first, *scan] == sorted(model.items())
        del scan
        engine = db._engine
        db.run(engine.changed.wait_for(lambda: not inputs & names(db.directory)))
        assert names(db.directory) == outputs
        assert dict(db.scan()) == model


def test_inputs_still_held_at_close_are_removed_at_the_next_open(tmp_path, io_method):
    model: dict[bytes, bytes] = {}
    path = tmp_path / "db"
    with open_db(path, io_method, **MANUAL) as db:
        inputs = set().union(*four_l0_tables(db, model))
        scan = db.scan()
        next(scan)
        compact(db, "blocking", b"a", b"z")
        outputs = names(path) - inputs
    assert inputs <= names(path)                        # the scan held them past close
    del scan
    with hedge.open(str(path), create=False, io_method=io_method, pin=False, **MANUAL) as db:
        assert names(path) == outputs
        assert dict(db.scan()) == model


def test_tables_dropped_under_concurrent_scans_leave_no_file_and_no_descriptor(tmp_path, io_method):
    """A small tree that keeps compacting while another thread scans it
    over and over (each scan holding the version it started on): after
    close no descriptor is left open, and the directory holds exactly the
    live tables, before and after reopening."""
    fds = len(os.listdir("/proc/self/fd"))
    path = tmp_path / "db"
    model: dict[bytes, bytes] = {}
    stop = threading.Event()
    errors: list[BaseException] = []
    with hedge.open(str(path), create=True, io_method=io_method, **SMALL) as db:
        def scanner():
            try:
                while not stop.is_set():
                    for _pair in db.scan():
                        pass
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        thread = threading.Thread(target=scanner)
        thread.start()
        try:
            for i in range(800):
                key = b"k%04d" % (i * 7 % 500)
                db.put(key, b"v%d" % i + b"x" * 40)
                model[key] = b"v%d" % i + b"x" * 40
        finally:
            stop.set()
            thread.join()
        db.compact()
        assert db.stats()["compaction"]["count"] > 0
        live = {filenames.table_name(n) for n in db._engine._sv.version.all_file_numbers()}
    assert not errors
    assert len(os.listdir("/proc/self/fd")) == fds
    assert names(path) == live
    with hedge.open(str(path), create=False, io_method=io_method, pin=False, **MANUAL) as db:
        assert names(path) == live
        assert dict(db.scan()) == model


def test_compact_range_checks_its_bounds(tmp_path):
    with open_db(tmp_path / "db", "sync") as db:
        with pytest.raises(ValueError):
            db.compact(b"z", b"a")
        with pytest.raises(TypeError):
            db.compact("a")
        with pytest.raises(ValueError):
            db.aio.compact(b"z", b"a")
        assert db.run(db.aio.compact(b"a", b"b")) is None     # in a hedge task too
        db.close()
        with pytest.raises(hedge.ClosedError):
            db.compact(b"a", b"b")


def test_approximate_size_counts_table_blocks_in_the_range_and_memtables(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, **MANUAL) as db:
        for i in range(2000):
            db.put(b"k%05d" % i, b"v" * 100)
        db.flush()
        total = db.property("hedge.total-table-bytes")
        assert total > 2000 * 100
        assert db.approximate_size() == total
        assert db.approximate_size(None, None, include_memtables=False) == total
        half = db.approximate_size(b"k00000", b"k01000")
        assert 0.35 * total < half < 0.65 * total, (half, total)
        tenth = db.approximate_size(b"k00500", b"k00700")
        assert 0.05 * total < tenth < 0.15 * total, (tenth, total)
        assert db.approximate_size(b"z", None) == 0
        assert db.approximate_size(b"a", b"b") == 0
        assert db.approximate_size(b"k01000", b"k01000") == 0

        assert db.property("hedge.memtable-bytes") == 0
        for i in range(100):
            db.put(b"n%03d" % i, b"w" * 100)
        mem = db.property("hedge.memtable-bytes")
        assert mem >= 100 * 100
        assert db.approximate_size(b"n", b"o") == mem
        assert db.approximate_size(b"n", b"o", include_memtables=False) == 0
        assert 0.4 * mem <= db.approximate_size(b"n050", b"o") <= 0.6 * mem
        assert db.approximate_size() == total + mem
        with pytest.raises(ValueError):
            db.approximate_size(b"b", b"a")


def test_properties_agree_with_stats(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, **MANUAL) as db:
        assert db.property("hedge.num-files") == 0
        assert db.property("hedge.space-amplification") == 0.0
        assert db.property("hedge.write-amplification") == 0.0
        four_l0_tables(db, {})
        db.compact(b"m", b"n")
        stats = db.stats()
        levels = stats["levels"]
        for n in range(7):
            assert db.property(f"hedge.num-files-at-level{n}") == levels[n]["files"]
            assert db.property(f"hedge.bytes-at-level{n}") == levels[n]["bytes"]
        total = sum(lv["bytes"] for lv in levels)
        assert db.property("hedge.num-files") == 3
        assert db.property("hedge.total-table-bytes") == total
        assert db.property("hedge.space-amplification") == pytest.approx(total / levels[1]["bytes"])
        assert db.property("hedge.write-amplification") == pytest.approx(
            stats["compaction"]["write_amplification"])
        assert db.property("hedge.write-amplification") > 1.0      # four flushes and a merge
        assert db.property("hedge.last-sequence") == stats["last_seq"] == 100 + 100 + 30 + 100
        assert db.property("hedge.num-immutable-memtables") == 0
        for bad in ("hedge.nothing", "hedge.num-files-at-level7", "leveldb.stats"):
            with pytest.raises(ValueError, match="unknown property|levels are"):
                db.property(bad)
        with pytest.raises(TypeError):
            db.property(b"hedge.num-files")


def test_compact_range_merges_in_the_worker_process_too(tmp_path, io_method):
    model: dict[bytes, bytes] = {}
    with open_db(tmp_path / "db", io_method, compaction_process=True, **MANUAL) as db:
        a, m1, m2, x = four_l0_tables(db, model)
        db.compact(b"m", b"n")
        assert db.stats()["compaction"]["worker_pid"] is not None
        after = names(db.directory)
        assert a | x <= after and not (m1 | m2) & after
        assert db.property("hedge.estimate-num-keys") == 100 + 90 + 100
        assert dict(db.scan()) == model
