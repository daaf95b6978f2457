"""Options that change how a database runs: the I/O method from the
environment, direct I/O, explicit CPU sets, and use after fork."""
from __future__ import annotations

import os

import pytest

import hedge
from tests.conftest import require_method


@pytest.mark.parametrize("method", ["threads", "sync", "io_uring"])
def test_hedge_io_method_overrides_the_option(tmp_path, monkeypatch, method):
    require_method(method)
    monkeypatch.setenv("HEDGE_IO_METHOD", method)
    with hedge.open(tmp_path / "db", io_method="auto") as db:
        db.put(b"k", b"v")
        assert db.get(b"k") == b"v"
        stats = db.stats()
        assert stats["io_method"] == method
        assert {ex["io_method"] for ex in stats["foreground"] + stats["background"]} == {method}


def test_bad_hedge_io_method_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HEDGE_IO_METHOD", "carrier-pigeon")
    with pytest.raises(ValueError, match="HEDGE_IO_METHOD"):
        hedge.open(tmp_path / "db")
    assert not (tmp_path / "db" / "CURRENT").exists()


def _direct_supported(directory) -> bool:
    probe = os.path.join(directory, "probe")
    try:
        os.close(os.open(probe, os.O_RDWR | os.O_CREAT | getattr(os, "O_DIRECT", 0)))
        return hasattr(os, "O_DIRECT")
    except OSError:
        return False


def test_direct_io_reads_tables_with_a_small_cache(tmp_path, io_method):
    if not _direct_supported(tmp_path):
        pytest.skip(f"the file system of {tmp_path} does not support O_DIRECT")
    expected = {b"key%06d" % i: os.urandom(100) for i in range(3000)}
    with hedge.open(tmp_path / "db", io_method=io_method, memtable_bytes=64 << 10) as db:
        for k, v in expected.items():
            db.put(k, v)
        db.compact()
    with hedge.open(tmp_path / "db", io_method=io_method, direct_io=True, block_cache_bytes=64 << 10) as db:
        assert [k for k in expected if db.get(k) != expected[k]] == []
        assert list(db.scan()) == sorted(expected.items())
        cache = db.stats()["cache"]
        assert cache["misses"] > 0 and cache["bytes"] <= 64 << 10


def test_direct_io_without_a_cache_is_refused(tmp_path):
    with pytest.raises(ValueError, match="block cache"):
        hedge.open(tmp_path / "db", direct_io=True, block_cache_bytes=0)


def test_explicit_cpu_sets_pin_the_pools(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    with hedge.open(tmp_path / "db", foreground_cpus=(cpus[0],), background_cpus=(cpus[1],)) as db:
        stats = db.stats()
        assert [ex["cpus"] for ex in stats["foreground"]] == [[cpus[0]]]
        assert [ex["cpus"] for ex in stats["background"]] == [[cpus[1]]]
    with pytest.raises(ValueError):
        hedge.open(tmp_path / "db2", foreground_cpus=())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_database_used_in_a_forked_child_raises_fork_error(tmp_path, io_method):
    with hedge.open(tmp_path / "db", io_method=io_method) as db:
        db.put(b"k", b"v")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: must not touch the parent's rings or threads
            os.close(r)
            said = b"no-error"
            try:
                db.get(b"k")
            except hedge.ForkError:
                said = b"fork-error"
            except BaseException as e:  # noqa: BLE001
                said = type(e).__name__.encode()
            os.write(w, said)
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            child_said = f.read()
        os.waitpid(pid, 0)
        assert child_said == b"fork-error"
        db.put(b"k2", b"v2")                     # the parent is unaffected
        assert db.get(b"k") == b"v" and db.get(b"k2") == b"v2"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forked_child_gets_fork_error_from_every_call_and_close_returns_at_once(tmp_path, io_method):
    """Issue 10, finding 4: in a forked child stats() returned the parent's
    stale figures and close() blocked 60 s, then raised the built-in
    TimeoutError.  Every call is a ForkError; close returns at once,
    touching none of the parent's threads, rings or lock."""
    import json
    import time

    from hedge.exec import Executor

    path = tmp_path / "db"
    with hedge.open(path, io_method=io_method, pin=False) as db:
        db.put(b"k", b"v")
        calls = {
            "stats": db.stats, "get": lambda: db.get(b"k"), "put": lambda: db.put(b"k", b"x"),
            "remove": lambda: db.remove(b"k"), "write": lambda: db.write(hedge.WriteBatch()),
            "multi_get": lambda: db.multi_get([b"k"]), "scan": lambda: list(db.scan()),
            "flush": db.flush, "compact": db.compact, "run": lambda: db.run(db.aio.get(b"k")),
        }
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            out = {}
            try:
                os.close(r)
                for name, call in calls.items():
                    try:
                        call()
                        out[name] = "no error"
                    except BaseException as e:  # noqa: BLE001
                        out[name] = type(e).__name__
                ex = Executor(io_method="sync").start()     # the child's own executor, for db.aio
                try:
                    ex.run_sync(db.aio.get(b"k"))
                    out["aio"] = "no error"
                except BaseException as e:  # noqa: BLE001
                    out["aio"] = type(e).__name__
                ex.close()
                start = time.monotonic()
                try:
                    db.close()
                    db.close()
                    out["close"] = "returned"
                except BaseException as e:  # noqa: BLE001
                    out["close"] = type(e).__name__
                out["close_seconds"] = time.monotonic() - start
                try:
                    db.get(b"k")
                    out["after_close"] = "no error"
                except BaseException as e:  # noqa: BLE001
                    out["after_close"] = type(e).__name__
            finally:
                os.write(w, json.dumps(out).encode())
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            child = json.loads(f.read())
        os.waitpid(pid, 0)
        seconds = child.pop("close_seconds")
        assert child == {**dict.fromkeys(calls, "ForkError"), "aio": "ForkError", "close": "returned",
                         "after_close": "ForkError"}
        assert seconds < 5
        # The parent is unaffected: its threads run, and it still holds the lock.
        db.put(b"k2", b"v2", sync=True)
        assert db.get(b"k") == b"v" and db.get(b"k2") == b"v2"
        with pytest.raises(hedge.LockError):
            hedge.open(path, io_method=io_method, pin=False)
    with hedge.open(path, io_method=io_method, pin=False) as db:
        assert db.get(b"k2") == b"v2"
