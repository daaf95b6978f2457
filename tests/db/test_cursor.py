"""Reverse scans and cursors against a sorted dict, on every I/O method,
over data in the memtable, immutable memtables (flushes held back), L0 and
deeper levels, with overwrites, tombstones and snapshots: reverse scans
with inclusive/exclusive bounds and prefixes; random cursor walks (seeks,
steps both ways, direction switches, steps off either end) on the blocking
API, from asyncio and from hedge tasks; close semantics, ClosedError after
db.close, bad input."""
from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import threading

import pytest

import hedge
from hedge.errors import ClosedError, WrongThreadError
from hedge.lsm.maintenance import Maintenance
from tests.db.helpers import SMALL, level_summary, open_db
from tests.db.test_asyncio import _loaded
from tests.db.test_scan import KEYS, random_bound, random_writes

pytestmark = pytest.mark.timeout(240)

# SMALL, and L0 never holds writers back (flushes are held in some tests).
OPTS = dict(SMALL, l0_slowdown_trigger=1000, l0_stop_trigger=1000)
PREFIXES = [b"k", b"k1", b"k05", b"k29", b"k299", b"j", b"k3", b"\xff"]


# -- the model ---------------------------------------------------------------------------
def in_range(key: bytes, start, end, prefix, include_start: bool, include_end: bool) -> bool:
    if start is not None and (key < start or (key == start and not include_start)):
        return False
    if end is not None and (key > end or (key == end and not include_end)):
        return False
    return prefix is None or key.startswith(prefix)


def random_range(rng: random.Random) -> dict:
    options = dict(start=random_bound(rng), end=random_bound(rng),
                   include_start=rng.random() < 0.6, include_end=rng.random() < 0.4)
    if rng.random() < 0.3:
        options["prefix"] = rng.choice(PREFIXES)
    return options


def model_pairs(model: dict, options: dict) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in model.items()
                  if in_range(k, options.get("start"), options.get("end"), options.get("prefix"),
                              options.get("include_start", True), options.get("include_end", False)))


class ModelCursor:
    """What a cursor over ``pairs`` (sorted) answers."""

    def __init__(self, pairs):
        self.pairs = pairs
        self.keys = [k for k, _ in pairs]
        self.pos = None

    def apply(self, op: str, arg=None):
        keys = self.keys
        n = len(keys)
        if op in ("next", "prev") and self.pos is None:
            return "ValueError"
        if op == "seek":
            i = bisect.bisect_left(keys, arg)
            self.pos = i if i < n else None
        elif op == "seek_for_prev":
            i = bisect.bisect_right(keys, arg) - 1
            self.pos = i if i >= 0 else None
        elif op == "seek_to_first":
            self.pos = 0 if n else None
        elif op == "seek_to_last":
            self.pos = n - 1 if n else None
        elif op == "next":
            self.pos = self.pos + 1 if self.pos + 1 < n else None
        elif op == "prev":
            self.pos = self.pos - 1 if self.pos > 0 else None
        return (self.pos is not None, None if self.pos is None else self.pairs[self.pos])


def random_walk(rng: random.Random, steps: int) -> list[tuple[str, bytes | None]]:
    """Seeks now and then, mostly runs of steps in one direction (long
    enough to cross chunk refills), and direction switches."""
    ops: list[tuple[str, bytes | None]] = []
    while len(ops) < steps:
        r = rng.random()
        if r < 0.1:
            ops.append(("seek", rng.choice((rng.choice(KEYS), random_bound(rng) or b"k"))))
        elif r < 0.18:
            ops.append(("seek_for_prev", rng.choice((rng.choice(KEYS), random_bound(rng) or b"k"))))
        elif r < 0.22:
            ops.append((rng.choice(("seek_to_first", "seek_to_last")), None))
        else:
            ops += [(rng.choice(("next", "prev")), None)] * rng.choice((1, 1, 2, 5, 40))
    return ops


def step_sync(cursor, op: str, arg):
    try:
        moved = getattr(cursor, op)(*(() if arg is None else (arg,)))
    except ValueError:
        assert not cursor.valid()
        return "ValueError"
    assert moved == cursor.valid()
    return (moved, cursor.item() if moved else None)


async def step_async(cursor, op: str, arg):
    try:
        moved = await getattr(cursor, op)(*(() if arg is None else (arg,)))
    except ValueError:
        assert not cursor.valid()
        return "ValueError"
    assert moved == cursor.valid()
    return (moved, cursor.item() if moved else None)


def check_walk(open_cursor, model: dict, rng: random.Random, steps: int = 150) -> None:
    options = random_range(rng)
    expected = ModelCursor(model_pairs(model, options))
    ops = random_walk(rng, steps)
    with open_cursor(**options) as cursor:
        assert not cursor.valid()
        for i, (op, arg) in enumerate(ops):
            assert step_sync(cursor, op, arg) == expected.apply(op, arg), (options, ops[:i + 1])


async def check_walk_async(open_cursor, model: dict, rng: random.Random, steps: int = 150) -> None:
    options = random_range(rng)
    expected = ModelCursor(model_pairs(model, options))
    ops = random_walk(rng, steps)
    async with open_cursor(**options) as cursor:
        assert not cursor.valid()
        for i, (op, arg) in enumerate(ops):
            assert await step_async(cursor, op, arg) == expected.apply(op, arg), (options, ops[:i + 1])


def check_reverse_scans(reader, model: dict, rng: random.Random, count: int) -> None:
    """``reader``: a DB or a Snapshot."""
    everything = model_pairs(model, {})
    assert list(reader.scan(reverse=True)) == everything[::-1]
    assert list(reader.scan(reverse=True, include_value=False)) == [k for k, _ in everything][::-1]
    assert list(reader.scan(reverse=True, include_key=False)) == [v for _, v in everything][::-1]
    for prefix in PREFIXES:
        assert list(reader.scan(prefix=prefix, reverse=True)) == model_pairs(model, {"prefix": prefix})[::-1]
    for _ in range(count):
        options = random_range(rng)
        assert list(reader.scan(**options, reverse=True)) == model_pairs(model, options)[::-1], options
    assert list(reader.scan(b"k200", b"k100", reverse=True)) == []
    assert list(reader.scan(b"k100", b"k100", reverse=True)) == []


# -- holding flushes back ------------------------------------------------------------------
class FlushGate:
    """While closed, a flush waits (on the background thread) before it
    starts, so written memtables stay immutable."""

    def __init__(self):
        self._open = threading.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait(self) -> None:
        self._open.wait()

    def close(self) -> None:
        """Release (before the database closes: its flushes must finish)."""
        self.release()


@pytest.fixture
def flush_gate(monkeypatch):
    gate = FlushGate()
    flush = Maintenance._flush_oldest

    async def held_flush(self):
        gate.wait()
        await flush(self)

    monkeypatch.setattr(Maintenance, "_flush_oldest", held_flush)
    yield gate
    gate.release()


def fill_until_immutable(db, model: dict, rng: random.Random, imms: int) -> None:
    """Write until ``imms`` memtables wait for their flush, then a few
    writes more (less than a memtable) into the new one."""
    while db.stats()["immutable_memtables"] < imms:
        random_writes(db, model, rng, 1)
    random_writes(db, model, rng, 5)


def spread(db, model: dict, rng: random.Random, gate: FlushGate) -> tuple[hedge.Snapshot, dict]:
    """Data over the deeper levels, L0, two immutable memtables and the
    memtable, with overwrites and tombstones over the lower layers; and a
    snapshot taken half way, with the model it sees."""
    random_writes(db, model, rng, 550)
    snapshot = db.snapshot()
    seen = dict(model)
    random_writes(db, model, rng, 150)
    db.compact()                               # settled: L0 empty, compaction due no more
    for _ in range(10):                        # one small L0 table (below the trigger of 2);
        random_writes(db, model, rng, 5)       # again if a compaction already moved it down
        db.flush()
        if level_summary(db)[0][0] >= 1:
            break
    gate.hold()
    fill_until_immutable(db, model, rng, 2)
    for k in list(model)[::8]:                 # tombstones in the memtable (less than it holds)
        db.remove(k)
        del model[k]
    levels = level_summary(db)
    assert levels[0][0] >= 1 and any(files for files, _ in levels[1:]), levels
    assert db.stats()["immutable_memtables"] == 2
    assert db.stats()["memtable_entries"] > 0
    return snapshot, seen


def test_reverse_scans_and_cursor_walks_match_a_dict(io_method, tmp_path, flush_gate):
    rng = random.Random(f"cursor-{io_method}")
    model: dict[bytes, bytes] = {}
    db = open_db(tmp_path / "db", io_method, **OPTS)
    try:
        snapshot, seen = spread(db, model, rng, flush_gate)
        check_reverse_scans(db, model, rng, 25)
        check_reverse_scans(snapshot, seen, rng, 10)
        for _ in range(8):
            check_walk(db.cursor, model, rng)
        for _ in range(4):
            check_walk(snapshot.cursor, seen, rng)

        async def walks():
            for _ in range(3):
                await check_walk_async(db.aio.cursor, model, rng)
            await check_walk_async(snapshot.aio.cursor, seen, rng)
            got = [pair async for pair in db.aio.scan(b"k1", b"k2", reverse=True)]
            assert got == model_pairs(model, {"start": b"k1", "end": b"k2"})[::-1]
            got = [k async for k in snapshot.aio.scan(prefix=b"k2", reverse=True, include_value=False)]
            assert got == [k for k, _ in model_pairs(seen, {"prefix": b"k2"})][::-1]
            return True

        assert asyncio.run(walks())            # asyncio tasks
        assert db.run(walks())                 # a hedge task
        flush_gate.release()
        db.flush()
        assert db.stats()["immutable_memtables"] == 0
        check_reverse_scans(db, model, rng, 10)
        check_walk(db.cursor, model, rng)
        snapshot.close()
    finally:
        flush_gate.release()
        db.close()


def test_a_cursor_reads_its_snapshot_while_writes_go_on(io_method, tmp_path):
    rng = random.Random(3)
    model: dict[bytes, bytes] = {}
    with open_db(tmp_path / "db", io_method, **OPTS) as db:
        random_writes(db, model, rng, 400)
        before = dict(model)
        expected = model_pairs(before, {})
        with db.cursor() as cursor, db.scan(reverse=True) as scan:
            assert cursor.seek_to_last()
            random_writes(db, model, rng, 400)           # through memtable switches and flushes
            db.compact()
            got = [cursor.item()]
            while cursor.prev():
                got.append(cursor.item())
            assert got == expected[::-1]
            assert list(scan) == expected[::-1]          # its first chunk came before the writes
            assert list(cursor) == expected               # iteration from the first key
        assert list(db.scan(reverse=True)) == model_pairs(model, {})[::-1]


def test_versions_of_one_key_over_memtable_l0_and_l1(io_method, tmp_path, flush_gate):
    """One key overwritten and deleted again and again, its versions in L1,
    L0, an immutable memtable and the memtable, between two neighbours;
    snapshots taken between the layers each see their own version."""
    with open_db(tmp_path / "db", io_method, **OPTS) as db, contextlib.closing(flush_gate):
        snapshots = []

        def versions(tag: bytes, n: int) -> None:
            for i in range(n):
                db.put(b"a", tag)
                db.put(b"z", tag)
                if i % 3 == 2:
                    db.remove(b"m")
                else:
                    db.put(b"m", tag + b"%d" % i + b"." * 200)
            snapshots.append((db.snapshot(), db.get(b"m")))

        versions(b"L1-", 40)
        db.compact()
        versions(b"L0-", 20)
        db.flush()
        flush_gate.hold()
        versions(b"imm-", 20)
        while db.stats()["immutable_memtables"] < 1:
            db.put(b"b", b"." * 200)
        versions(b"mem-", 5)
        assert level_summary(db)[0][0] >= 1 and level_summary(db)[1][0] >= 1, level_summary(db)
        for snapshot, m in snapshots:
            expected = [(k, snapshot.get(k)) for k in (b"z", b"m", b"b", b"a") if snapshot.get(k) is not None]
            assert (b"m", m) in expected if m is not None else all(k != b"m" for k, _ in expected)
            assert list(snapshot.scan(reverse=True)) == expected
            keys = sorted(k for k, _ in expected)
            with snapshot.cursor() as c:
                assert c.seek_for_prev(b"m") and c.key() == max(k for k in keys if k <= b"m")
                assert c.seek(b"m") and c.key() == min(k for k in keys if k >= b"m")
                assert c.seek_to_last()
                got = [c.item()]
                while c.prev():
                    got.append(c.item())
                assert got == expected
            snapshot.close()


# -- close semantics, errors ----------------------------------------------------------------
def test_a_closed_cursor_refuses_every_step_and_releases_its_snapshot(io_method, tmp_path):
    with _loaded(tmp_path, io_method, 600, **OPTS) as db:
        engine = db._engine
        cursor = db.cursor()
        assert engine.oldest_snapshot() < engine.versions.last_seq + 1
        db.put(b"new", b"1")
        assert engine.oldest_snapshot() < engine.versions.last_seq      # pinned
        assert cursor.seek(b"k00100") and cursor.next()                  # mid-chunk: the next step needs no I/O
        cursor.close()
        assert engine.oldest_snapshot() == engine.versions.last_seq     # released
        assert not cursor.valid()
        for step in (cursor.next, cursor.prev, cursor.seek_to_first, cursor.seek_to_last, cursor.key,
                     cursor.value, cursor.item, lambda: cursor.seek(b"k"), lambda: cursor.seek_for_prev(b"k")):
            with pytest.raises(ClosedError, match="cursor is closed"):
                step()
        with pytest.raises(ClosedError):
            list(cursor)
        cursor.close()                                                   # idempotent
        with db.cursor() as c:
            assert c.seek_to_first()
        with pytest.raises(ClosedError):
            c.next()
        # The iterator form: StopIteration after its close.
        scan = db.scan(reverse=True)
        assert next(scan) == (b"new", b"1")
        scan.close()
        with pytest.raises(StopIteration):
            next(scan)


def test_every_step_after_db_close_raises_closed_error(io_method, tmp_path):
    db = _loaded(tmp_path, io_method, 600, **OPTS)
    cursor = db.cursor()
    assert cursor.seek(b"k00100") and cursor.next()
    other = db.cursor()
    acursor = db.aio.cursor()
    scan = db.scan(reverse=True)
    assert next(scan) == (b"k00599", b"v00599")
    snapshot = db.snapshot()
    db.close()
    assert not cursor.valid()
    for step in (cursor.next, cursor.prev, cursor.seek_to_first, cursor.key, lambda: cursor.seek(b"k")):
        with pytest.raises(ClosedError, match="database is closed"):
            step()
    with pytest.raises(ClosedError):
        other.seek_to_last()
    with pytest.raises(ClosedError):
        acursor.seek_to_first()
    with pytest.raises(ClosedError):
        next(scan)
    with pytest.raises(ClosedError):
        db.cursor()
    with pytest.raises(ClosedError):
        db.aio.cursor()
    with pytest.raises(ClosedError):
        snapshot.cursor()
    cursor.close()
    other.close()
    acursor.close()


def test_a_snapshot_cursor_stops_when_the_snapshot_is_released(io_method, tmp_path):
    with _loaded(tmp_path, io_method, 600, **OPTS) as db:
        snapshot = db.snapshot()
        db.remove(b"k00000")
        cursor = snapshot.cursor(prefix=b"k0000")
        assert cursor.seek_to_first() and cursor.key() == b"k00000"
        acursor = snapshot.aio.cursor()
        snapshot.close()
        with pytest.raises(ClosedError, match="snapshot is released"):
            cursor.next()
        with pytest.raises(ClosedError, match="snapshot is released"):
            acursor.seek_to_last()
        with pytest.raises(ClosedError):
            snapshot.cursor()
        cursor.close()
        acursor.close()


def test_async_cursor_close_and_errors(io_method, tmp_path):
    with _loaded(tmp_path, io_method, 600, **OPTS) as db:
        async def main():
            cursor = db.aio.cursor(b"k00100", b"k00200")
            with pytest.raises(ValueError, match="not on a key"):
                cursor.key()
            with pytest.raises(ValueError, match="not on a key"):
                await cursor.next()
            assert await cursor.seek_to_last() and cursor.item() == (b"k00199", b"v00199")
            assert await cursor.prev() and cursor.key() == b"k00198"
            assert await cursor.next() and await cursor.next() is False and not cursor.valid()
            with pytest.raises(TypeError):
                await cursor.seek("k00150")
            assert [k async for k, _ in cursor][:2] == [b"k00100", b"k00101"]
            cursor.close()
            with pytest.raises(ClosedError, match="cursor is closed"):
                await cursor.seek_to_first()
            with pytest.raises(ClosedError):
                await cursor.next()
            async with db.aio.cursor() as c:
                assert await c.seek(b"k00300")
            with pytest.raises(ClosedError):
                await c.next()
            return True

        assert asyncio.run(main())
        assert db.run(main())


def test_bad_input_is_refused_and_changes_nothing(io_method, tmp_path):
    with _loaded(tmp_path, io_method, 600, **OPTS) as db:
        engine = db._engine
        with pytest.raises(TypeError):
            db.cursor(prefix=1)
        with pytest.raises(TypeError):
            db.aio.cursor(b"a", "b")
        assert engine.oldest_snapshot() == engine.versions.last_seq        # no snapshot left pinned
        with pytest.raises(ValueError):
            db.scan(reverse=True, include_key=False, include_value=False)
        with db.cursor() as cursor:
            with pytest.raises(ValueError, match="not on a key"):
                cursor.next()
            with pytest.raises(ValueError, match="not on a key"):
                cursor.value()
            assert cursor.seek(b"k00005")
            with pytest.raises(TypeError):
                cursor.seek("k00001")
            with pytest.raises(ValueError):
                cursor.seek_for_prev(b"k" * (1 << 17))
            assert cursor.item() == (b"k00005", b"v00005")                    # where it was
            assert cursor.next() and cursor.key() == b"k00006"
            assert cursor.seek(b"zzz") is False and not cursor.valid()      # past the last key
            assert cursor.seek_for_prev(b"a") is False and not cursor.valid()

        async def blocking_inside_a_task():
            with db.cursor() as c:
                with pytest.raises(WrongThreadError):
                    c.seek_to_first()
            return True

        assert db.run(blocking_inside_a_task())


def test_cursor_over_an_empty_range_or_database(io_method, tmp_path):
    with open_db(tmp_path / "db", io_method, **OPTS) as db:
        with db.cursor() as c:
            assert not c.seek_to_first() and not c.seek_to_last()
            assert not c.seek(b"\x00") and not c.seek_for_prev(b"z")
            assert list(c) == []
        assert list(db.scan(reverse=True)) == []
        db.put(b"\x00", b"low")
        db.put(b"a", b"1")
        with db.cursor(b"b") as c:
            assert not c.seek_to_first() and not c.seek_to_last()
        with db.cursor() as c:
            assert c.seek_to_last() and c.prev() and c.item() == (b"\x00", b"low")
            assert c.prev() is False
        assert list(db.scan(reverse=True)) == [(b"a", b"1"), (b"\x00", b"low")]


def test_keys_of_the_largest_size_at_direction_switches_and_seek_for_prev(io_method, tmp_path):
    """The key right after a key of MAX_KEY_BYTES is not that key plus a
    zero byte (too long) but its last byte raised: re-seeks after such a
    key, and seek_for_prev of it, still find their neighbours."""
    from hedge.lsm.keys import MAX_KEY_BYTES
    big = b"m" * MAX_KEY_BYTES
    top = b"\xff" * MAX_KEY_BYTES
    with open_db(tmp_path / "db", io_method, **OPTS) as db:
        for key in (b"a", big, b"m" * (MAX_KEY_BYTES - 1) + b"n", b"z", top):
            db.put(key, key[:1])
        with db.cursor() as c:
            assert c.seek_for_prev(big) and c.key() == big
            assert c.next() and c.key() == b"m" * (MAX_KEY_BYTES - 1) + b"n"     # a direction switch
            assert c.prev() and c.key() == big and c.prev() and c.key() == b"a"
            assert c.next() and c.key() == big                                    # a switch from big
            assert c.seek_for_prev(top) and c.key() == top
            assert c.prev() and c.key() == b"z" and c.next() and c.key() == top
            assert c.next() is False
        with db.cursor(b"m", big, include_end=True) as c:
            assert c.seek_to_last() and c.key() == big
        assert [k[:1] for k in db.scan(big, reverse=True, include_value=False)] == [b"\xff", b"z", b"m", b"m"]
        top_only = list(db.scan(top, include_start=False)) + list(db.scan(top, prefix=b"\xff", include_start=False))
        assert top_only == []
        with db.cursor(top, include_start=False) as c:
            assert not c.seek_to_first() and not c.seek_to_last() and not c.seek(b"a") and not c.seek_for_prev(top)
        assert [k[:1] for k in db.scan(big, top, include_start=False, include_end=True, include_value=False)] == \
            [b"m", b"z", b"\xff"]


def test_the_empty_key_is_the_first_key_both_ways(io_method, tmp_path):
    with open_db(tmp_path / "db", io_method, **OPTS) as db:
        db.put(b"", b"empty")
        db.put(b"a", b"1")
        db.flush()
        db.put(b"", b"newer")
        assert list(db.scan(reverse=True)) == [(b"a", b"1"), (b"", b"newer")]
        assert list(db.scan(b"", b"", include_end=True, reverse=True)) == [(b"", b"newer")]
        assert list(db.scan(b"", include_start=False, reverse=True)) == [(b"a", b"1")]
        with db.cursor() as c:
            assert c.seek(b"") and c.item() == (b"", b"newer")
            assert c.prev() is False
            assert c.seek_for_prev(b"") and c.key() == b"" and c.next() and c.key() == b"a"
            assert c.seek_to_last() and c.prev() and c.key() == b"" and c.next() and c.key() == b"a"
        db.remove(b"")
        assert list(db.scan(reverse=True)) == [(b"a", b"1")]
