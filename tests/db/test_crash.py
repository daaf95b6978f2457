"""Crash recovery: a child process writes (puts, removes, batches; some
concurrently from several coroutines) and announces every write before the
call and acknowledges it after the call returned; the parent SIGKILLs it at a
random moment and then checks the reopened database:

- every acknowledged write is there (its value, or absent for a remove);
- nothing that was never written appears;
- a write announced but not acknowledged is either wholly there or wholly
  absent (a batch is atomic).

The same directory is reused across kills, and after some kills the parent
does not look, so the next child recovers a crashed database and may itself
be killed while recovering (recovery of recovery).  Small memtables and
tables make flushes and compactions happen, and be interrupted, all the time.
sync=False writes are in the mix too: they must survive a process crash
(only a power loss may take them).
"""
from __future__ import annotations

import itertools
import json
import random

import pytest

import hedge
from tests.db.helpers import LEAN, SMALL, SOAK, ChildRun, crash_value, open_db

KILLS_PER_METHOD = 200 if SOAK else 25
CRASH_OPTIONS = dict(SMALL)


class Expectation:
    """What the database may hold: ``model`` (every acknowledged write
    applied) plus ``pending`` writes that may or may not have happened, each
    a dict key -> value-or-None (None: removed) applied all or nothing."""

    def __init__(self) -> None:
        self.model: dict[bytes, bytes] = {}
        self.pending: list[dict[bytes, bytes | None]] = []

    def absorb(self, run: int, lines: list[str]) -> None:
        """Apply the child's acknowledged writes, in announcement order, and
        add its unacknowledged ones to ``pending``."""
        acked = {int(line.split()[1]) for line in lines if line.startswith("A ")}
        announced = []
        for line in lines:
            if line.startswith("I "):
                _, op_id, ops, _batch = line.split(" ", 3)
                announced.append((int(op_id), json.loads(ops)))
        for op_id, ops in announced:
            effect: dict[bytes, bytes | None] = {}
            for i, op in enumerate(ops):
                key = op[1].encode()
                effect[key] = crash_value(run, op_id, i, op[2]) if op[0] == "p" else None
            if op_id in acked:
                for key, value in effect.items():
                    for group in self.pending:   # a later acknowledged write wins
                        group.pop(key, None)
                    if value is None:
                        self.model.pop(key, None)
                    else:
                        self.model[key] = value
            else:
                self.pending.append(effect)
        self.pending = [g for g in self.pending if g]
        # Each writer waits for its acknowledgement before announcing again,
        # so an unacknowledged write has no later write on its keys.
        unacked = [op_id for op_id, _ in announced if op_id not in acked]
        assert len(unacked) <= 1 + 4, f"too many unacknowledged writes: {unacked}"

    def check(self, actual: dict[bytes, bytes]) -> None:
        """Raise AssertionError unless ``actual`` is the model with some
        subset of the pending writes applied (each wholly, in order)."""
        touched = set().union(*self.pending) if self.pending else set()
        for key in set(actual) | set(self.model):
            if key not in touched:
                assert actual.get(key) == self.model.get(key), (
                    f"key {key!r}: expected {short(self.model.get(key))}, found {short(actual.get(key))}")
        for applied in itertools.product((False, True), repeat=len(self.pending)):
            state = {k: self.model.get(k) for k in touched}
            for on, group in zip(applied, self.pending):
                if on:
                    state.update(group)
            if all(actual.get(k) == state[k] for k in touched):
                return
        pending = [{k: short(v) for k, v in g.items()} for g in self.pending]
        detail = {k: (short(self.model.get(k)), short(actual.get(k))) for k in sorted(touched)}
        raise AssertionError(f"state of the unacknowledged writes is no all-or-nothing combination of "
                             f"them; pending={pending!r}; key: (model, found)={detail!r}")

    def settle(self, actual: dict[bytes, bytes]) -> None:
        self.model = dict(actual)
        self.pending = []


def short(value: bytes | None) -> str:
    """A value by the write that made it (run.op.index), without its padding."""
    return "absent" if value is None else value.rstrip(b"v").decode()


def read_all(path, io_method) -> dict[bytes, bytes]:
    with open_db(path, io_method, **CRASH_OPTIONS) as db:
        actual = dict(db.scan())
        # Point lookups agree with the scan.
        keys = sorted(actual)[:20] + [b"s00", b"c0-00", b"c3-09", b"never"]
        assert db.multi_get(keys) == [actual.get(k) for k in keys]
        for k in keys[:8]:
            assert db.get(k) == actual.get(k)
    return actual


@pytest.mark.timeout(600 if SOAK else 240)
def test_sigkill_during_writes_loses_no_acknowledged_write(io_method, tmp_path):
    rng = random.Random(f"crash-{io_method}")
    path = str(tmp_path / "db")
    options_json = json.dumps(CRASH_OPTIONS)
    expect = Expectation()
    acked_total = 0
    for run in range(KILLS_PER_METHOD):
        child = ChildRun("crash", path, io_method, options_json, str(run), str(rng.getrandbits(32)))
        try:
            if rng.random() < 0.15:
                # As the child starts to open the database: the kill lands
                # while it opens or recovers, or soon after.
                assert child.opening.wait(60), "child never started to open the database"
            else:
                # A random moment of the child's writing, counted in its
                # acknowledged writes (2 to 800, about 0.4 s of an idle
                # machine): a busy machine slows the child, not the count.
                assert child.ready.wait(60), "child never opened the database"
                acks = rng.randint(2, 800)
                assert child.wait_for_acks(acks, 60), f"child acknowledged fewer than {acks} writes"
        finally:
            child.kill()
        expect.absorb(run, child.lines)
        acked_total += sum(1 for line in child.lines if line.startswith("A "))
        last = run == KILLS_PER_METHOD - 1
        if last or len(expect.pending) > 6 or rng.random() < 0.65:
            actual = read_all(path, io_method)
            expect.check(actual)
            expect.settle(actual)
    assert acked_total > KILLS_PER_METHOD, f"children acknowledged only {acked_total} writes"
    print(f"{io_method}: {KILLS_PER_METHOD} kills, {acked_total} acknowledged writes, {len(expect.model)} keys at the end")


def test_sigkill_releases_the_lock(io_method, tmp_path):
    path = str(tmp_path / "db")
    child = ChildRun("hold", path, io_method, json.dumps(LEAN))
    try:
        assert child.ready.wait(60), "child never opened the database"
        with pytest.raises(hedge.LockError):
            open_db(path, io_method)
    finally:
        child.kill()
    with open_db(path, io_method) as db:
        assert db.get(b"held") == b"yes"
