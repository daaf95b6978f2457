"""Reverse scans: the sources of a scan read backwards, and the merge that
turns them into the (key, value) pairs a reader at a snapshot sees, keys
descending.

A *reverse run* is a list of entries ``(user_key, seq, kind, value)`` with
keys descending and the versions of one key next to each other (in any
order among themselves).  A reverse cursor hands out such runs, one after
the other, through ``await next_block()`` (None at the end), like the
forward cursors of hedge/lsm/amerge.py:

- ``ReverseTableCursor``: the tables of one level (or one L0 table), last
  table and last block first, read ahead as a TableCursor reads (a scan's
  first reads sized by its limit and gathered by ``read_first_blocks``);
  each block is decoded whole, cut to the range and reversed;
- a memtable: ``ListCursor(memtable.iter_reverse(start, end, snapshot))``
  (each key's newest version the snapshot sees).

Invariant the merge relies on: in every source, all the versions of a key
are adjacent, even when they span blocks (a key's versions end one block
and begin the next: read backwards, the next run begins with the rest of
them) or tables of one level.  So the merge takes, for the largest key at
the head of any source, every version of it from every source that has it
(reading further runs where one ends inside the key) and keeps the one
with the largest seq <= the snapshot.  Sequence numbers are unique per
write, so the choice does not depend on source order; the same write seen
in two sources is the same version.

Used by one task at a time, on the caller's executor.
"""
from __future__ import annotations

import bisect
from operator import itemgetter
from typing import AsyncIterator

from hedge.lsm.amerge import TableCursor
from hedge.lsm.keys import PUT

_user_key = itemgetter(0)


class ReverseTableCursor(TableCursor):
    """The entries of ``readers`` (tables in key order: one level, or one L0
    table) with start <= key < end, as reverse runs, last block first.

    Reads as TableCursor does, backwards: the first read of a table takes
    its last block (with ``pair_bytes`` and a limit given to
    ``first_read``, the blocks that many pairs are expected to need),
    each further read twice as many blocks as the last, each read one
    request over blocks adjacent in the file."""

    __slots__ = ()

    def __init__(self, readers: list, start: bytes | None, end: bytes | None, fill_cache: int = True,
                 pair_bytes: float = 0.0):
        super().__init__(readers[::-1], start, end, fill_cache, pair_bytes)
        self._seek = end

    def _table_ranges(self, reader):
        return reader.iter_block_ranges_reverse(self._start, self._end)

    @staticmethod
    def _file_order(want: list) -> list:
        # ``want`` runs backwards through the file.
        return want[::-1]

    @staticmethod
    def _pending_order(blocks: list) -> list:
        # In file order, the last block to hand out comes first.
        return blocks

    async def next_block(self, limit: int | None = None) -> list | None:
        """The next non-empty reverse run, or None at the end: a block
        decoded whole, cut to the range and reversed (``limit`` is not
        used: the merge takes whole runs)."""
        start = self._start
        end = self._end
        while True:
            block = self._next_now(None)
            if type(block) is list:
                block = await self._read(block)
            if block is None:
                return None
            self._first = False
            entries = block.entries()
            if not entries:
                continue
            hi = len(entries)
            if end is not None and entries[-1][0] >= end:
                hi = bisect.bisect_left(entries, end, key=_user_key)
            lo = 0
            if start is not None and entries[0][0] < start:
                # The first block of the span (block_ranges): the last one read.
                lo = bisect.bisect_left(entries, start, 0, hi, key=_user_key)
            run = entries[lo:hi]
            if run:
                run.reverse()
                return run


async def reverse_visible_merge(cursors: list, snapshot_seq: int, want: int = 256) -> AsyncIterator[list]:
    """(key, value) for each key, descending, whose newest version with seq
    <= snapshot_seq across ``cursors`` (reverse cursors, see the module
    docstring) is a PUT, in chunks of at least ``want`` pairs but the last
    (the protocol of ``visible_merge`` in hedge/lsm/amerge.py).  Awaits
    only when a cursor needs its next run.

    When one source alone holds the largest key at the heads, its entries
    above every other head's key (a stretch no other source can add to)
    are decided in one pass over its runs; a key at the head of several
    sources is gathered from each."""
    out: list = []
    append = out.append
    heads = []                  # [cursor, run, position in the run]
    for cursor in cursors:
        run = await cursor.next_block()
        if run:
            heads.append([cursor, run, 0])
    while heads:
        if len(out) >= want:
            want = (yield out) or want
            out = []
            append = out.append
        if len(heads) == 1:
            i = 0
            bound = None
        else:
            keys = [head[1][head[2]][0] for head in heads]
            key = max(keys)
            if keys.count(key) > 1:
                best = await _gather_key(heads, key, snapshot_seq)
                if best is not None and best[2] == PUT:
                    append((key, best[3]))
                continue
            i = keys.index(key)
            del keys[i]
            bound = max(keys)
        # The stretch of heads[i] above ``bound``: no other source holds
        # any of its keys.
        owner = heads[i]
        cursor, run, pos = owner
        current = None          # the key whose versions are being read (None: none yet)
        best = None
        while run is not None:
            n = len(run)
            while pos < n:
                entry = run[pos]
                key = entry[0]
                if bound is not None and key <= bound:
                    break
                if key != current:
                    if best is not None and best[2] == PUT:
                        append((current, best[3]))
                    current = key
                    best = None
                seq = entry[1]
                if seq <= snapshot_seq and (best is None or seq > best[1]):
                    best = entry
                pos += 1
            if pos < n:
                break
            if len(out) >= want:
                want = (yield out) or want
                out = []
                append = out.append
            run = await cursor.next_block()
            pos = 0
        if best is not None and best[2] == PUT:
            append((current, best[3]))
        if run is None:
            del heads[i]
        else:
            owner[1] = run
            owner[2] = pos
    if len(out) >= want:
        yield out                   # a full chunk: the last, shorter one follows
        out = []
    yield out


async def _gather_key(heads: list, key: bytes, snapshot_seq: int):
    """Read every version of ``key`` (the largest key at the heads) from
    every head that has it, advancing those heads past it (and dropping
    the ones that end); return the version with the largest seq <=
    snapshot_seq, or None."""
    best = None
    for i in range(len(heads) - 1, -1, -1):
        head = heads[i]
        cursor, run, pos = head
        if run[pos][0] != key:
            continue
        n = len(run)
        while True:
            entry = run[pos]
            if entry[0] != key:
                break
            seq = entry[1]
            if seq <= snapshot_seq and (best is None or seq > best[1]):
                best = entry
            pos += 1
            if pos == n:
                run = await cursor.next_block()
                if run is None:
                    break
                pos = 0
                n = len(run)
        if run is None:
            del heads[i]
        else:
            head[1] = run
            head[2] = pos
    return best
