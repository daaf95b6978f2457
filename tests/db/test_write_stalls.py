"""Write stalls: writers paced by the write controller once L0 reaches
l0_slowdown_trigger (the rate halving with each table more), stopped at
l0_stop_trigger until a compaction brings L0 down, and never left waiting
when the background fails.  Compactions are held off by the test (the
policy finds nothing to do) so the shape of L0 is the test's; the engine's
pacing runs on a fake clock that only its sleeps advance, so the delays
are exact and nothing really sleeps."""
from __future__ import annotations

import asyncio
import errno
import threading

import pytest

import hedge
from hedge.io import faults, ops
from hedge.lsm import engine as engine_module
from hedge.lsm.compaction import policy
from hedge.lsm.write_controller import MIN_DELAY, WriteController, rate_at
from tests.db.helpers import open_db

pytestmark = pytest.mark.timeout(120)

TRIGGERS = dict(l0_compaction_trigger=2, l0_slowdown_trigger=2, l0_stop_trigger=4)
VALUE = b"v" * 1000
PUTS = 1000


@pytest.fixture
def held(monkeypatch):
    """Compactions held off until ``held["held"]`` is set to False."""
    state = {"held": True}
    real = policy.pick

    def pick(*args, **kwargs):
        return None if state["held"] else real(*args, **kwargs)

    monkeypatch.setattr(policy, "pick", pick)
    return state


class FakeTime:
    """The clock of the engine's write controller, advanced by the engine's
    sleeps, which it records instead of sleeping."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        self.sleeps: list[float] = []
        monkeypatch.setattr(engine_module, "WriteController", lambda: WriteController(clock=lambda: self.now))

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            self.now += seconds

        monkeypatch.setattr(ops, "sleep", sleep)


@pytest.fixture(params=["blocking", "aio"])
def api(request) -> str:
    return request.param


def put_many(db, api: str, prefix: bytes, n: int) -> None:
    keys = [prefix + b"%05d" % i for i in range(n)]
    if api == "blocking":
        for key in keys:
            db.put(key, VALUE)
    else:
        async def main():
            for key in keys:
                await db.aio.put(key, VALUE)
        asyncio.run(main())


def group_bytes() -> int:
    batch = hedge.WriteBatch()
    batch.put(b"x%05d" % 0, VALUE)
    return batch.byte_size()


def l0_count(db) -> int:
    return db.stats()["levels"][0]["files"]


def test_writers_are_paced_once_l0_reaches_the_slowdown_trigger(tmp_path, io_method, api, held, monkeypatch):
    clock = FakeTime(monkeypatch)
    with open_db(tmp_path / "db", io_method, **TRIGGERS) as db:
        db.put(b"a", b"1")
        db.flush()
        assert l0_count(db) == 1
        put_many(db, api, b"below", PUTS)
        assert clock.sleeps == []                       # under the trigger: never delayed
        slept = 0.0
        for steps in (1, 2):                            # L0 at the slowdown trigger, then one table more
            db.flush()
            assert l0_count(db) == 1 + steps
            put_many(db, api, b"at%d-" % steps, PUTS)
            delayed = sum(clock.sleeps) - slept
            slept = sum(clock.sleeps)
            booked = PUTS * group_bytes() / rate_at(steps)
            # What was booked was slept, but for what is still owed (under
            # MIN_DELAY plus one group) at either end of the phase.
            slack = 2 * (MIN_DELAY + group_bytes() / rate_at(steps))
            assert booked - slack <= delayed <= booked + slack, (steps, booked, delayed)
            assert all(MIN_DELAY <= s for s in clock.sleeps)
        stats = db.stats()["compaction"]
        assert stats["stall_slowdowns"] == len(clock.sleeps)
        assert stats["stall_slowdown_seconds"] == pytest.approx(sum(clock.sleeps), abs=1e-6)
        assert stats["stall_stops"] == 0
        assert db.get(b"at2-%05d" % (PUTS - 1)) == VALUE


def stop_l0(db) -> None:
    """Flush until L0 holds l0_stop_trigger tables, overlapping (no
    compaction of them is a trivial move)."""
    for i in range(TRIGGERS["l0_stop_trigger"]):
        db.put(b"a", b"%d" % i)
        db.put(b"z", b"%d" % i)
        db.flush()
    assert l0_count(db) == TRIGGERS["l0_stop_trigger"]


def stopped_writer(db, monkeypatch) -> tuple[threading.Event, dict]:
    """Bring L0 to the stop trigger, start a thread putting b"late" and
    return once it waits for a compaction: an event set when its put has
    ended, and the put's outcome."""
    stop_l0(db)
    waiting, ended = threading.Event(), threading.Event()
    outcome: dict = {}
    real_wait_for = engine_module.Engine._wait_for

    async def wait_for(self, predicate):
        waiting.set()
        await real_wait_for(self, predicate)

    monkeypatch.setattr(engine_module.Engine, "_wait_for", wait_for)

    def writer():
        try:
            db.put(b"late", b"v")
            outcome["error"] = None
        except BaseException as e:  # noqa: BLE001 - checked by the test
            outcome["error"] = e
        ended.set()

    threading.Thread(target=writer, daemon=True).start()
    assert waiting.wait(60)
    return ended, outcome


def release(held, db) -> None:
    """Let compactions run again, and wake the maintenance task to run one."""
    held["held"] = False
    db._engine.maintenance.wake()


def test_writers_stop_at_the_stop_trigger_until_a_compaction_brings_l0_down(tmp_path, io_method, held,
                                                                              monkeypatch):
    with open_db(tmp_path / "db", io_method, **TRIGGERS) as db:
        ended, outcome = stopped_writer(db, monkeypatch)
        assert not ended.is_set()                        # the put waits for the compaction
        release(held, db)
        assert ended.wait(60) and outcome["error"] is None
        assert l0_count(db) < TRIGGERS["l0_stop_trigger"]
        assert db.get(b"late") == b"v"
        stats = db.stats()["compaction"]
        assert stats["stall_stops"] == 1 and stats["stall_stop_seconds"] > 0


def test_a_stopped_writer_gets_the_background_error_when_the_compaction_fails(tmp_path, io_method, held,
                                                                               monkeypatch):
    with open_db(tmp_path / "db", io_method, **TRIGGERS) as db:
        ended, outcome = stopped_writer(db, monkeypatch)
        # A table is written with writev (several blocks) and write (one).
        with faults.inject("write", errno.ENOSPC, path_contains=".sst"), \
                faults.inject("writev", errno.ENOSPC, path_contains=".sst"):
            release(held, db)
            assert ended.wait(60)
        assert isinstance(outcome["error"], hedge.BackgroundError)
        assert db.get(b"late") is None                   # the stopped write was not applied
        with pytest.raises(hedge.BackgroundError):
            db.put(b"after", b"v")
