"""Scans: correctness over the memtable, immutable memtables and several
levels with tombstones and overwrites (against a dict), snapshot isolation
while writers go on (a thread, or coroutines on the same executor), and an
async scan abandoned early."""
from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

import hedge
from hedge.io.traps import reschedule
from tests.db.helpers import SMALL, level_summary, model_scan, open_db

# A hung engine call fails its test instead of the whole run.
pytestmark = pytest.mark.timeout(120)

KEYS = [b"k%03d" % i for i in range(300)]


def random_bound(rng: random.Random):
    r = rng.random()
    if r < 0.15:
        return None
    if r < 0.6:
        return rng.choice(KEYS)
    if r < 0.8:
        return rng.choice(KEYS) + bytes([rng.randrange(256)])       # between two keys
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))


def random_writes(db, model: dict, rng: random.Random, n: int) -> None:
    for _ in range(n):
        r = rng.random()
        key = rng.choice(KEYS)
        if r < 0.2:
            db.remove(key)
            model.pop(key, None)
        elif r < 0.3:
            batch = hedge.WriteBatch()
            for _ in range(rng.randint(1, 5)):
                k = rng.choice(KEYS)
                if rng.random() < 0.3:
                    batch.remove(k)
                    model.pop(k, None)
                else:
                    v = rng.randbytes(rng.randint(0, 90))
                    batch.put(k, v)
                    model[k] = v
            db.write(batch)
        else:
            value = rng.randbytes(rng.choice((0, rng.randint(1, 30), rng.randint(30, 200))))
            db.put(key, value)
            model[key] = value


def check_scans(db, model: dict, rng: random.Random, count: int) -> None:
    assert list(db.scan()) == model_scan(model)
    assert list(db.scan(None, None)) == model_scan(model)
    for _ in range(count):
        start, end = random_bound(rng), random_bound(rng)
        assert list(db.scan(start, end)) == model_scan(model, start, end), (start, end)
    assert list(db.scan(b"k100", b"k100")) == []
    assert list(db.scan(b"k200", b"k100")) == []


def test_scan_over_memtable_and_levels_with_tombstones_matches_a_dict(io_method, tmp_path):
    rng = random.Random(f"scan-{io_method}")
    path = tmp_path / "db"
    model: dict[bytes, bytes] = {}
    db = open_db(path, io_method, **SMALL)
    try:
        random_writes(db, model, rng, 700)
        db.compact()
        # Where compaction leaves the data depends on timing (all of it may
        # sit in one level); one small flush on top (a single L0 table, below
        # the trigger of 2) makes sure scans cross levels.
        random_writes(db, model, rng, 5)        # < 4 KiB: one memtable, one table
        db.flush()
        assert sum(1 for files, _ in level_summary(db) if files) >= 2, level_summary(db)
        check_scans(db, model, rng, 30)
        random_writes(db, model, rng, 250)       # overwrites and tombstones over the levels
        db.flush()
        check_scans(db, model, rng, 30)
        random_writes(db, model, rng, 150)       # some in the memtable, maybe immutable ones
        check_scans(db, model, rng, 30)
        for k in list(model)[::3]:               # tombstones for a third of the keys, unflushed
            db.remove(k)
            del model[k]
        check_scans(db, model, rng, 30)
    finally:
        db.close()
    with open_db(path, io_method, **SMALL) as db:
        check_scans(db, model, rng, 30)


def _snapshot_writes(values: dict[bytes, bytes], n_keys: int) -> int | None:
    """From a scan of the round-robin writer's keys, the number of writes
    done when the snapshot was taken, or None when the scan shows no state
    the writer ever left the keys in."""
    times = []
    for j in range(n_keys):
        v = values.get(b"r%03d" % j)
        times.append(0 if v is None else int(v[:8]) + 1)
    # Write n goes to key n % N with version n // N; after c writes key j
    # was written ceil((c - j) / N) times.
    c = sum(times)
    expect = [max(0, -(-(c - j) // n_keys)) for j in range(n_keys)]
    return c if expect == times else None


N_KEYS = 40
WRITES_BETWEEN_SCANS = 30


def _round_robin_value(n: int) -> bytes:
    return b"%08d" % (n // N_KEYS) + b"." * 150


def test_scan_sees_the_snapshot_at_its_start_while_a_thread_writes(io_method, tmp_path):
    db = open_db(tmp_path / "db", io_method, **SMALL)
    done = [0]                      # writes completed (the call returned)
    progress = threading.Condition()
    stop = threading.Event()
    errors = []

    def writer():
        n = 0
        try:
            while not stop.is_set():
                db.put(b"r%03d" % (n % N_KEYS), _round_robin_value(n))
                n += 1
                with progress:
                    done[0] = n
                    progress.notify_all()
        except BaseException as e:       # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            with progress:
                progress.notify_all()

    def wait_for_writes(count: int) -> None:
        """Until the writer has completed ``count`` writes (or failed)."""
        with progress:
            progress.wait_for(lambda: done[0] >= count or errors)
        assert not errors, errors

    t = threading.Thread(target=writer)
    t.start()
    try:
        checked = 0
        for _ in range(12):
            # A memtable holds ~25 of these writes: between two scans the
            # writer switches memtables, so flushes (and compactions) run
            # during the scans.
            wait_for_writes(done[0] + WRITES_BETWEEN_SCANS)
            low = done[0]
            it = db.scan(b"r", b"s")
            high = done[0]
            rows = []
            for row in it:
                rows.append(row)
                if len(rows) % 10 == 0:
                    wait_for_writes(done[0] + 1)     # the writer goes on meanwhile
            c = _snapshot_writes(dict(rows), N_KEYS)
            assert c is not None, f"scan saw no consistent state: {[v[:8] for _, v in rows]}"
            # The write in flight at either end may or may not be in.
            assert low <= c <= high + 1, (low, c, high)
            checked += 1
            assert not errors, errors
    finally:
        stop.set()
        t.join()
        try:
            stats = db.stats()
        finally:
            db.close()
    assert not errors, errors
    assert checked == 12
    assert stats["compaction"]["flush_bytes"] > 0, "no flush happened during the scans"


def test_scan_snapshot_with_concurrent_coroutines(io_method, tmp_path):
    db = open_db(tmp_path / "db", io_method, **SMALL)
    done = [0]
    finished = [False]

    async def writer():
        n = 0
        while not finished[0] or n < 400:
            await db.aio.put(b"r%03d" % (n % N_KEYS), _round_robin_value(n))
            n += 1
            done[0] = n
            if n % 3 == 0:
                await reschedule()
            if n > 5000:
                break
        return n

    async def scanner():
        results = []
        for _ in range(8):
            for _ in range(7):
                await reschedule()
            low = done[0]
            rows = []
            async for row in db.aio.scan(b"r", b"s"):
                rows.append(row)
                await reschedule()
            results.append((low, _snapshot_writes(dict(rows), N_KEYS), done[0]))
        finished[0] = True
        return results

    async def both():
        return await hedge.gather(writer(), scanner())

    try:
        total, results = db.run(both())
    finally:
        db.close()
    for low, c, high in results:
        assert c is not None, "an async scan saw no consistent state"
        assert low <= c <= high + 1, (low, c, high)
    assert total >= 400


def test_async_scan_left_early_releases_its_resources(io_method, tmp_path):
    path = tmp_path / "db"
    db = open_db(path, io_method, **SMALL)
    rows = [(b"a%04d" % i, b"%d" % i * 20) for i in range(600)]
    for k, v in rows:
        db.put(k, v)
    db.flush()

    async def first(n):
        got = []
        async for row in db.aio.scan(b"a0100", None):
            got.append(row)
            if len(got) == n:
                break
        return got

    for n in (1, 5, 250):
        assert db.run(first(n)) == rows[100:100 + n]
    # The tables under the abandoned scans can still be compacted away.
    for k, v in rows[::2]:
        db.put(k, v + b"!")
    db.compact()
    assert db.get(b"a0000") == rows[0][1] + b"!"
    t0 = time.monotonic()
    db.close()
    assert time.monotonic() - t0 < 10
    with open_db(path, io_method, **SMALL) as db:
        assert db.get(b"a0001") == rows[1][1]
        assert len(list(db.scan())) == 600


def test_sync_scan_left_early_then_close(io_method, tmp_path):
    path = tmp_path / "db"
    db = open_db(path, io_method, **SMALL)
    for i in range(300):
        db.put(b"b%04d" % i, b"x" * 50)
    it = iter(db.scan())
    assert next(it) == (b"b0000", b"x" * 50)
    del it
    half = db.scan(b"b0100")
    assert [next(half) for _ in range(3)] == [(b"b%04d" % i, b"x" * 50) for i in (100, 101, 102)]
    db.compact()
    db.close()
    with open_db(path, io_method, **SMALL) as db:
        assert len(list(db.scan())) == 300


@pytest.mark.parametrize("cache_bytes", [SMALL["block_cache_bytes"], 0], ids=["cache", "no-cache"])
def test_scan_limit_is_a_prefix_of_the_whole_scan(io_method, tmp_path, cache_bytes):
    """``limit`` gives the first ``limit`` items of the same scan, blocking
    (iterated and ``to_list``), through db.aio (``async for`` and
    ``to_list``) and on a snapshot, in both directions and every shape,
    with limits below, at and above the chunk sizes, with and without a
    block cache (a limit sizes the reads); a scan that reaches its limit
    holds no snapshot even when nobody closes it."""
    rng = random.Random(f"limit-{io_method}")
    model: dict[bytes, bytes] = {}
    with open_db(tmp_path / "db", io_method, **dict(SMALL, block_cache_bytes=cache_bytes)) as db:
        random_writes(db, model, rng, 600)
        db.compact()
        random_writes(db, model, rng, 200)
        snapshot = db.snapshot()
        random_writes(db, model, rng, 100)
        engine = db._engine
        pinned = dict(engine._snapshots)        # the snapshot's own

        async def aio_list(scanner, **options):
            return [item async for item in scanner.scan(**options)]

        async def aio_to_list(scanner, **options):
            return await scanner.scan(**options).to_list()

        for _ in range(60):
            options = {"start": random_bound(rng), "end": random_bound(rng), "reverse": rng.random() < 0.3}
            shape = rng.choice(({}, {"include_value": False}, {"include_key": False}))
            options.update(shape)
            limit = rng.choice((0, 1, 2, 15, 16, 17, 100, 256, 257, 1000))
            for reader in (db, snapshot):
                whole = list(reader.scan(**options))
                assert list(reader.scan(**options, limit=limit)) == whole[:limit], (options, limit)
                assert reader.scan(**options, limit=limit).to_list() == whole[:limit], (options, limit)
                assert reader.scan(**options).to_list() == whole, options
                assert db.run(aio_list(reader.aio, **options, limit=limit)) == whole[:limit], (options, limit)
                assert db.run(aio_to_list(reader.aio, **options, limit=limit)) == whole[:limit], (options, limit)
                assert db.run(aio_to_list(reader.aio, **options)) == whole, options
            assert engine._snapshots == pinned, "a limited scan left its snapshot pinned"
        snapshot.close()


def test_a_scan_sizes_its_reads_by_each_sources_share_of_the_entries(tmp_path):
    """Each table source of a scan, forward or reverse, is told its bytes
    on disk per entry of every source, memtables included (TableCursor's
    read budget): its size over the entries of the whole tree."""
    from hedge.lsm.amerge import TableCursor
    from hedge.lsm.engine import _table_cursors
    from hedge.lsm.reverse import ReverseTableCursor
    with open_db(tmp_path / "db", "sync", **dict(SMALL, memtable_bytes=1 << 20, l0_compaction_trigger=8)) as db:
        rng = random.Random(5)
        for _ in range(3):
            for _ in range(150):
                db.put(rng.randbytes(8), rng.randbytes(rng.randrange(50, 150)))
            db.flush()
        for _ in range(40):
            db.put(rng.randbytes(8), b"v")
        sv = db._engine._sv
        tables = sv.version.levels[0]
        assert len(tables) == 3 and len(sv.mem) == 40
        entries = sum(m.entries for m in tables) + 40
        for cursor_class in (TableCursor, ReverseTableCursor):
            cursors = _table_cursors(sv, None, None, cursor_class, pair_bytes=True)
            assert [c._pair_bytes for c in cursors] == pytest.approx([m.size / entries for m in tables])
        db.compact(b"")
        sv = db._engine._sv
        levels = [level for level in range(1, len(sv.version.levels)) if sv.version.levels[level]]
        entries = sv.version.entries + len(sv.mem)
        cursors = _table_cursors(sv, None, None, TableCursor, pair_bytes=True)
        assert levels and not sv.version.levels[0]
        assert [c._pair_bytes for c in cursors] == pytest.approx(
            [sv.version.level_bytes(level) / entries for level in levels])


def _rows_half_in_a_table(tmp_path, io_method):
    """700 rows, every other one flushed into a table and the rest left in
    the memtable: (the rows in key order, the open database)."""
    rows = [(b"c%04d" % i, b"%d" % i * 30) for i in range(700)]
    db = open_db(tmp_path / "db", io_method, **SMALL)
    for k, v in rows[::2]:
        db.put(k, v)
    db.flush()
    for k, v in rows[1::2]:
        db.put(k, v)
    return rows, db


def test_async_scan_to_list_takes_what_iteration_left(io_method, tmp_path):
    """``to_list()`` gives the items not taken yet (all of them, or the
    rest after some steps), the same from a hedge task and from asyncio;
    after it the scan is over; on a closed database it raises ClosedError
    like a step does."""
    rows, db = _rows_half_in_a_table(tmp_path, io_method)
    try:

        async def partly(steps, **options):
            scan = db.aio.scan(**options)
            taken = [await scan.__anext__() for _ in range(steps)]
            rest = await scan.to_list()
            after = [item async for item in scan] + await scan.to_list()
            return taken, rest, after

        for steps in (0, 1, 17, 699):
            assert db.run(partly(steps)) == (rows[:steps], rows[steps:], [])
            assert asyncio.run(partly(steps)) == (rows[:steps], rows[steps:], [])
        taken, rest, after = db.run(partly(3, end=b"c0100", reverse=True, include_value=False, limit=50))
        assert taken + rest == [k for k, _ in rows[99::-1]][:50] and after == []

        async def whole(**options):
            return await db.aio.scan(**options).to_list()

        assert asyncio.run(whole(start=b"c0650", include_key=False)) == [v for _, v in rows[650:]]
        assert db.run(whole(limit=0)) == []
    finally:
        db.close()

    async def closed():
        return await db.aio.scan().to_list()

    with pytest.raises(hedge.ClosedError):
        asyncio.run(closed())


def test_blocking_scan_to_list_takes_what_iteration_left(io_method, tmp_path):
    """``ScanIterator.to_list()`` gives the items not taken yet, across
    several chunks (the first of SCAN_CHUNK_MIN items, then doubling);
    after it the iterator is over; on a closed database it raises
    ClosedError like a step does."""
    rows, db = _rows_half_in_a_table(tmp_path, io_method)
    try:
        for steps in (0, 1, 17, 699, 700):
            it = db.scan()
            taken = [next(it) for _ in range(steps)]
            assert taken + it.to_list() == rows
            assert next(it, None) is None and it.to_list() == []
        it = db.scan(end=b"c0100", reverse=True, include_value=False, limit=50)
        taken = [next(it) for _ in range(3)]
        assert taken + it.to_list() == [k for k, _ in rows[99::-1]][:50]
        assert db.scan(start=b"c0650", include_key=False).to_list() == [v for _, v in rows[650:]]
        assert db.scan(limit=0).to_list() == []
        left_open = db.scan()
    finally:
        db.close()
    with pytest.raises(hedge.ClosedError):
        left_open.to_list()


def test_scan_refuses_a_bad_limit(tmp_path):
    with open_db(tmp_path / "db", "sync") as db:
        db.put(b"a", b"1")
        for bad, error in (("3", TypeError), (1.5, TypeError), (True, TypeError), (-1, ValueError)):
            with pytest.raises(error, match="limit"):
                db.scan(limit=bad)
            with pytest.raises(error, match="limit"):
                db.aio.scan(limit=bad)
        assert list(db.scan(limit=1)) == [(b"a", b"1")]
