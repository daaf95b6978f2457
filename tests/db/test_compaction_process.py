"""Compaction merges in the worker process (Options.compaction_process):
the same results as in the background thread, a killed worker is a
background error (never a hang) with every acknowledged write kept, errors
cross the process boundary with their type, no process or fd leaks."""
from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

import hedge
from hedge.errors import BackgroundError, CorruptionError
from hedge.lsm import filenames, maintenance
from hedge.lsm.compaction.worker import CompactionJob, CompactionWorker, WorkerConfig
from hedge.lsm.keys import Kind
from hedge.lsm.table_io import TableWriter
from tests.conftest import require_method
from tests.db.helpers import random_writes

SMALL = dict(memtable_bytes=16 << 10, table_bytes=16 << 10, level1_bytes=64 << 10, l0_compaction_trigger=2,
             block_cache_bytes=1 << 20)


def _workload(db, seed: int) -> dict:
    return random_writes(db, random.Random(seed), {}, 6000, 3000)


def test_results_are_identical_with_and_without_the_worker_process(tmp_path, io_method):
    results = {}
    for on in (True, False):
        with hedge.open(tmp_path / f"db-{on}", io_method=io_method, **{**SMALL, "compaction_process": on}) as db:
            expected = _workload(db, seed=7)
            db.compact()
            stats = db.stats()
            assert stats["compaction"]["count"] > 0
            assert stats["background_error"] is None
            assert (stats["compaction"]["worker_pid"] is not None) == on
            keys = [b"key%06d" % i for i in range(3000)]
            results[on] = ([db.get(k) for k in keys], list(db.scan()))
            assert results[on][1] == sorted(expected.items())
    assert results[True] == results[False]


def _table_numbers(path) -> set[int]:
    return {p[1] for p in map(filenames.parse, os.listdir(path)) if p is not None and p[0] == "sst"}


def _children() -> set[int]:
    me = os.getpid()
    out = set()
    for tid in os.listdir(f"/proc/{me}/task"):
        try:
            with open(f"/proc/{me}/task/{tid}/children") as f:
                out.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            pass
    return out


# Reopening a database loaded by _load_held_back with these options starts
# one long L0 -> L1 merge at once, in the worker.
LONG = dict(memtable_bytes=256 << 10, table_bytes=256 << 10, level1_bytes=64 << 20)


def _load_held_back(path, io_method: str) -> dict:
    """Load with compaction held back: many L0 tables."""
    held = dict(l0_compaction_trigger=64, l0_slowdown_trigger=64, l0_stop_trigger=64)
    expected = {}
    with hedge.open(path, io_method=io_method, **{**LONG, **held, "compaction_process": False}) as db:
        for i in range(15000):
            key = b"key%07d" % ((i * 7919) % 15000)
            db.put(key, b"v%d-" % i + bytes(100))
            expected[key] = b"v%d-" % i + bytes(100)
        db.flush()
        assert db.stats()["levels"][0]["files"] >= 6
    return expected


@pytest.fixture
def job_handed_over(monkeypatch) -> threading.Event:
    """An event set when the engine hands a compaction job to its worker
    process (``CompactionWorker.run`` starts with a CompactionJob; the
    flush worker's jobs do not count)."""
    event = threading.Event()
    run = CompactionWorker.run

    async def run_and_tell(self, job, more):
        if isinstance(job, CompactionJob):
            event.set()
        return await run(self, job, more)

    monkeypatch.setattr(CompactionWorker, "run", run_and_tell)
    return event


def test_killing_the_worker_mid_compaction_is_a_background_error_and_loses_no_write(tmp_path, io_method,
                                                                                   monkeypatch):
    opts = dict(LONG)
    expected = _load_held_back(tmp_path / "db", io_method)
    inputs = _table_numbers(tmp_path / "db")
    # One output number reserved per job: the worker asks for more as it
    # starts its second output, its first one written.  That request is the
    # moment to kill it: mid-merge, with an output of its own on disk.
    monkeypatch.setattr(maintenance, "reserve_count", lambda input_bytes, max_output_bytes: 1)
    killed = []
    written = []
    run = CompactionWorker.run

    async def run_and_kill(self, job, more):
        def kill_then_more(n: int) -> list[int]:
            if isinstance(job, CompactionJob) and not killed:
                written.extend(_table_numbers(tmp_path / "db") - inputs)
                killed.append(self.pid)
                os.kill(self.pid, signal.SIGKILL)
            return more(n)
        return await run(self, job, kill_then_more)

    monkeypatch.setattr(CompactionWorker, "run", run_and_kill)
    with hedge.open(tmp_path / "db", io_method=io_method, **{**opts, "compaction_process": True}) as db:
        started = time.monotonic()
        with pytest.raises(BackgroundError) as info:
            db.compact()
        assert killed, "the compaction never asked for more output numbers"
        assert written, "the worker had written no output when it was killed"
        assert "died" in str(info.value.__cause__) and "SIGKILL" in str(info.value.__cause__)
        assert time.monotonic() - started < 30
        assert db.stats()["background_error"] is not None
        with pytest.raises(BackgroundError):
            db.put(b"after", b"x")
        assert killed[0] not in _children()
    with hedge.open(tmp_path / "db", io_method=io_method, **{**opts, "compaction_process": True}) as db:
        assert [k for k in expected if db.get(k) != expected[k]] == []
        db.compact()
        assert db.stats()["compaction"]["count"] > 0
        assert list(db.scan()) == sorted(expected.items())
        live = {meta.number for level in db._engine.super_version.version.levels for meta in level}
    assert _table_numbers(tmp_path / "db") == live


def test_close_during_a_worker_compaction_neither_hangs_nor_leaves_the_worker(tmp_path, job_handed_over):
    expected = _load_held_back(tmp_path / "db", "io_uring" if _uring_ok() else "threads")
    db = hedge.open(tmp_path / "db", **{**LONG, "compaction_process": True})
    assert job_handed_over.wait(60), "no compaction reached the worker"
    pid = db._engine.maintenance.worker.pid
    started = time.monotonic()
    db.close()
    assert time.monotonic() - started < 10
    assert pid not in _children()
    with hedge.open(tmp_path / "db", **{**LONG, "compaction_process": True}) as db:
        assert [k for k in expected if db.get(k) != expected[k]] == []
        assert db.stats()["background_error"] is None


def _uring_ok() -> bool:
    from hedge.io.backend import uring_status

    return uring_status()[0]


def test_no_process_or_fd_leak_over_twenty_open_close_cycles(tmp_path):
    def cycle(i: int) -> None:
        with hedge.open(tmp_path / "db", **{**SMALL, "compaction_process": True}) as db:
            for j in range(400):
                db.put(b"k%05d" % ((j * 31 + i) % 1000), bytes(60))
            db.compact()
            assert db._engine.maintenance.worker is not None and db.stats()["compaction"]["count"] > 0

    cycle(0)                               # warm-up: lazy imports, caches
    fds = len(os.listdir("/proc/self/fd"))
    children = _children()
    for i in range(1, 21):
        cycle(i)
    assert _children() == children
    assert len(os.listdir("/proc/self/fd")) == fds


def _write_table(executor, directory, number: int, entries) -> None:
    async def write():
        writer = await TableWriter.create(os.path.join(directory, filenames.table_name(number)), number, 4096, 10, "none")
        for entry in entries:
            writer.add(*entry)
        await writer.finish()

    executor.run_sync(write())


def _job(directory, inputs, outputs, max_output_bytes=1 << 20) -> CompactionJob:
    return CompactionJob(directory=str(directory), inputs=tuple(inputs), direct_io=False, bottommost=True,
                         oldest_snapshot_seq=1 << 40, max_output_bytes=max_output_bytes, block_bytes=4096,
                         bloom_bits_per_key=10, compression="none", output_numbers=tuple(outputs))


@pytest.fixture
def worker(io_method):
    require_method(io_method)
    w = CompactionWorker(WorkerConfig(io_method=io_method, ring_entries=64, submit_min=2, cpus=None))
    yield w
    w.stop()


def test_worker_asks_for_more_output_numbers_when_the_reserved_ones_run_out(tmp_path, executor, worker):
    _write_table(executor, tmp_path, 1, [(b"k%05d" % i, i + 1, Kind.PUT, bytes(100)) for i in range(2000)])
    _write_table(executor, tmp_path, 2, [(b"k%05d" % i, 5000 + i, Kind.DELETE, b"") for i in range(0, 2000, 2)])
    fresh = iter(range(100, 200))
    given = []

    def more(n):
        numbers = [next(fresh) for _ in range(n)]
        given.extend(numbers)
        return numbers

    outputs, written = executor.run_sync(worker.run(_job(tmp_path, [1, 2], [10], max_output_bytes=16 << 10), more))
    assert len(outputs) > 2 and given
    assert [m.number for m in outputs] == [10] + given[:len(outputs) - 1]
    assert sum(m.entries for m in outputs) == 1000            # bottommost: tombstones and what they hide dropped
    assert written == sum(os.path.getsize(tmp_path / filenames.table_name(m.number)) for m in outputs)
    assert worker.usable


def test_corruption_in_the_worker_reaches_the_parent_as_corruption_error(tmp_path, executor, worker):
    _write_table(executor, tmp_path, 1, [(b"k%05d" % i, i + 1, Kind.PUT, bytes(100)) for i in range(500)])
    path = tmp_path / filenames.table_name(1)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF                                             # inside the first data block
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as info:
        executor.run_sync(worker.run(_job(tmp_path, [1], [10, 11]), lambda n: []))
    assert info.value.file is not None and info.value.file.endswith(filenames.table_name(1))
    assert info.value.offset == 0
    assert not (tmp_path / filenames.table_name(10)).exists()
    assert worker.usable                                          # an answered error keeps the worker


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forked_child_gets_fork_error_and_leaves_the_parents_worker_alone(tmp_path):
    with hedge.open(tmp_path / "db", **{**SMALL, "compaction_process": True}) as db:
        _workload(db, seed=3)
        db.compact()
        pid = db._engine.maintenance.worker.pid
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(r)
            code = b"no-error"
            try:
                db.put(b"k", b"v")
            except hedge.ForkError:
                code = b"fork-error"
            except BaseException as e:  # noqa: BLE001
                code = type(e).__name__.encode()
            try:
                db._engine.maintenance.stop_worker()       # must not stop the parent's worker
            except BaseException:  # noqa: BLE001
                code += b"+stop-failed"
            os.write(w, code)
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            child_said = f.read()
        _, status = os.waitpid(child, 0)
        assert os.WEXITSTATUS(status) == 0 and child_said == b"fork-error"
        more = _workload(db, seed=4)
        db.compact()
        assert db._engine.maintenance.worker.pid == pid and db._engine.maintenance.worker.usable
        assert db.stats()["background_error"] is None
        assert [k for k in more if db.get(k) != more[k]] == []
