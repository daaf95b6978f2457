"""Async counterparts of hedge/lsm/iterators.py, for sources that read
tables through the ring.

``amerge(sources)`` (compaction) merges async iterators of entries, each in entry order
(key asc, seq desc), into one async iterator in entry order.  Sequence
numbers are unique across sources, so ties cannot occur between distinct
writes; an identical (key, seq) from two sources (the same write seen twice)
is yielded once, from the earlier source.

``visible_merge(cursors, snapshot_seq)`` yields (key, value) for the
newest version of each key with seq <= snapshot_seq, skipping deleted keys,
over cursors that hand out runs of entries a block at a time (``TableCursor``
for tables, ``ListCursor`` for memtables): the scan path.

Used by one task at a time; the sources are consumed on the caller's
executor.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
from typing import AsyncIterator

from hedge.lsm.keys import Kind

PUT = Kind.PUT


async def amerge(sources: list) -> AsyncIterator:
    if len(sources) == 1:
        async for entry in sources[0]:
            yield entry
        return
    heap = []
    for idx, source in enumerate(sources):
        it = source.__aiter__()
        try:
            entry = await it.__anext__()
        except StopAsyncIteration:
            continue
        heap.append((entry[0], -entry[1], idx, entry, it))
    heapq.heapify(heap)
    last = None
    while heap:
        key, neg_seq, idx, entry, it = heap[0]
        ident = (key, neg_seq)
        if ident != last:
            last = ident
            yield entry
        try:
            nxt = await it.__anext__()
        except StopAsyncIteration:
            heapq.heappop(heap)
            continue
        heapq.heapreplace(heap, (nxt[0], -nxt[1], idx, nxt, it))


async def table_entries(readers: list, start: bytes | None, end: bytes | None,
                        fill_cache: bool = True) -> AsyncIterator:
    """Every entry of ``readers`` (tables in key order, e.g. one level, or a
    single L0 table) with start <= key < end, in entry order: one generator
    walking the blocks, however many tables."""
    for reader in readers:
        first = True
        for offset, length in reader.iter_block_ranges(start, end):
            block = await reader.read_block(offset, length, fill_cache)
            for entry in block.iter_from(start if first else None):
                if end is not None and entry[0] >= end:
                    return
                yield entry
            first = False


class TableCursor:
    """The entries of ``readers`` (tables in key order: one level, or one L0
    table) with start <= key < end, a block at a time."""

    __slots__ = ("_readers", "_start", "_end", "_fill", "_next_reader", "_reader", "_ranges", "_first")

    def __init__(self, readers: list, start: bytes | None, end: bytes | None, fill_cache: bool = True):
        self._readers = readers
        self._start = start
        self._end = end
        self._fill = fill_cache
        self._next_reader = 0
        self._reader = None
        self._ranges = None
        self._first = True

    async def next_block(self) -> list | None:
        """The next non-empty run of entries, or None at the end."""
        end = self._end
        while True:
            if self._ranges is None:
                if self._next_reader >= len(self._readers):
                    return None
                self._reader = self._readers[self._next_reader]
                self._next_reader += 1
                self._ranges = self._reader.iter_block_ranges(self._start, end)
                self._first = True
            rng = next(self._ranges, None)
            if rng is None:
                self._ranges = None
                continue
            block = await self._reader.read_block(rng[0], rng[1], self._fill)
            entries = block.entries(self._start if self._first else None)
            self._first = False
            if end is not None and entries and entries[-1][0] >= end:
                entries = entries[:bisect.bisect_left(entries, end, key=_user_key)]
                self._readers = ()        # nothing at or past `end` follows
                self._ranges = None
                self._next_reader = 0
            if entries:
                return entries


class ListCursor:
    """A plain iterator of entries (memtables), in runs of ``size``."""

    __slots__ = ("_it", "_size")

    def __init__(self, iterable, size: int = 128):
        self._it = iter(iterable)
        self._size = size

    async def next_block(self) -> list | None:
        run = list(itertools.islice(self._it, self._size))
        return run or None


def _user_key(entry) -> bytes:
    return entry[0]


async def visible_merge(cursors: list, snapshot_seq: int) -> AsyncIterator[tuple[bytes, bytes]]:
    """(key, value) for the newest version of each key with seq <=
    snapshot_seq across ``cursors`` (each in entry order), skipping deleted
    keys.  Merges whole blocks: it awaits only when a cursor needs its next
    block, never per entry."""
    decided = None
    if len(cursors) == 1:
        cursor = cursors[0]
        while True:
            run = await cursor.next_block()
            if run is None:
                return
            for key, seq, kind, value in run:
                if seq > snapshot_seq or key == decided:
                    continue
                decided = key
                if kind == PUT:
                    yield key, value
    runs, positions, heap = [], [], []
    for idx, cursor in enumerate(cursors):
        run = await cursor.next_block()
        runs.append(run)
        positions.append(0)
        if run:
            heap.append((run[0][0], -run[0][1], idx))
    heapq.heapify(heap)
    heapreplace, heappop = heapq.heapreplace, heapq.heappop
    while heap:
        key, neg_seq, idx = heap[0]
        run = runs[idx]
        pos = positions[idx]
        if key != decided and -neg_seq <= snapshot_seq:
            decided = key
            entry = run[pos]
            if entry[2] == PUT:
                yield key, entry[3]
        pos += 1
        if pos == len(run):
            run = await cursors[idx].next_block()
            if run is None:
                heappop(heap)
                continue
            runs[idx] = run
            pos = 0
        positions[idx] = pos
        entry = run[pos]
        heapreplace(heap, (entry[0], -entry[1], idx))
