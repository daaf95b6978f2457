"""Power loss: a child process writes (one writer: puts, removes, batches, a
quarter of them sync, now and then a flush or a close and reopen) while the
power-loss recorder (hedge/io/powerloss.py) notes what the file system has
made durable.  The child dies at a kill point (right after a chosen file
system event: the n-th event of open, a table synced or created, a directory
fsync'ed, a file removed, CURRENT switched, a WAL synced) or after a random
number of acknowledged writes.  From the recording the parent builds the
images a power loss at that moment could leave and opens each one:

- the crash image (the directory as the kill left it): every acknowledged
  write is there;
- the power image (name operations kept in order up to a random point;
  unsynced file tails cut, torn or zero-filled) and two strict POSIX images
  (none, or a random subset, of the name operations not made durable by a
  directory fsync): every write acknowledged with sync=True, or before an
  acknowledged flush or close, is there;
- on every image the database opens, and what it holds is the state after a
  prefix of the announced writes (so a batch is all or nothing, and no
  write survives while an earlier one is lost).

The same directory goes on from kill to kill: the next child recovers the
crash image or, now and then, a power or strict image (recovery of a power
loss, itself interrupted by the next kill point).  ``HEDGE_SOAK=1`` runs
over a thousand kills across the three I/O methods, with and without the
compaction worker process; the short version runs a few per method.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import json
import os
import random
import shutil

import pytest

import hedge
from hedge.io import faults, powerloss
from tests.db.helpers import LEAN, SMALL, SOAK, ChildRun, crash_value, open_db, run_child

KILLS = 240 if SOAK else 4
WORKER_KILLS = 100 if SOAK else 2
PR_SET_CHILD_SUBREAPER = 36
MODELS = (("power", 0.0), ("strict", 0.0), ("strict", 0.5))


@pytest.fixture
def reaper():
    """Make this process the reaper of its orphans while the test runs, so
    a compaction worker whose database process was killed is reaped here
    (and is surely dead before its directory is looked at)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) is not available")
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def kill_point(rng: random.Random, worker: bool) -> dict | None:
    """Where the child kills itself (None: only after its acknowledgements);
    with the compaction ``worker``, a third of the kill points are in it."""
    if worker and rng.random() < 0.33:
        return {"op": rng.choice(("create", "sync", "any")), "contains": ".sst", "count": rng.randint(1, 4),
                "helper": True}
    r = rng.random()
    if r < 0.2:
        return {"op": "any", "count": rng.randint(1, 14)}              # mostly inside open
    if r < 0.4:
        return {"op": "sync", "contains": ".sst", "count": rng.randint(1, 6)}
    if r < 0.5:
        return {"op": "create", "contains": ".sst", "count": rng.randint(1, 6)}
    if r < 0.6:
        return {"op": "dsync", "count": rng.randint(1, 10)}
    if r < 0.7:
        return {"op": "unlink", "count": rng.randint(1, 8)}
    if r < 0.75:
        return {"op": "rename", "count": rng.randint(1, 2)}
    if r < 0.85:
        return {"op": "sync", "contains": ".wal", "count": rng.randint(1, 40)}
    return None


class History:
    """What one child announced and acknowledged, on top of ``base`` (the
    state when its recording began, durable by the model's definition)."""

    def __init__(self, base: dict, run: int, lines: list[str]):
        self.base = base
        self.effects: list[dict] = []
        self.acked = 0
        self.durable = 0            # writes that any image must hold
        for line in lines:
            if line.startswith("I "):
                _, op_id, ops, sync = line.split(" ")
                assert int(op_id) == len(self.effects)
                effect = {}
                for i, op in enumerate(json.loads(ops)):
                    effect[op[1].encode()] = crash_value(run, int(op_id), i, op[2]) if op[0] == "p" else None
                self.effects.append((effect, sync == "1"))
            elif line.startswith("A "):
                assert int(line[2:]) == self.acked
                self.acked += 1
                if self.effects[self.acked - 1][1]:
                    self.durable = self.acked
            elif line in ("F", "C"):
                self.durable = self.acked

    def prefix_matching(self, actual: dict, lowest: int) -> int | None:
        """The k >= lowest such that ``actual`` is the state after the first
        k writes, or None."""
        state = dict(self.base)
        for k in range(len(self.effects) + 1):
            if k >= lowest and state == actual:
                return k
            if k < len(self.effects):
                for key, value in self.effects[k][0].items():
                    if value is None:
                        state.pop(key, None)
                    else:
                        state[key] = value
        return None

    def explain(self, actual: dict, lowest: int) -> str:
        state = dict(self.base)
        for effect, _ in self.effects[:lowest]:
            for key, value in effect.items():
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
        diff = {k.decode(): (_short(state.get(k)), _short(actual.get(k)))
                for k in sorted(set(state) | set(actual)) if state.get(k) != actual.get(k)}
        return (f"no prefix of {len(self.effects)} writes from {lowest} on matches; against the first "
                f"{lowest} (key: expected, found): {diff}")


def _short(value):
    return "absent" if value is None else value.rstrip(b"v").decode()


def read_all(path, io_method, **options) -> dict:
    with open_db(path, io_method, **options) as db:
        return dict(db.scan())


def check_image(history: History, path: str, io_method: str, lowest: int) -> tuple[dict | None, str | None]:
    try:
        actual = read_all(path, io_method, **SMALL)
    except Exception as e:  # noqa: BLE001 - reported as the failure
        return None, f"open failed: {type(e).__name__}: {e}"
    if history.prefix_matching(actual, lowest) is None:
        return actual, history.explain(actual, lowest)
    return actual, None


def power_loss_kills(tmp_path, io_method: str, kills: int, options: dict, seed: str) -> dict:
    """Run ``kills`` children on one directory; return figures and failures."""
    rng = random.Random(seed)
    path = str(tmp_path / "db")
    options_json = json.dumps({**SMALL, **options})
    base: dict = {}
    figures = collections.Counter()
    failures: list[str] = []
    for run in range(kills):
        rec_dir = tmp_path / f"rec{run}"
        rec_dir.mkdir()
        settings = powerloss.begin(str(rec_dir / "log"), [path])
        worker = options.get("compaction_process", False)
        kill = kill_point(rng, worker)
        acks = rng.randint(3, 400 if worker else 150)
        child = ChildRun("powerloss", path, io_method, options_json, str(run), str(rng.getrandbits(32)),
                         env=powerloss.env(settings, kill), kill_after_acks=acks)
        child.kill(timeout=120)
        recording = powerloss.Recording.load(settings["log"])
        for pid in recording.pids:
            if pid != child.proc.pid:
                try:
                    os.waitpid(pid, 0)           # a compaction worker, orphaned and reaped here
                except ChildProcessError:
                    pass
        history = History(base, run, child.lines)
        if recording.kill_point is None and history.acked < acks:
            failures.append(f"run {run} ({io_method}): the child stopped making progress after "
                            f"{history.acked} of {acks} writes (killed after 120 s)")
        figures["kills"] += 1
        figures["kill points reached"] += recording.kill_point is not None
        figures["kill points reached in the compaction worker"] += (recording.kill_point is not None and
                                                                    recording.kill_point[1] != child.proc.pid)
        figures["kill points at a table (flush, compaction, recovery)"] += (
            recording.kill_point is not None and str(recording.kill_point[3]).endswith(".sst"))
        figures["killed during open"] += "R" not in child.lines
        figures["acknowledged writes"] += history.acked
        where = recording.kill_point or "after acknowledgements"
        images = []
        for i, (model, keep) in enumerate(MODELS):
            image = recording.image(path, str(tmp_path / f"img{run}-{i}"), model, rng, keep=keep)
            actual, problem = check_image(history, image.path, io_method, history.durable)
            figures[f"{model} images"] += 1
            if problem:
                figures[f"{model} failures"] += 1
                failures.append(f"run {run} ({io_method}, kill at {where}), {image.describe()}: {problem}")
            else:
                images.append((image.path, actual))
        shutil.rmtree(rec_dir)
        actual, problem = check_image(history, path, io_method, history.acked)
        figures["crash images"] += 1
        if problem:
            figures["crash failures"] += 1
            failures.append(f"run {run} ({io_method}, kill at {where}), crash image: {problem}")
            break
        base = actual
        if images and rng.random() < 0.3:
            chosen, base = rng.choice(images)
            shutil.rmtree(path)
            shutil.move(chosen, path)
            figures["runs going on from a power-loss image"] += 1
        for i in range(len(MODELS)):
            shutil.rmtree(tmp_path / f"img{run}-{i}", ignore_errors=True)
    return {"figures": dict(figures), "failures": failures}


def report(result: dict, label: str) -> None:
    print(f"\n{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(result["figures"].items())))
    assert not result["failures"], f"{len(result['failures'])} images failed; first ones:\n" + \
        "\n".join(result["failures"][:5])


@pytest.mark.timeout(3600 if SOAK else 120)
def test_power_loss_images_keep_every_durable_write(io_method, tmp_path, reaper):
    result = power_loss_kills(tmp_path, io_method, KILLS, {}, f"powerloss-{io_method}")
    report(result, io_method)


@pytest.mark.timeout(3600 if SOAK else 120)
@pytest.mark.parametrize("method", ["io_uring", "threads", "sync"] if SOAK else ["threads"])
def test_power_loss_images_with_the_compaction_worker(method, tmp_path, reaper):
    from tests.conftest import require_method

    require_method(method)
    result = power_loss_kills(tmp_path, method, WORKER_KILLS, {"compaction_process": True, "flush_process": True},
                              f"powerloss-worker-{method}")
    report(result, f"{method} with the compaction worker")


# -- one rule each: a recording made in this process, images at a quiet moment --------

@contextlib.contextmanager
def recorded(path, tmp_path, monkeypatch=None):
    """Record the database directory ``path`` in this process (and, with
    ``monkeypatch``, in the compaction worker it starts); yield the log."""
    settings = powerloss.begin(str(tmp_path / "rec.log"), [str(path)])
    if monkeypatch is not None:
        monkeypatch.setenv(*powerloss.env(settings).popitem())
    powerloss.arm(settings["log"], settings["shadow"], settings["dirs"])
    try:
        yield settings["log"]
    finally:
        powerloss.disarm()


def strict_images(log: str, path, tmp_path, seeds, keep: float = 0.0):
    """Strict images of ``path`` (their name operations not made durable
    kept with probability ``keep``), one per seed."""
    recording = powerloss.Recording.load(log)
    for seed in seeds:
        yield recording.image(str(path), str(tmp_path / f"strict-{keep}-{seed}"), "strict",
                              random.Random(seed), keep=keep)


def test_sync_write_after_a_memtable_switch_keeps_the_earlier_writes(io_method, tmp_path):
    """Finding 2: a memtable switch closed the old WAL without fdatasync, so
    a later sync=True write in the new WAL could survive a power loss that
    took the earlier sync=False writes."""
    path = tmp_path / "db"
    open_db(path, io_method).close()
    expected = {}
    with recorded(path, tmp_path) as log:
        db = open_db(path, io_method, memtable_bytes=4096)
        try:
            # No flush may rescue the old memtable: only the WALs hold the writes.
            with faults.inject("open", errno.EIO, path_contains=".sst", times=None):
                while db.stats()["memtable_bytes"] < 4096:     # then the next write switches memtables
                    key = b"k%03d" % len(expected)
                    db.put(key, b"v" * 200)
                    expected[key] = b"v" * 200
                db.put(b"last", b"sync", sync=True)
                expected[b"last"] = b"sync"
                with pytest.raises(hedge.BackgroundError):
                    db.flush()
        finally:
            powerloss.disarm()
            db.close()
    for image in strict_images(log, path, tmp_path, range(4)):
        assert read_all(image.path, io_method) == expected, image.describe()


def fill(db, count: int) -> dict:
    """``count`` puts in two interleaved passes over the keys, so that tables
    overlap and compactions merge (no trivial moves only)."""
    expected = {}
    order = list(range(0, count, 2)) + list(range(1, count, 2))
    for n, i in enumerate(order):
        key, value = b"k%05d" % (i % (count // 2)), b"%d" % n * 20
        db.put(key, value)
        expected[key] = value
    return expected


def test_flushed_table_is_durable_before_its_edit_and_wal_removal(io_method, tmp_path):
    """Finding 3: flush made the edit naming a new table durable and removed
    the WAL without fsyncing the directory: under POSIX the table's name
    could be lost ("a table listed in the manifest is missing")."""
    path = tmp_path / "db"
    open_db(path, io_method).close()
    with recorded(path, tmp_path) as log:
        with open_db(path, io_method) as db:
            expected = fill(db, 300)
            db.flush()
            db.compact()             # returns once maintenance is idle: the WAL is removed
            powerloss.disarm()
    for image in strict_images(log, path, tmp_path, range(3)):
        assert read_all(image.path, io_method) == expected, image.describe()


def test_compaction_outputs_are_durable_before_their_edit(io_method, tmp_path):
    path = tmp_path / "db"
    small = dict(memtable_bytes=4096, l0_compaction_trigger=2, table_bytes=8192, level1_bytes=16384)
    open_db(path, io_method).close()
    with recorded(path, tmp_path) as log:
        with open_db(path, io_method, **small) as db:
            expected = fill(db, 400)
            db.compact()
            assert db.stats()["compaction"]["count"] > 0
            powerloss.disarm()
    for image in strict_images(log, path, tmp_path, range(3)):
        assert read_all(image.path, io_method) == expected, image.describe()


def test_compaction_worker_outputs_are_durable_before_their_edit(tmp_path, monkeypatch):
    """The tables the compaction and flush workers write are durable
    before the edit naming them: every strict image reads every write."""
    path = tmp_path / "db"
    small = dict(memtable_bytes=4096, l0_compaction_trigger=2, table_bytes=8192, level1_bytes=16384,
                 compaction_process=True, flush_process=True)
    open_db(path, "threads").close()
    with recorded(path, tmp_path, monkeypatch) as log:
        with open_db(path, "threads", **small) as db:
            expected = fill(db, 400)
            db.compact()
            stats = db.stats()["compaction"]
            assert stats["count"] > 0 and stats["worker_pid"] is not None
            assert stats["flushes"] > 0 and stats["flush_worker_pid"] is not None
            assert stats["flush_worker_failures"] == 0
            powerloss.disarm()
    recording = powerloss.Recording.load(log)
    assert len(recording.pids) == 3          # this process and both workers recorded
    for image in strict_images(log, path, tmp_path, range(3)):
        assert read_all(image.path, "threads") == expected, image.describe()


def test_every_name_of_a_new_manifest_is_durable_before_current_switches(io_method, tmp_path):
    """Open recovers the WAL into a table, starts a WAL and installs a
    manifest naming both.  Killed right after CURRENT's rename (before the
    directory fsync that follows), no strict image may keep the rename and
    lose a name the new manifest relies on."""
    path = tmp_path / "db"
    writes = [{"ops": [["p", "k%03d" % i, "v%d" % i]], "batch": False, "sync": False} for i in range(50)]
    assert run_child("write", str(path), io_method, json.dumps(LEAN), json.dumps(writes)) == "D\n"
    expected = {b"k%03d" % i: b"v%d" % i for i in range(50)}
    settings = powerloss.begin(str(tmp_path / "rec.log"), [str(path)])
    child = ChildRun("hold", str(path), io_method, json.dumps(LEAN),
                     env=powerloss.env(settings, {"op": "rename", "count": 1}))
    child.kill(timeout=60)
    recording = powerloss.Recording.load(settings["log"])
    assert recording.kill_point is not None and recording.kill_point[2] == "rename"
    assert "R" not in child.lines
    images = list(strict_images(settings["log"], path, tmp_path, range(12), keep=0.5))
    renamed = [all(ev[0] != "rename" for ev in image.undone) for image in images]
    assert any(renamed) and not all(renamed)
    for image in images:
        assert read_all(image.path, io_method) == expected, image.describe()


@pytest.mark.parametrize("kill", [{"op": "create", "contains": ".wal", "count": 1},
                                  {"op": "create", "contains": "MANIFEST", "count": 1},
                                  {"op": "dsync", "count": 1}], ids=["wal", "manifest", "dsync"])
def test_creation_killed_before_current_switches_starts_over(kill, tmp_path):
    """A creating open killed before CURRENT exists leaves only an empty WAL
    and manifest: the next open creates the database instead of refusing
    it as "database files but no CURRENT"."""
    path = tmp_path / "db"
    settings = powerloss.begin(str(tmp_path / "rec.log"), [str(path)])
    child = ChildRun("hold", str(path), "threads", json.dumps(LEAN), env=powerloss.env(settings, kill))
    child.kill(timeout=60)
    assert powerloss.Recording.load(settings["log"]).kill_point is not None
    assert not (path / "CURRENT").exists() and any(n.endswith(".wal") for n in os.listdir(path))
    with open_db(path, "threads") as db:
        assert list(db.scan()) == []
        db.put(b"k", b"v", sync=True)
    with open_db(path, "threads") as db:
        assert db.get(b"k") == b"v"
    assert len([n for n in os.listdir(path) if n.startswith("MANIFEST")]) == 1     # the leftover is gone


def test_database_files_without_current_are_still_refused(tmp_path):
    path = tmp_path / "db"
    with open_db(path, "threads") as db:
        db.put(b"k", b"v")
    os.unlink(path / "CURRENT")
    with pytest.raises(hedge.CorruptionError, match="no CURRENT"):
        open_db(path, "threads")
