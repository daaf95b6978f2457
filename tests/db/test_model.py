"""Model-based test: random sequences of put / remove / write(batch) / get /
scan / multi_get / flush / compact / reopen and snapshots (taken, read,
released) on hedge and on a dict, compared after every step, on every I/O
method.  Tiny memtables and tables make flushes and compactions happen
every few steps, so reads go through the memtable, immutable memtables and
several levels, and flushes and compactions run while snapshots hold old
versions."""
from __future__ import annotations

import shutil
import tempfile
import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import hedge
from hedge.lsm import block as block_module
from hedge.lsm import bloom as bloom_module
from tests.db.helpers import SMALL, SOAK, level_summary, model_scan, open_db

# A small alphabet so that overwrites and removes hit existing keys.
KEYS = [bytes([c]) for c in b"abcdefgh"] + [b"k%02d" % i for i in range(24)] + [b"", b"\x00", b"\xff\xff"]
keys = st.sampled_from(KEYS)
values = st.one_of(
    st.just(b""),
    st.binary(max_size=12),
    st.builds(lambda n, c: bytes([c]) * n, st.integers(100, 700), st.integers(0, 255)),
)
bounds = st.one_of(st.none(), keys, st.binary(min_size=0, max_size=3))
batch_ops = st.lists(st.tuples(keys, st.one_of(st.none(), values)), min_size=0, max_size=8)

# A call that never returns would leave hypothesis shrinking forever on a
# hung thread; it ends the whole run at once instead (a BaseException).
CALL_DEADLINE = 30.0


class EngineHang(BaseException):
    """A database call did not return within CALL_DEADLINE seconds."""


def within_deadline(what: str, fn, *args):
    """Run ``fn(*args)`` on a helper thread; return its result or raise its
    exception; raise EngineHang if it has not returned in CALL_DEADLINE."""
    out: list = []

    def run():
        try:
            out.append((True, fn(*args)))
        except BaseException as e:       # noqa: BLE001 - handed to the caller
            out.append((False, e))

    t = threading.Thread(target=run, daemon=True, name=f"model-{what}")
    t.start()
    t.join(CALL_DEADLINE)
    if t.is_alive():
        raise EngineHang(f"{what} did not return within {CALL_DEADLINE:.0f} s")
    ok, value = out[0]
    if not ok:
        raise value
    return value


EXAMPLES = 300 if SOAK else 60
STEPS = 100 if SOAK else 50


class HedgeVsDict(RuleBasedStateMachine):
    io_method = "sync"
    # Per example: the most levels holding tables at once, and the rules run.
    seen_levels: list[int] = []
    seen_steps: list[int] = []

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="hedge-model-")
        self.path = self.dir + "/db"
        self.db = open_db(self.path, self.io_method, **SMALL)
        self.model: dict[bytes, bytes] = {}
        self.fill_round = 0
        self.levels = 0
        self.steps = 0
        self.snapshots: list[tuple[hedge.Snapshot, dict[bytes, bytes]]] = []   # with the model they see

    def teardown(self) -> None:
        self.seen_levels.append(self.levels)
        self.seen_steps.append(self.steps)
        try:
            self._release_all()
            self.db.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(key=keys, value=values, sync=st.booleans())
    def put(self, key, value, sync):
        self.db.put(key, value, sync=sync)
        self.model[key] = value

    @rule(key=keys, sync=st.booleans())
    def remove(self, key, sync):
        self.db.remove(key, sync=sync)
        self.model.pop(key, None)

    @rule(ops=batch_ops, sync=st.booleans())
    def write(self, ops, sync):
        batch = hedge.WriteBatch()
        for key, value in ops:
            if value is None:
                batch.remove(key)
            else:
                batch.put(key, value)
        self.db.write(batch, sync=sync)
        for key, value in ops:
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value

    @rule(start=st.integers(0, 90))
    def fill(self, start):
        """A run of bigger values, enough to fill a memtable or two."""
        self.fill_round += 1
        for i in range(start, start + 12):
            key = b"f%03d" % i
            value = b"%d:" % self.fill_round + bytes([i]) * 300
            self.db.put(key, value)
            self.model[key] = value

    @rule(key=keys)
    def get(self, key):
        assert self.db.get(key) == self.model.get(key)

    @rule(ks=st.lists(keys, max_size=10))
    def multi_get(self, ks):
        assert self.db.multi_get(ks) == [self.model.get(k) for k in ks]

    @rule(start=bounds, end=bounds)
    def scan(self, start, end):
        assert list(self.db.scan(start, end)) == model_scan(self.model, start, end)

    @rule()
    def flush(self):
        within_deadline("flush()", self.db.flush)

    @rule()
    def compact(self):
        within_deadline("compact()", self.db.compact)
        levels = level_summary(self.db)
        assert levels[0][0] < SMALL["l0_compaction_trigger"], levels

    @precondition(lambda self: len(self.snapshots) < 3)
    @rule()
    def take_snapshot(self):
        self.snapshots.append((self.db.snapshot(), dict(self.model)))

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data(), key=keys)
    def read_snapshot(self, data, key):
        snapshot, seen = data.draw(st.sampled_from(self.snapshots))
        assert snapshot.get(key) == seen.get(key)
        assert list(snapshot.scan()) == model_scan(seen)

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data())
    def release_snapshot(self, data):
        i = data.draw(st.integers(0, len(self.snapshots) - 1))
        snapshot, _seen = self.snapshots.pop(i)
        snapshot.close()

    def _release_all(self) -> None:
        for snapshot, _seen in self.snapshots:
            snapshot.close()
        self.snapshots = []

    @rule()
    def reopen(self):
        self._release_all()
        within_deadline("close()", self.db.close)
        self.db = within_deadline("open()", lambda: open_db(self.path, self.io_method, **SMALL))

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def remove_existing(self, data):
        key = data.draw(st.sampled_from(sorted(self.model)))
        self.db.remove(key)
        del self.model[key]

    @invariant()
    def same_content(self):
        assert list(self.db.scan()) == model_scan(self.model)
        self.levels = max(self.levels, sum(1 for files, _ in level_summary(self.db) if files))
        self.steps += 1


def _run_machine(io_method: str) -> type:
    machine = type(f"HedgeVsDict_{io_method}", (HedgeVsDict,),
                   {"io_method": io_method, "seen_levels": [], "seen_steps": []})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        derandomize=not SOAK))
    return machine


@pytest.mark.timeout(900 if SOAK else 120)
def test_hedge_behaves_like_a_dict(io_method):
    machine = _run_machine(io_method)
    # The examples really went through a tree of several levels.
    assert len(machine.seen_levels) >= EXAMPLES // 2, machine.seen_levels
    assert max(machine.seen_levels) >= 2, machine.seen_levels
    assert sum(machine.seen_steps) >= EXAMPLES * STEPS // 3, machine.seen_steps
    spread = {n: machine.seen_levels.count(n) for n in sorted(set(machine.seen_levels))}
    print(f"{io_method}: {len(machine.seen_steps)} examples, {sum(machine.seen_steps)} steps, "
          f"examples by most levels holding tables: {spread}")


@pytest.mark.timeout(900 if SOAK else 120)
def test_hedge_behaves_like_a_dict_with_blocks_searched_and_filters_probed_in_python():
    """The same machine with the Python twins of the block search, the
    block decoding and the bloom probes (the test above uses the C kernels
    when they are built); one I/O method, since none of them does I/O."""
    block_module.use_search_kernel(False)
    block_module.use_decode_kernel(False)
    bloom_module.use_probe_kernel(False)
    try:
        machine = _run_machine("sync")
    finally:
        block_module.use_search_kernel(True)
        block_module.use_decode_kernel(True)
        bloom_module.use_probe_kernel(True)
    assert max(machine.seen_levels) >= 2, machine.seen_levels


def test_data_reaches_several_levels_and_compact_leaves_every_level_under_its_target(io_method, tmp_path):
    path = tmp_path / "db"
    model = {}
    with open_db(path, io_method, **SMALL) as db:
        for i in range(700):
            key = b"d%05d" % ((i * 7919) % 700)      # not in key order
            value = b"%05d" % i + b"." * 120
            db.put(key, value)
            model[key] = value
        db.compact()
        levels = level_summary(db)
        assert sum(1 for files, _ in levels if files) >= 2, levels
        assert levels[0][0] < SMALL["l0_compaction_trigger"], levels
        for n in range(1, 6):
            target = SMALL["level1_bytes"] * SMALL["level_size_ratio"] ** (n - 1)
            assert levels[n][1] < target, (n, levels)
        assert sum(b for _, b in levels) >= 700 * 120
        assert list(db.scan()) == model_scan(model)
    with open_db(path, io_method, **SMALL) as db:
        assert level_summary(db) == levels
        assert db.get(b"d00000") == model[b"d00000"]
        assert list(db.scan()) == model_scan(model)
