"""A program using the public API as a user would, with assert_type on
what it gets back: tests/test_typing.py type-checks it with mypy --strict
(it is never run)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, assert_type

import hedge


def blocking(path: str) -> None:
    with hedge.open(path, create=True, pin=False) as db:
        assert_type(db, hedge.DB)
        db.put(b"k", b"v", sync=True)
        db.put(bytearray(b"k"), memoryview(b"v"))
        assert_type(db.get(b"k"), bytes | None)
        assert_type(db.get(b"k", b""), bytes)
        assert_type(db.get(b"k", 0), bytes | int)
        assert_type(db[b"k"], bytes)
        db[b"x"] = b"y"
        del db[b"x"]
        assert_type(b"k" in db, bool)
        assert_type(db.multi_get([b"a", b"b"]), list[bytes | None])
        for key, value in db.scan(b"a", b"z"):
            assert_type(key, bytes)
            assert_type(value, bytes)
        assert_type(iter(db), Iterator[bytes])
        with db.write_batch(sync=True) as batch:
            assert_type(batch, hedge.WriteBatch)
            batch.put(b"a", b"1")
            batch.remove(b"b")
        other = hedge.WriteBatch()
        other.append(batch)
        assert_type(len(other), int)
        db.write(other)
        db.flush()
        db.compact(b"a", b"m")
        db.compact()
        assert_type(db.approximate_size(b"a", b"z"), int)
        assert_type(db.property("hedge.num-files"), int | float)
        assert_type(db.stats(), dict[str, Any])
        assert_type(db.read_only, bool)
        db.checkpoint(path + "-copy")
        with db.snapshot() as snap:
            assert_type(snap.get(b"k"), bytes | None)
            assert_type(snap.multi_get([b"k"]), list[bytes | None])
            assert_type(list(snap.scan()), list[tuple[bytes, bytes]])
        for key in db.scan(prefix=b"a", reverse=True, include_value=False):
            assert_type(key, bytes)
        assert_type(db.scan(limit=3).to_list(), list[tuple[bytes, bytes]])
        assert_type(db.scan(include_key=False).to_list(), list[bytes])
        with db.cursor(b"a", b"z", include_end=True) as cursor:
            assert_type(cursor, hedge.Cursor)
            assert_type(cursor.seek(b"k"), bool)
            assert_type(cursor.seek_for_prev(b"k"), bool)
            assert_type(cursor.seek_to_first(), bool)
            assert_type(cursor.seek_to_last(), bool)
            while cursor.valid():
                assert_type(cursor.key(), bytes)
                assert_type(cursor.value(), bytes)
                assert_type(cursor.item(), tuple[bytes, bytes])
                cursor.prev()
            assert_type(cursor.next(), bool)
            for key, value in cursor:
                assert_type(value, bytes)
        with db.snapshot() as snap:
            assert_type(snap.cursor(prefix=b"p"), hedge.Cursor)
            assert_type(list(snap.scan(reverse=True)), list[tuple[bytes, bytes]])
            assert_type(snap.aio.cursor(), hedge.AsyncCursor)
        assert_type(db.run(job(db)), int)
    with hedge.open(path, read_only=True) as ro:
        try:
            ro.put(b"k", b"v")
        except hedge.ReadOnlyError:
            pass
    hedge.destroy(path + "-copy")
    report = hedge.repair(path, io_method="threads")
    assert_type(report, hedge.RepairReport)
    assert_type(report.tables_moved, list[tuple[str, str]])


async def job(db: hedge.DB) -> int:
    await db.aio.put(b"k", b"v")
    assert_type(await db.aio.get(b"k"), bytes | None)
    values = await hedge.gather(db.aio.get(b"a"), db.aio.get(b"b"))
    assert_type(values, list[Any])
    await db.aio.compact(b"a", b"b")
    await db.aio.checkpoint("/tmp/x")
    async for key, value in db.aio.scan():
        assert_type(key, bytes)
    async for value in db.aio.scan(reverse=True, include_key=False):
        assert_type(value, bytes)
    assert_type(await db.aio.scan(limit=3).to_list(), list[tuple[bytes, bytes]])
    assert_type(await db.aio.scan(include_value=False).to_list(), list[bytes])
    async with db.aio.cursor(prefix=b"a") as cursor:
        assert_type(cursor, hedge.AsyncCursor)
        assert_type(await cursor.seek(b"k"), bool)
        assert_type(await cursor.seek_to_last(), bool)
        if await cursor.prev():
            assert_type(cursor.key(), bytes)
        assert_type(await cursor.next(), bool)
        async for key, value in cursor:
            assert_type(key, bytes)
    return len(values)


async def in_asyncio(db: hedge.DB) -> None:
    assert_type(await db.aio.multi_get([b"a"]), list[bytes | None])
    await db.aio.flush()
    assert_type(db.aio.approximate_size(b"", b"z"), int)       # no I/O: nothing to await
    assert_type(db.aio.property("hedge.num-files"), int | float)
    assert_type(db.aio.stats(), dict[str, Any])
    with db.aio.snapshot() as snap:
        assert_type(await snap.aio.get(b""), bytes | None)


def main(path: str) -> None:
    blocking(path)
    with hedge.open(path) as db:
        asyncio.run(in_asyncio(db))
