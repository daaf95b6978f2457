"""The installed ``hedge`` command, run in a subprocess as a user runs it.

Databases are made (and read back) in this process through the API; the
command is the thing under test.  ``check`` gets one test per kind of file
with a flipped bit: a table block, the manifest (first and final record)
and a WAL (a middle and the final record).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hedge
from tests.db.helpers import LEAN, flip_byte, open_db, sst_files, wal_files, wal_record_offsets

HEDGE = Path(sys.executable).with_name("hedge")


def hedge_cmd(*args, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    if not HEDGE.exists():
        pytest.fail(f"{HEDGE} is not installed: run `make setup`")
    return subprocess.run([str(HEDGE), *map(str, args)], input=stdin, capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})})


def ok(*args, stdin: bytes | None = None) -> str:
    """Run a command that must succeed; return its stdout as text."""
    proc = hedge_cmd(*args, stdin=stdin)
    assert proc.returncode == 0, f"hedge {args} exited {proc.returncode}: {proc.stderr.decode()}"
    return proc.stdout.decode()


def fails(*args, status: int = 1) -> str:
    """Run a command that must fail with ``status`` and one line on stderr,
    no traceback; return that line."""
    proc = hedge_cmd(*args)
    err = proc.stderr.decode()
    assert proc.returncode == status, f"hedge {args} exited {proc.returncode}: {err}"
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    return err


def make_db(path, io_method: str = "sync", pairs=None, flush: bool = True, **options) -> None:
    with open_db(path, io_method, **options) as db:
        for key, value in (pairs or {}).items():
            db.put(key, value)
        if flush:
            db.flush()


def read_db(path) -> dict:
    with hedge.open(str(path), create=False, **LEAN) as db:
        return dict(db.scan())


# -- the data commands ----------------------------------------------------------------
def test_help_and_version():
    out = ok("--help")
    for command in ("stats", "get", "put", "remove", "scan", "check", "dump", "compact", "checkpoint", "repair",
                    "bench"):
        assert command in out
    assert ok("--version").strip() == f"hedge {hedge.__version__}"
    fails("nonsense", status=2)
    fails("scan", status=2)               # DB missing
    fails("scan", "db", "--limit", "x", status=2)


def test_put_get_remove_on_every_io_method(tmp_path, io_method):
    db = tmp_path / "db"
    assert "no database" in fails("put", db, "k", "v", "--io-method", io_method)   # no --create
    ok("put", "--create", "--io-method", io_method, db, "k", "v")
    ok("put", "--io-method", io_method, "--sync", db, "gone", "x")
    assert ok("get", "--io-method", io_method, db, "k") == "v\n"
    ok("remove", "--io-method", io_method, db, "gone", "never-there")
    assert ok("scan", "--io-method", io_method, db) == "k\tv\n"
    assert read_db(db) == {b"k": b"v"}


def test_binary_keys_and_values(tmp_path):
    db = tmp_path / "db"
    ok("put", "--create", db, "bin", stdin=b"\x00\xff\n")
    ok("put", "-x", db, "6869", "ff00")
    assert read_db(db) == {b"bin": b"\x00\xff\n", b"hi": b"\xff\x00"}
    assert ok("get", db, "bin") == "\\x00\\xff\\n\n"
    assert ok("get", "--output", "hex", db, "bin") == "00ff0a\n"
    assert hedge_cmd("get", "--output", "raw", db, "bin").stdout == b"\x00\xff\n"
    assert ok("get", "-x", db, "6869") == "ff00\n"
    assert "not found: nope" in fails("get", db, "nope")


def test_the_empty_key_as_an_empty_argument(tmp_path, io_method):
    db = tmp_path / "db"
    ok("put", "--create", "--io-method", io_method, db, "", "empty")
    ok("put", "-x", "--io-method", io_method, db, "00", "6e756c")
    assert read_db(db) == {b"": b"empty", b"\x00": b"nul"}
    assert ok("get", "--io-method", io_method, db, "") == "empty\n"
    assert ok("get", "-x", "--io-method", io_method, db, "") == "656d707479\n"
    assert ok("scan", "--io-method", io_method, db).splitlines() == ["\tempty", "\\x00\tnul"]
    assert ok("scan", "-x", "--start", "", "--end", "00", db).splitlines() == ["\t656d707479"]
    assert ok("scan", "--end", "", db) == ""
    ok("remove", "--io-method", io_method, db, "")
    assert "not found: (the empty key)" in fails("get", db, "")
    assert read_db(db) == {b"\x00": b"nul"}


def test_scan_options(tmp_path):
    db = tmp_path / "db"
    pairs = {b"a1": b"1", b"a2": b"2", b"b1": b"3", b"b2": b"4", b"c": b"tab\there", b"\xff\xff": b"5",
             b"\xff\xff\x01": b"6"}
    make_db(db, pairs=pairs)

    def keys(*args):
        return [line.split("\t")[0] for line in ok("scan", db, *args).splitlines()]

    assert ok("scan", db).splitlines() == ["a1\t1", "a2\t2", "b1\t3", "b2\t4", "c\ttab\\there",
                                           "\\xff\\xff\t5", "\\xff\\xff\\x01\t6"]
    assert keys("--prefix", "b") == ["b1", "b2"]
    assert keys("--start", "a2", "--end", "c") == ["a2", "b1", "b2"]
    assert keys("--limit", "2") == ["a1", "a2"]
    assert keys("--reverse") == ["\\xff\\xff\\x01", "\\xff\\xff", "c", "b2", "b1", "a2", "a1"]
    assert keys("--reverse", "--limit", "2", "--prefix", "a") == ["a2", "a1"]
    assert keys("--reverse", "--start", "b", "--end", "c") == ["b2", "b1"]
    assert keys("--prefix", "a", "--start", "a2") == ["a2"]
    assert ok("scan", "--keys-only", "--prefix", "a", db).splitlines() == ["a1", "a2"]
    # A prefix of 0xff bytes has no end bound: it runs to the last key.
    assert ok("scan", "-x", "--prefix", "ffff", db).splitlines() == ["ffff\t35", "ffff01\t36"]
    assert "is not hex digits" in fails("scan", "-x", "--prefix", "zz", db)


def test_scan_into_a_closed_pipe_stops_quietly(tmp_path):
    db = tmp_path / "db"
    make_db(db, pairs={b"k%05d" % i: b"v" * 100 for i in range(3000)})   # far more than a pipe holds
    proc = subprocess.Popen([str(HEDGE), "scan", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"k00000\t" + b"v" * 100 + b"\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_scan_reverse_streams_from_the_end(tmp_path):
    """--reverse --limit 1 reads the last blocks only: a damaged first block
    of the table, which a forward scan trips on, is never read."""
    db = tmp_path / "db"
    make_db(db, pairs={b"k%05d" % i: b"v" * 100 for i in range(3000)})
    (table,) = sst_files(db)
    flip_byte(table, 50)
    assert ok("scan", "--reverse", "--limit", "2", db) == "k02999\t" + "v" * 100 + "\nk02998\t" + "v" * 100 + "\n"
    assert "checksum" in fails("scan", "--limit", "2", db)


def test_stats(tmp_path):
    db = tmp_path / "db"
    make_db(db, pairs={b"k%03d" % i: b"v" for i in range(100)})
    text = ok("stats", db)
    assert "L0" in text and "io method" in text and "total      1" in text
    stats = json.loads(ok("stats", "--json", db))
    assert stats["levels"][0]["files"] == 1


def test_reading_commands_open_read_only_beside_other_readers(tmp_path):
    db = tmp_path / "db"
    make_db(db, pairs={b"k%03d" % i: b"v" for i in range(10)}, flush=False)     # in the WAL only
    before = sorted(os.listdir(db))
    with hedge.open(str(db), read_only=True, **LEAN) as reader:
        assert ok("get", db, "k003") == "v\n"
        assert ok("scan", db, "--limit", "2") == "k000\tv\nk001\tv\n"
        assert json.loads(ok("stats", "--json", db))["memtable_entries"] == 10
        assert "already open" in fails("put", db, "k", "v")
        assert "already open" in fails("compact", db)
        assert reader.get(b"k009") == b"v"
    assert sorted(os.listdir(db)) == before             # nothing written, the WAL not even flushed


def test_errors_are_one_line(tmp_path):
    db = tmp_path / "db"
    assert "no database" in fails("get", tmp_path / "missing", "k")
    make_db(db, pairs={b"k": b"v"})
    with hedge.open(str(db), create=False, **LEAN):
        assert "open for writing" in fails("get", db, "k")
        assert "already open" in fails("put", db, "k", "v")
        assert "is open" in fails("check", db)
    assert "not hex" in fails("get", "-x", db, "xyz")
    assert "no hedge database" in fails("check", tmp_path)
    assert "does not exist" in fails("check", tmp_path / "missing")
    assert "is a directory" in fails("dump", db)
    assert "not named like" in fails("dump", db / "LOCK")
    assert "No such file" in fails("dump", tmp_path / "000001.sst")
    assert "No such file" in fails("dump", tmp_path / "000001.wal")


def test_compact(tmp_path):
    db = tmp_path / "db"
    no_compaction = dict(l0_compaction_trigger=20, l0_slowdown_trigger=20, l0_stop_trigger=20)
    with open_db(db, "sync", **no_compaction) as h:
        for round_ in range(5):
            for i in range(50):
                h.put(b"k%03d" % i, b"%d" % round_)
            h.flush()
        assert h.stats()["levels"][0]["files"] == 5
    assert ok("compact", db).startswith("compacted: ")
    with hedge.open(str(db), create=False, **LEAN, **no_compaction) as h:
        levels = [lv["files"] for lv in h.stats()["levels"]]
        assert levels[0] < 5 and sum(levels[1:]) >= 1, levels
        assert dict(h.scan()) == {b"k%03d" % i: b"4" for i in range(50)}


def test_compact_a_key_range(tmp_path):
    db = tmp_path / "db"
    manual = dict(l0_compaction_trigger=20, l0_slowdown_trigger=20, l0_stop_trigger=20)
    with open_db(db, "sync", **manual) as h:
        for prefix in (b"a", b"m", b"m"):                # below the default L0 trigger the command opens with
            for i in range(50):
                h.put(prefix + b"%03d" % i, prefix)
            h.flush()
    tables = {p.name for p in db.glob("*.sst")}
    out = ok("compact", db, "--start", "m", "--end", "m999")
    assert out.startswith("compacted: files per level L0:3 -> L0:1 L1:1"), out
    left = {p.name for p in db.glob("*.sst")}
    assert len(tables & left) == 1                       # the a table is untouched
    ok("compact", db, "-x", "--start", b"a".hex())        # a..: everything down to L1
    with hedge.open(str(db), create=False, **LEAN, **manual) as h:
        assert [h.property(f"hedge.num-files-at-level{n}") for n in (0, 1)] == [0, 2]
        assert h.get(b"m007") == b"m" and len(dict(h.scan())) == 100
    assert "not hex" in fails("compact", db, "-x", "--start", "zz")
    assert "above its end" in fails("compact", db, "--start", "z", "--end", "a")


def test_checkpoint(tmp_path, io_method):
    db = tmp_path / "db"
    make_db(db, io_method, pairs={b"k%02d" % i: b"v" for i in range(20)}, flush=True)
    with open_db(db, io_method) as h:
        h.put(b"mem", b"in the WAL only")
    out = ok("checkpoint", "--io-method", io_method, db, tmp_path / "ckpt")
    assert "ckpt" in out
    assert read_db(tmp_path / "ckpt") == read_db(db)
    assert read_db(tmp_path / "ckpt")[b"mem"] == b"in the WAL only"
    assert "not empty" in fails("checkpoint", db, tmp_path / "ckpt")
    assert "no database" in fails("checkpoint", tmp_path / "none", tmp_path / "other")
    assert not (tmp_path / "other").exists()


# -- check ------------------------------------------------------------------------------
def db_with_every_file(path) -> None:
    """A closed database with a table, a manifest of several edits and a WAL
    of several records."""
    with open_db(path, "sync") as db:
        for i in range(400):
            db.put(b"key%04d" % i, b"value %d" % i)
        db.flush()
        db.put(b"late1", b"x")
        db.put(b"late2", b"y")
        db.put(b"late3", b"z")


def manifest_of(path) -> Path:
    return Path(path) / (Path(path) / "CURRENT").read_text().strip()


def check_damaged(path, file_name: str) -> str:
    proc = hedge_cmd("check", path)
    out = proc.stdout.decode()
    assert proc.returncode == 1, out + proc.stderr.decode()
    assert out.splitlines()[-1].startswith("DAMAGED"), out
    assert any(line.startswith(file_name) for line in out.splitlines()), out
    return out


def test_check_a_sound_database(tmp_path, io_method):
    db = tmp_path / "db"
    with open_db(db, io_method) as h:
        for i in range(400):
            h.put(b"key%04d" % i, b"value %d" % i)
        h.flush()
        h.put(b"late", b"x")
    out = ok("check", db)
    assert len(out.splitlines()) == 1
    assert out.startswith("sound: ") and "1 tables" in out and "400 entries" in out and "1 writes" in out


def test_check_finds_a_flipped_bit_in_a_table_block(tmp_path):
    db = tmp_path / "db"
    db_with_every_file(db)
    (table,) = sst_files(db)
    flip_byte(table, 40)            # inside the first data block
    out = check_damaged(db, os.path.basename(table))
    assert "checksum" in out


def test_check_finds_a_flipped_bit_in_a_table_footer(tmp_path):
    db = tmp_path / "db"
    db_with_every_file(db)
    (table,) = sst_files(db)
    flip_byte(table, os.path.getsize(table) - 20)
    check_damaged(db, os.path.basename(table))


@pytest.mark.parametrize("record", ["first", "last"])
def test_check_finds_a_flipped_bit_in_the_manifest(tmp_path, record):
    db = tmp_path / "db"
    db_with_every_file(db)
    manifest = manifest_of(db)
    offsets = wal_record_offsets(str(manifest))
    assert len(offsets) >= 2
    flip_byte(str(manifest), offsets[0 if record == "first" else -1] + 30)
    check_damaged(db, manifest.name)


@pytest.mark.parametrize("record", ["middle", "last"])
def test_check_finds_a_flipped_bit_in_the_wal(tmp_path, record):
    db = tmp_path / "db"
    db_with_every_file(db)
    (wal,) = wal_files(db)
    offsets = wal_record_offsets(wal)
    assert len(offsets) == 3
    flip_byte(wal, offsets[1 if record == "middle" else -1] + 30)
    out = check_damaged(db, os.path.basename(wal))
    if record == "last":
        assert "torn final record" in out


def test_check_finds_a_missing_table(tmp_path):
    db = tmp_path / "db"
    db_with_every_file(db)
    (table,) = sst_files(db)
    os.unlink(table)
    assert "missing" in check_damaged(db, os.path.basename(table))


# -- dump -------------------------------------------------------------------------------
def test_dump_each_kind_of_file(tmp_path):
    db = tmp_path / "db"
    with open_db(db, "sync") as h:
        h.put(b"a", b"1")
        h.put(b"b", b"2")
        h.flush()
        batch = hedge.WriteBatch()
        batch.put(b"c", b"3")
        batch.remove(b"a")
        h.write(batch)
    (table,) = sst_files(db)
    (wal,) = wal_files(db)
    lines = ok("dump", table).splitlines()
    assert lines[0].startswith("# table") and lines[1:] == ["a\t1\tPUT\t1", "b\t2\tPUT\t2"]
    lines = ok("dump", wal).splitlines()
    assert [line.split("\t")[1:] for line in lines[1:]] == [["3", "PUT", "c", "3"], ["4", "DELETE", "a"]]
    assert len(ok("dump", "--limit", "1", wal).splitlines()) == 2
    lines = ok("dump", manifest_of(db)).splitlines()
    assert any(f"add L0 {os.path.basename(table)}" in line for line in lines[1:]), lines
    copy = tmp_path / "renamed"
    copy.write_bytes(Path(table).read_bytes())
    assert ok("dump", "--kind", "sst", "-x", copy).splitlines()[1:] == ["61\t1\tPUT\t31", "62\t2\tPUT\t32"]

    flip_byte(wal, wal_record_offsets(wal)[0] + 30)
    assert "corruption" in fails("dump", wal)


# -- bench ------------------------------------------------------------------------------
def test_bench_runs_the_ycsb_driver(tmp_path):
    assert "--workloads" in ok("bench", "--help")
    out = ok("bench", "--stores", "hedge", "--workloads", "C", "--records", "200", "--operations", "200",
             "--clients", "2", "--no-plots", "--progress", "never", "--results", tmp_path / "results")
    assert "hedge" in out
    assert (tmp_path / "results" / "results.json").exists()
