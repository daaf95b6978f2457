"""The ``compression`` option end to end: round trips on every I/O method
through the blocking API and db.aio, tables written under one setting read
and compacted under the other, the same workload giving the same answers
with compression on and off, compaction in the worker process, checkpoints,
repair, corruption found by reads and by ``hedge check``, ``hedge dump`` of
a compressed table, and bad option values refused before anything is made."""
from __future__ import annotations

import asyncio
import json
import os
import random

import pytest

import hedge
from hedge.errors import CorruptionError
from hedge.lsm.compression import RAW, ZSTD, stored_type
from hedge.offline import TableFile
from hedge.lsm.table.format import COMPRESSED_FORMAT_VERSION, FORMAT_VERSION
from tests.db.helpers import SMALL, flip_byte, model_scan, open_db, sst_files
from tests.db.test_open_options import _direct_supported
from tests.test_cli import hedge_cmd, ok

pytestmark = pytest.mark.timeout(240)


def doc(i: int, version: int = 0) -> bytes:
    """A value that compresses (JSON with repeated field names)."""
    return json.dumps({"id": i, "version": version, "name": "alpha bravo charlie", "tags": ["x", "y"] * 3,
                       "score": i * 7 % 1000}).encode()


def table_versions(path) -> list[int]:
    versions = []
    for table in sst_files(path):
        with TableFile(table) as f:
            versions.append(f.reader.footer.version)
    return versions


def fill(db, n: int, version: int = 0) -> dict:
    model = {}
    batch = hedge.WriteBatch()
    for i in range(n):
        key = b"key%06d" % i
        batch.put(key, doc(i, version))
        model[key] = doc(i, version)
    db.write(batch)
    return model


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_round_trip_through_the_blocking_api(tmp_path, io_method, compression):
    path = tmp_path / "db"
    with open_db(path, io_method, compression=compression, **SMALL) as db:
        model = fill(db, 1500)
        for i in range(0, 1500, 3):
            db.remove(b"key%06d" % i)
            model.pop(b"key%06d" % i)
        db.flush()
        db.compact()
        keys = [b"key%06d" % i for i in range(0, 1500, 11)]
        assert db.multi_get(keys) == [model.get(k) for k in keys]
        assert list(db.scan()) == model_scan(model)
    assert set(table_versions(path)) == {COMPRESSED_FORMAT_VERSION if compression == "zstd" else FORMAT_VERSION}
    with open_db(path, io_method, compression=compression, block_cache_bytes=0) as db:
        assert [k for k in model if db.get(k) != model[k]] == []
        assert list(db.scan(b"key000100", b"key000200")) == model_scan(model, b"key000100", b"key000200")


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_round_trip_through_db_aio(tmp_path, io_method, compression):
    path = tmp_path / "db"
    with open_db(path, io_method, compression=compression, **SMALL) as db:
        async def main():
            model = {}
            for i in range(800):
                await db.aio.put(b"key%06d" % i, doc(i))
                model[b"key%06d" % i] = doc(i)
            await db.aio.remove(b"key000005")
            model.pop(b"key000005")
            await db.aio.flush()
            await db.aio.compact()
            keys = [b"key%06d" % i for i in range(0, 800, 7)]
            assert await db.aio.multi_get(keys) == [model.get(k) for k in keys]
            assert [kv async for kv in db.aio.scan()] == model_scan(model)
            assert await db.aio.get(b"key000005") is None
            return True

        assert asyncio.run(main())
    if compression == "zstd":
        assert set(table_versions(path)) == {COMPRESSED_FORMAT_VERSION}


def test_tables_of_both_settings_open_and_compact_under_either(tmp_path, io_method):
    path = tmp_path / "db"
    big = dict(SMALL, memtable_bytes=1 << 20, table_bytes=1 << 20, level1_bytes=1 << 20, l0_compaction_trigger=8,
               l0_slowdown_trigger=20, l0_stop_trigger=24)
    with open_db(path, io_method, compression="none", **big) as db:
        model = fill(db, 600)
        db.flush()
    with open_db(path, io_method, compression="zstd", **big) as db:
        assert list(db.scan()) == model_scan(model)
        for i in range(300, 900):
            db.put(b"key%06d" % i, doc(i, 1))
            model[b"key%06d" % i] = doc(i, 1)
        db.flush()
        assert sorted(set(table_versions(path))) == [FORMAT_VERSION, COMPRESSED_FORMAT_VERSION]
        assert list(db.scan()) == model_scan(model)
        db.compact(b"key", None)            # merges every table of the range
        assert set(table_versions(path)) == {COMPRESSED_FORMAT_VERSION}
        assert list(db.scan()) == model_scan(model)
    with open_db(path, io_method, compression="none", **big) as db:
        assert [k for k in model if db.get(k) != model[k]] == []
        for i in range(0, 900, 2):          # overlaps the whole compressed table
            db.put(b"key%06d" % i, doc(i, 2))
            model[b"key%06d" % i] = doc(i, 2)
        db.flush()
        db.compact(b"key", None)
        assert list(db.scan()) == model_scan(model)
    assert set(table_versions(path)) == {FORMAT_VERSION}


def run_workload(path, io_method: str, compression: str, seed: int) -> tuple[list, list[int]]:
    """A random mix of puts (compressible and random values), removes and
    batches over a tree of several levels; returns what scans and gets see
    (along the way, after a compaction and after a reopen) and the format
    versions of the tables left."""
    rng = random.Random(seed)
    seen = []
    with open_db(path, io_method, compression=compression, **SMALL) as db:
        for step in range(2500):
            key = b"k%05d" % rng.randrange(1200)
            roll = rng.random()
            if roll < 0.6:
                db.put(key, doc(step) if rng.random() < 0.7 else rng.randbytes(rng.randrange(0, 600)))
            elif roll < 0.8:
                db.remove(key)
            else:
                batch = hedge.WriteBatch()
                for _ in range(5):
                    batch.put(b"k%05d" % rng.randrange(1200), rng.randbytes(40))
                batch.remove(b"k%05d" % rng.randrange(1200))
                db.write(batch)
            if step % 500 == 499:
                seen.append(list(db.scan()))
                seen.append(db.multi_get([b"k%05d" % i for i in range(0, 1200, 13)]))
        db.compact()
        seen.append(list(db.scan()))
    with open_db(path, io_method, compression=compression, **SMALL) as db:
        seen.append(list(db.scan(b"k00100", b"k00900")))
        seen.append([db.get(b"k%05d" % i) for i in range(1200)])
    return seen, table_versions(path)


@pytest.mark.parametrize("seed", [1, 2])
def test_same_workload_gives_identical_results_with_compression_on_and_off(tmp_path, io_method, seed):
    off, off_versions = run_workload(tmp_path / "off", io_method, "none", seed)
    on, on_versions = run_workload(tmp_path / "on", io_method, "zstd", seed)
    assert on == off
    assert set(off_versions) == {FORMAT_VERSION} and set(on_versions) == {COMPRESSED_FORMAT_VERSION}


def test_direct_io_reads_compressed_tables_through_page_aligned_spans(tmp_path, io_method):
    if not _direct_supported(tmp_path):
        pytest.skip(f"the file system of {tmp_path} does not support O_DIRECT")
    path = tmp_path / "db"
    with open_db(path, io_method, compression="zstd", memtable_bytes=64 << 10) as db:
        model = {}
        for i in range(3000):
            value = doc(i) if i >= 1500 else os.urandom(300)    # blocks stored raw, then zstd
            db.put(b"key%06d" % i, value)
            model[b"key%06d" % i] = value
        db.compact(b"key", None)
    types = set()
    for table in sst_files(path):
        with TableFile(table) as f, open(table, "rb") as raw:
            data = raw.read()
            types |= {stored_type(data[offset:offset + length]) for offset, length in f.block_ranges()}
    assert types == {RAW, ZSTD}
    with open_db(path, io_method, direct_io=True, block_cache_bytes=64 << 10) as db:
        assert [k for k in model if db.get(k) != model[k]] == []
        assert list(db.scan()) == model_scan(model)
        assert db.stats()["cache"]["misses"] > 0


def test_cache_holds_decoded_blocks_of_compressed_tables(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method, compression="zstd", block_cache_bytes=8 << 20) as db:
        model = fill(db, 3000)
        db.flush()
        stored = sum(os.path.getsize(p) for p in sst_files(path))
        assert list(db.scan()) == model_scan(model)
        cache = db.stats()["cache"]
        # Every block is in the cache decoded: larger than the whole file.
        assert cache["bytes"] > stored
        hits = cache["hits"]
        assert [db.get(k) for k in model] == list(model.values())
        cache = db.stats()["cache"]
        assert cache["hits"] - hits == len(model)


def test_compaction_in_the_worker_process_writes_with_the_option(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method, compression="zstd", **dict(SMALL, compaction_process=True)) as db:
        model = {}
        for i in random.Random(5).sample(range(1500), 1500):     # overlapping tables: real merges
            db.put(b"key%06d" % i, doc(i))
            model[b"key%06d" % i] = doc(i)
        db.compact(b"key", None)
        stats = db.stats()["compaction"]
        assert stats["count"] > 0 and stats["worker_pid"] is not None
        assert list(db.scan()) == model_scan(model)
    assert set(table_versions(path)) == {COMPRESSED_FORMAT_VERSION}


def test_checkpoint_of_a_compressed_database(tmp_path, io_method):
    with open_db(tmp_path / "db", io_method, compression="zstd", **SMALL) as db:
        model = fill(db, 1000)
        db.flush()
        db.put(b"unflushed", b"1")
        model[b"unflushed"] = b"1"
        db.checkpoint(tmp_path / "copy")
    assert set(table_versions(tmp_path / "copy")) == {COMPRESSED_FORMAT_VERSION}
    with open_db(tmp_path / "copy", io_method, compression="none") as copy:
        assert list(copy.scan()) == model_scan(model)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_recovery_writes_the_replayed_wal_as_a_table_of_the_option(tmp_path, io_method, compression):
    path = tmp_path / "db"
    with open_db(path, io_method, compression="zstd" if compression == "none" else "none") as db:
        model = fill(db, 300)                       # only in the WAL: close does not flush
    assert sst_files(path) == []
    with open_db(path, io_method, compression=compression) as db:
        assert list(db.scan()) == model_scan(model)
    expected = COMPRESSED_FORMAT_VERSION if compression == "zstd" else FORMAT_VERSION
    assert table_versions(path) == [expected]


@pytest.mark.parametrize("written, repaired", [("zstd", "zstd"), ("zstd", "none"), ("none", "zstd")])
def test_repair_reads_either_format_and_writes_with_its_option(tmp_path, io_method, written, repaired):
    path = tmp_path / "db"
    with open_db(path, io_method, compression=written, **SMALL) as db:
        model = {}
        for i in random.Random(6).sample(range(800), 800):
            db.put(b"key%06d" % i, doc(i))
            model[b"key%06d" % i] = doc(i)
        db.flush()
        db.put(b"only-in-the-wal", b"w")
        model[b"only-in-the-wal"] = b"w"
    for name in os.listdir(path):
        if name == "CURRENT" or name.startswith("MANIFEST"):
            os.unlink(path / name)
    report = hedge.repair(path, io_method=io_method, compression=repaired)
    assert report.entries == len(model)
    expected = COMPRESSED_FORMAT_VERSION if repaired == "zstd" else FORMAT_VERSION
    assert set(table_versions(path)) == {expected}
    with open_db(path, io_method, **SMALL) as db:
        assert list(db.scan()) == model_scan(model)


def test_flipped_byte_in_a_compressed_table_is_a_corruption_error(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method, compression="zstd") as db:
        fill(db, 2000)
        db.flush()
    (table,) = sst_files(path)
    flip_byte(table, 100)                       # inside the first stored block
    with open_db(path, io_method, compression="zstd", block_cache_bytes=0) as db:
        with pytest.raises(CorruptionError) as info:
            list(db.scan())
        assert info.value.file == table and info.value.offset == 0
        with pytest.raises(CorruptionError):
            db.get(b"key000000")
        assert db.get(b"key001999") == doc(1999)       # other blocks still read
    proc = hedge_cmd("check", path)
    out = proc.stdout.decode()
    assert proc.returncode == 1 and out.splitlines()[-1].startswith("DAMAGED"), out
    assert os.path.basename(table) in out and "checksum" in out


def test_check_and_dump_read_compressed_tables(tmp_path):
    path = tmp_path / "db"
    with open_db(path, "sync", compression="zstd") as db:
        model = fill(db, 500)
        db.flush()
    out = ok("check", path)
    assert out.startswith("sound: ") and "500 entries" in out
    (table,) = sst_files(path)
    out = ok("dump", table).splitlines()
    assert out[0].startswith("# table ") and "format 2, compression zstd" in out[0]
    assert len(out) == 1 + len(model)
    assert out[1].startswith("key000000\t")
    with open_db(tmp_path / "plain", "sync") as db:
        fill(db, 10)
        db.flush()
    (table,) = sst_files(tmp_path / "plain")
    assert "format 1, compression none" in ok("dump", table).splitlines()[0]


@pytest.mark.parametrize("value, error, match", [
    ("lz4", ValueError, "compression must be one of \\('none', 'zstd'\\), not 'lz4'"),
    ("ZSTD", ValueError, "compression must be one of"),
    (None, TypeError, "compression must be a str"),
    (1, TypeError, "compression must be a str"),
])
def test_bad_compression_value_is_refused_and_nothing_is_made(tmp_path, value, error, match):
    with pytest.raises(error, match=match):
        hedge.open(tmp_path / "db", compression=value)
    assert not (tmp_path / "db").exists()
    with pytest.raises(error, match=match):
        hedge.Options(compression=value).validate()
