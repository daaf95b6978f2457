"""Async counterparts of hedge/lsm/iterators.py, for sources that read
tables through the ring.

``amerge(sources)`` merges async iterators of entries, each in entry order
(key asc, seq desc), into one async iterator in entry order.  Sequence
numbers are unique across sources, so ties cannot occur between distinct
writes; an identical (key, seq) from two sources (the same write seen twice)
is yielded once, from the earlier source.

``avisible(entries, snapshot_seq)`` yields (key, value) for the newest
version of each key with seq <= snapshot_seq, skipping deleted keys.

``as_async(iterable)`` wraps a plain iterator (memtables) as a source.

Used by one task at a time; the sources are consumed on the caller's
executor.
"""
from __future__ import annotations

import heapq
from typing import AsyncIterator, Iterable

from hedge.lsm.keys import Kind

PUT = Kind.PUT


async def as_async(iterable: Iterable) -> AsyncIterator:
    for item in iterable:
        yield item


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


async def avisible(entries, snapshot_seq: int) -> AsyncIterator[tuple[bytes, bytes]]:
    decided = None
    async for key, seq, kind, value in entries:
        if seq > snapshot_seq or key == decided:
            continue
        decided = key
        if kind == PUT:
            yield key, value


async def concat(sources: list) -> AsyncIterator:
    """The sources one after the other (tables of one level, in key order)."""
    for source in sources:
        async for entry in source:
            yield entry
