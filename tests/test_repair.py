"""``hedge.repair``: a manifest rebuilt from the tables and WALs present.
Lost manifest and CURRENT -> every entry back; a damaged table moved into
lost/ and the rest readable; a damaged WAL's good prefix kept; duplicated
tables and WALs (what a crash mid-compaction or mid-flush leaves) merged
once; an open database, a directory that holds no database and a bad
option refused with nothing changed; and the ``hedge repair`` command."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hedge
from hedge.lsm import filenames
from hedge.lsm.wal import RecordType, encode_record
from hedge.offline import TableFile
from hedge.repair import LOST
from tests.db.helpers import LEAN, SMALL, flip_byte, open_db, sst_files, wal_files, wal_record_offsets

pytestmark = pytest.mark.timeout(180)

HEDGE = Path(sys.executable).with_name("hedge")


def _lose_manifest(path) -> None:
    for name in os.listdir(path):
        if name == filenames.CURRENT or name.startswith(filenames.MANIFEST_PREFIX):
            os.unlink(os.path.join(path, name))


def _listing(path) -> dict[str, bytes]:
    out = {}
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


def _content(path, io_method: str, **options) -> dict[bytes, bytes]:
    with open_db(path, io_method, **options) as db:
        return dict(db.scan())


def _build(path, io_method: str) -> dict[bytes, bytes]:
    """A tree with several levels, overwrites, tombstones over deeper
    versions, the empty key, and writes only in the WAL; its content."""
    with open_db(path, io_method, **SMALL) as db:
        for round_ in range(3):
            for i in range(0, 400, round_ + 1):
                db.put(b"k%04d" % i, b"r%d-" % round_ + b"v" * 60)
            db.flush()
        db.compact()
        for i in range(0, 400, 9):
            db.remove(b"k%04d" % i)
        db.put(b"", b"the empty key")
        db.put(b"only-in-the-wal", b"w")
        assert sum(lv["files"] for lv in db.stats()["levels"][1:]) > 1
        return dict(db.scan())


def test_a_lost_manifest_is_rebuilt_and_every_entry_is_back(tmp_path, io_method):
    path = tmp_path / "db"
    expected = _build(path, io_method)
    tables = [os.path.basename(p) for p in sst_files(path)]
    _lose_manifest(path)
    with pytest.raises(hedge.HedgeError):
        hedge.open(str(path), create=False, io_method=io_method, **LEAN)  # files but no CURRENT: refused
    report = hedge.repair(path, io_method=io_method)
    assert isinstance(report, hedge.RepairReport)
    assert sorted(report.tables_kept) == sorted(tables) and report.tables_moved == []
    assert report.wal_entries >= 2 and report.wal_damage == []
    assert report.entries == len(expected)
    assert report.manifest in os.listdir(path)
    assert sorted(os.path.basename(p) for p in sst_files(path)) == sorted(report.tables_written)
    assert not os.path.exists(path / LOST)
    assert _content(path, io_method, **SMALL) == expected
    with open_db(path, io_method, **SMALL) as db:       # sequence numbers go on above every old write
        assert db.property("hedge.last-sequence") >= report.last_seq
        db.put(b"k0001", b"after repair")
        db.remove(b"")
        db.flush()
        db.compact()
    expected[b"k0001"] = b"after repair"
    del expected[b""]
    assert _content(path, io_method, **SMALL) == expected
    assert hedge.repair(path, io_method=io_method).entries == len(expected)     # a second repair: the same
    assert _content(path, io_method) == expected


def test_a_damaged_table_is_moved_aside_and_the_rest_reads(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method, l0_compaction_trigger=8) as db:
        for part in range(3):
            for i in range(100):
                db.put(b"p%d-%03d" % (part, i), b"v" * 50)
            db.flush()
    tables = sst_files(path)
    assert len(tables) == 3
    victim = tables[1]
    with TableFile(victim) as t:
        lost_keys = {key for key, *_ in t.entries()}
        block = t.block_ranges()[0]
    flip_byte(victim, block[0] + 10)
    original = open(victim, "rb").read()
    report = hedge.repair(path, io_method=io_method)
    name = os.path.basename(victim)
    assert [moved for moved, _ in report.tables_moved] == [name]
    assert "checksum" in report.tables_moved[0][1]
    assert name not in report.tables_kept and len(report.tables_kept) == 2
    assert open(path / LOST / name, "rb").read() == original            # moved, not deleted
    content = _content(path, io_method)
    assert set(content) == {b"p%d-%03d" % (part, i) for part in range(3) for i in range(100)} - lost_keys
    assert lost_keys and all(k.startswith(b"p1-") for k in lost_keys)


def _two_tables(path, io_method: str):
    """A database of two tables: a -> 1 in the first, b -> 2 in the second."""
    with open_db(path, io_method) as db:
        db.put(b"a", b"1")
        db.flush()
        db.put(b"b", b"2")
        db.flush()
    return path


def test_a_damaged_table_footer_is_moved_aside(tmp_path, io_method):
    path = _two_tables(tmp_path / "db", io_method)
    first = sst_files(path)[0]
    flip_byte(first, os.path.getsize(first) - 5)
    report = hedge.repair(path, io_method=io_method)
    assert [name for name, _ in report.tables_moved] == [os.path.basename(first)]
    assert _content(path, io_method) == {b"b": b"2"}


def _five_writes(path, io_method: str) -> str:
    """A database at ``path`` whose WAL holds five writes, w0..w4, one
    record each; the WAL's path."""
    with open_db(path, io_method) as db:
        for i in range(5):
            db.put(b"w%d" % i, b"v%d" % i)
    (wal,) = [w for w in wal_files(path) if os.path.getsize(w)]
    return wal


def test_a_damaged_wal_keeps_the_writes_before_the_damage(tmp_path, io_method):
    path = tmp_path / "db"
    wal = _five_writes(path, io_method)
    offsets = wal_record_offsets(wal)
    assert len(offsets) == 5
    flip_byte(wal, offsets[3] + 30)                 # the fourth write's record
    _lose_manifest(path)
    report = hedge.repair(path, io_method=io_method)
    assert report.wal_entries == 3 and len(report.wal_damage) == 1
    assert os.path.basename(wal) in report.wal_damage[0]
    assert _content(path, io_method) == {b"w0": b"v0", b"w1": b"v1", b"w2": b"v2"}


def _put_an_edit_record_before_the_fourth_write(wal: str) -> None:
    """Insert an intact record of the manifest's type between the third and
    the fourth write record of ``wal`` (a record no WAL holds)."""
    data = open(wal, "rb").read()
    offsets = wal_record_offsets(wal)
    number = int.from_bytes(data[8:16], "little")
    edit = encode_record(number, b"not a batch", RecordType.VERSION_EDIT)
    with open(wal, "wb") as f:
        f.write(data[:offsets[3]] + edit + data[offsets[3]:])


def test_a_wal_record_that_is_not_a_batch_keeps_the_writes_before_it(tmp_path, io_method):
    path = tmp_path / "db"
    wal = _five_writes(path, io_method)
    _put_an_edit_record_before_the_fourth_write(wal)
    # Opening refuses it: the damage is not a torn tail.
    with pytest.raises(hedge.CorruptionError, match="unexpected record type"):
        open_db(path, io_method)
    _lose_manifest(path)
    report = hedge.repair(path, io_method=io_method)
    assert report.wal_entries == 3 and len(report.wal_damage) == 1
    assert os.path.basename(wal) in report.wal_damage[0] and "unexpected record type" in report.wal_damage[0]
    assert _content(path, io_method) == {b"w0": b"v0", b"w1": b"v1", b"w2": b"v2"}


def test_copies_of_tables_and_wals_are_merged_once(tmp_path, io_method):
    """A compaction's outputs beside its inputs and a flushed WAL beside
    its table hold the same writes twice: kept once, and the database then
    compacts (a merge refuses a repeated entry)."""
    path = tmp_path / "db"
    with open_db(path, io_method, l0_compaction_trigger=8) as db:
        for i in range(200):
            db.put(b"k%03d" % i, b"v%d" % i)
        db.remove(b"k007")
        wal = [w for w in wal_files(path) if os.path.getsize(w)][-1]
        shutil.copy(wal, path / "000900.wal")          # the WAL as it was before its flush
        db.flush()
        expected = dict(db.scan())
    shutil.copy(sst_files(path)[0], path / "000901.sst")
    report = hedge.repair(path, io_method=io_method)
    assert len(report.tables_kept) == 2 and report.entries == len(expected) == 199
    with open_db(path, io_method) as db:
        assert dict(db.scan()) == expected
        db.put(b"k001", b"new")
        db.compact(b"", None)
        assert db.get(b"k001") == b"new" and db.get(b"k007") is None


def test_an_empty_database_repairs_to_an_empty_one(tmp_path, io_method):
    path = tmp_path / "db"
    open_db(path, io_method).close()
    _lose_manifest(path)
    report = hedge.repair(path, io_method=io_method)
    assert (report.entries, report.tables_written, report.tables_kept) == (0, [], [])
    assert _content(path, io_method) == {}


# -- refusals ------------------------------------------------------------------------
def test_repair_of_an_open_database_fails_and_changes_nothing(tmp_path, io_method):
    path = tmp_path / "db"
    with open_db(path, io_method) as db:
        db.put(b"k", b"v")
        db.flush()
        # (The open database may still remove its flushed WAL meanwhile:
        # compare what repair would change.)
        before = ((path / filenames.CURRENT).read_bytes(), sst_files(path), _listing(path / LOST))
        with pytest.raises(hedge.LockError, match="open"):
            hedge.repair(path, io_method=io_method)
        assert ((path / filenames.CURRENT).read_bytes(), sst_files(path), _listing(path / LOST)) == before
        assert db.get(b"k") == b"v"
    assert _content(path, io_method) == {b"k": b"v"}


def test_repair_of_a_directory_without_a_database_fails(tmp_path, io_method):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    with pytest.raises(hedge.HedgeError, match="no hedge database"):
        hedge.repair(plain, io_method=io_method)
    assert os.listdir(plain) == ["notes.txt"]                   # no LOCK made
    with pytest.raises(hedge.HedgeError, match="does not exist"):
        hedge.repair(tmp_path / "missing", io_method=io_method)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(hedge.HedgeError, match="not a directory"):
        hedge.repair(plain / "notes.txt", io_method=io_method)


def test_repair_with_a_bad_option_fails_before_touching_anything(tmp_path):
    path = tmp_path / "db"
    with open_db(path, "threads") as db:
        db.put(b"k", b"v")
    before = _listing(path)
    with pytest.raises(TypeError):
        hedge.repair(path, no_such_option=1)
    with pytest.raises(ValueError):
        hedge.repair(path, io_method="carrier-pigeon")
    assert _listing(path) == before


# -- the command -------------------------------------------------------------------
def _hedge(*args) -> subprocess.CompletedProcess:
    if not HEDGE.exists():
        pytest.fail(f"{HEDGE} is not installed: run `make setup`")
    return subprocess.run([str(HEDGE), *map(str, args)], capture_output=True, timeout=120)


def test_the_repair_command(tmp_path, io_method):
    path = _two_tables(tmp_path / "db", io_method)
    flip_byte(sst_files(path)[0], 10)
    _lose_manifest(path)
    proc = _hedge("repair", "--io-method", io_method, path)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode().splitlines()
    assert out[0].startswith("moved aside: ") and out[-1].startswith("repaired: 1 tables kept; moved 1")
    assert _content(path, io_method) == {b"b": b"2"}


def test_the_repair_command_fails_in_one_line(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    path = tmp_path / "db"
    with open_db(path, "threads") as db:
        db.put(b"k", b"v")
        for args, says in (((plain,), "no hedge database"), ((path,), "already open")):
            proc = _hedge("repair", *args)
            err = proc.stderr.decode()
            assert proc.returncode == 1 and says in err, err
            assert err.count("\n") == 1 and "Traceback" not in err
    assert _hedge("repair").returncode == 2          # DB missing
