"""Async counterparts of hedge/lsm/iterators.py, for sources that read
tables through the ring.

Both merges work on *cursors* that hand out runs of entries: a table's
(``TableCursor``) the rest of its block and of the blocks read with it,
or less when a scan's limit leaves fewer to take; a memtable's
(``MemtableCursor`` or ``ListCursor``) a number of keys.  So they await
only between runs, never per entry:

``merge_runs(cursors)`` (compaction) merges them into entry order (key asc,
seq desc), in lists cut at user-key boundaries.  Sequence numbers are
unique across sources, so ties cannot occur between distinct writes; an
identical (key, seq) from two sources (the same write seen twice) is kept
once, from the earlier source.

``visible_merge(cursors, snapshot_seq, want, limit)`` hands out the (key, value)
pairs of the newest version of each key with seq <= snapshot_seq, skipping
deleted keys: the scan path.

Chunks: the scan path hands pairs over in lists, never one by one, so a
pair costs a list append rather than a suspension of every generator layer
between the merge and the caller.  A chunked generator is started with the
number of pairs ``want``ed first; each chunk it yields holds at least
``want`` pairs, except the last, which holds fewer (possibly none) and
tells the consumer the scan is over.  ``asend(n)`` asks for the next chunk
with a new ``want`` (``__anext__`` keeps the last one).  A chunk may hold a
few more pairs than asked when they came from runs already in memory;
reaching ``want`` never reads another block.

Used by one task at a time; the sources are consumed on the caller's
executor.
"""
from __future__ import annotations

import bisect
import itertools
from heapq import heapify, heappop, heapreplace
from operator import itemgetter
from typing import AsyncIterator

from hedge.exec import gather
from hedge.lsm.keys import PUT

# Read-ahead of a table cursor: at most this many blocks, and no more than
# this many bytes, in one read.
READ_AHEAD_BLOCKS = 16
READ_AHEAD_BYTES = 64 * 1024
# The fewest entries a table cursor decodes per run when asked for fewer: a
# run costs a call through the merge, and more entries are often needed
# (older versions, deleted keys).
MIN_RUN = 4
# A read made for a scan's limit covers this many times the bytes the pairs
# still wanted are expected to need from its source (TableCursor).
READ_MARGIN = 2.0
_user_key = itemgetter(0)


async def merge_runs(cursors: list, chunk: int = 512) -> AsyncIterator[list]:
    """Every entry of ``cursors`` (each handing out runs of entries in entry
    order: ``TableCursor``, ``ListCursor``), merged into entry order and
    handed out in lists of at least ``chunk`` entries (the last may be
    shorter) that end at a user-key boundary: the versions of one key are
    never split between two lists.  An identical ``(key, seq)`` from several
    cursors (the same write seen twice) is kept once, from the earliest.

    Awaits only when a cursor needs its next run.  When one cursor comes
    out on top twice in a row, the stretch of its run below every other
    cursor's next key is found with one ``bisect`` and copied as a slice,
    not entry by entry."""
    runs: list = []
    heap = []                   # (key, -seq, cursor index, position in its run)
    for idx, cursor in enumerate(cursors):
        run = await cursor.next_block()
        runs.append(run)
        if run:
            heap.append((run[0][0], -run[0][1], idx, 0))
    heapify(heap)
    out: list = []
    last_key = last_nseq = None
    prev_idx = -1
    while heap:
        key, nseq, idx, pos = heap[0]
        if len(out) >= chunk and key != last_key:
            yield out
            out = []
        run = runs[idx]
        if nseq != last_nseq or key != last_key:
            out.append(run[pos])
            last_key = key
            last_nseq = nseq
        pos += 1
        n = len(run)
        if idx == prev_idx and pos < n and len(heap) > 1:
            # The same cursor twice in a row: look for a stretch of it below
            # the next key of every other cursor, which nothing can precede.
            prev_idx = -1
            other = heap[1] if len(heap) == 2 or heap[1] < heap[2] else heap[2]
            end = bisect.bisect_left(run, other[0], pos, n, key=_user_key)
            if end > pos:
                out += run[pos:end]
                last = run[end - 1]
                last_key = last[0]
                last_nseq = -last[1]
                pos = end
        else:
            prev_idx = idx
        if pos == n:
            run = await cursors[idx].next_block()
            if not run:
                heappop(heap)
                continue
            runs[idx] = run
            pos = 0
        entry = run[pos]
        heapreplace(heap, (entry[0], -entry[1], idx, pos))
    if out:
        yield out


class TableCursor:
    """The entries of ``readers`` (tables in key order: one level, or one L0
    table) with start <= key < end, a block at a time.

    Read-ahead: the first read of a table takes one block, each further
    read twice as many (adjacent in the file, one request) up to
    ``READ_AHEAD_BYTES``: a short scan or a seek reads what it uses, a long
    scan or a compaction takes few requests.

    With ``pair_bytes`` (this source's bytes on disk per entry of all the
    scan's sources: its size over their entries), a read made while a
    scan's limit leaves ``n`` pairs to take covers at least the blocks that
    ``n`` pairs are expected to need from this source, with a margin
    (``READ_MARGIN``): a scan then waits for about one round of reads, not
    one per block (each round costs it a turn of all the executor's tasks).
    The pairs are expected to fall among the sources in proportion to their
    entries.

    ``fill_cache`` says how the blocks read fill the block cache: NO_FILL
    (False: a compaction's inputs), FILL (True) or SCAN_FILL (a scan's:
    through the cache's scan admission, hedge/lsm/cache.py)."""

    __slots__ = ("_readers", "_start", "_end", "_seek", "_fill", "_pair_bytes", "_next_reader", "_reader",
                 "_ranges", "_first", "_pending", "_ahead", "_block", "_pos")

    def __init__(self, readers: list, start: bytes | None, end: bytes | None, fill_cache: int = True,
                 pair_bytes: float = 0.0):
        self._readers = readers
        self._start = start
        self._end = end
        self._seek = start              # the bound a scan begins inside its first block at (None: none)
        self._fill = fill_cache
        self._pair_bytes = pair_bytes
        self._next_reader = 0
        self._reader = None
        self._ranges = None
        self._first = True
        self._pending: list = []        # blocks read ahead, in reverse order (pop from the end)
        self._ahead = 1
        self._block = None              # the block being handed out, from entry _pos on (None: take the next)
        self._pos = 0

    def _ranges_to_read(self, pairs: int | None, ranges) -> list:
        """The ranges of the next read, taken from ``ranges`` (the
        current table's, in file order): at least ``_ahead`` blocks and,
        with ``pairs`` wanted and an estimate, the bytes they are expected
        to need (half the first block more when the scan starts inside
        it); at most READ_AHEAD_BLOCKS and about READ_AHEAD_BYTES."""
        budget = 0.0
        if pairs is not None and self._pair_bytes:
            budget = pairs * self._pair_bytes * READ_MARGIN
        halve_first = budget and self._first and self._seek is not None
        ahead = self._ahead
        want = []
        total = 0
        for rng in ranges:
            want.append(rng)
            total += rng[1]
            if halve_first:
                budget += rng[1] / 2
                halve_first = False
            if ((len(want) >= ahead and total >= budget) or total >= READ_AHEAD_BYTES
                    or len(want) >= READ_AHEAD_BLOCKS):
                break
        return want

    def _next_now(self, pairs: int | None):
        """The next block of this cursor's tables, the next table's first
        when one ends (``_first`` is then True again), or None after the
        last, when that needs no wait (blocks cached, read ahead, or in
        the page cache); else the ranges (a list) to read through the
        ring with ``_read``.  Never suspends."""
        while True:
            pending = self._pending
            if pending:
                return pending.pop()
            if self._ranges is None:
                if self._next_reader >= len(self._readers):
                    return None
                self._enter_next_table(self._table_ranges(self._readers[self._next_reader]))
            want = self._ranges_to_read(pairs, self._ranges)
            if want:
                block = self._read_now(want)
                return want if block is None else block
            self._ranges = None

    def _read_now(self, want: list):
        """The first of the blocks at ``want`` when each is cached or in
        the page cache (the others wait in ``_pending``); else None, and
        ``_read`` reads them through the ring.  Never suspends."""
        pending = self._pending_blocks_now(want)
        if pending is None:
            return None
        self._grow_ahead(len(want))
        self._pending = pending
        return pending.pop()

    async def _read(self, want: list):
        """``_read_now`` through the ring, for blocks it could not read in
        place."""
        pending = await self._pending_blocks(want)
        self._grow_ahead(len(want))
        self._pending = pending
        return pending.pop()

    def _grow_ahead(self, blocks: int) -> None:
        """After a read of ``blocks`` blocks: a table's first read of one
        block is followed by reads of two blocks at least, and each read
        of several by one twice as long (up to READ_AHEAD_BLOCKS)."""
        if blocks == 1:
            if self._ahead == 1:
                self._ahead = 2
        else:
            self._ahead = min(self._ahead * 2, READ_AHEAD_BLOCKS)

    def _table_ranges(self, reader):
        """The ranges of ``reader``'s blocks this cursor reads, in the
        order it hands them out."""
        return reader.iter_block_ranges(self._start, self._end)

    def _pending_blocks_now(self, want: list) -> list | None:
        """The blocks at ``want`` (in hand-out order) as ``_pending`` holds
        them, the last to hand out first, when each is cached or in the
        page cache (``TableReader.read_blocks_now``); else None."""
        blocks = self._reader.read_blocks_now(self._file_order(want), self._fill)
        return None if blocks is None else self._pending_order(blocks)

    async def _pending_blocks(self, want: list) -> list:
        """``_pending_blocks_now``'s blocks, read through the ring."""
        return self._pending_order(await self._reader.read_blocks(self._file_order(want), self._fill))

    @staticmethod
    def _file_order(want: list) -> list:
        """The ranges ``want`` (in hand-out order) in file order."""
        return want

    @staticmethod
    def _pending_order(blocks: list) -> list:
        """The blocks read at ``_file_order(want)``, in the order
        ``_pending`` holds them: the last to hand out first."""
        blocks.reverse()
        return blocks

    def first_read(self, pairs: int | None = None):
        """Take this cursor's first blocks (its first block, or with
        ``pairs`` wanted the blocks they are expected to need) from the
        cache or the page cache now and return None; or return a
        coroutine that reads them through the ring when any is in
        neither.  None also when the cursor has started or its range is
        empty.  ``read_first_blocks`` awaits those of every source of a
        scan together."""
        if self._ranges is not None or self._next_reader >= len(self._readers):
            return None
        ranges = self._table_ranges(self._readers[self._next_reader])
        first = next(ranges, None)
        if first is None:
            return None
        # The cursor moves onto this table now, as next_block would; the
        # blocks read are left where _next_now takes them from.
        self._enter_next_table(ranges)
        want = self._ranges_to_read(pairs, itertools.chain((first,), ranges))
        block = self._read_now(want)
        if block is None:
            return self._read_first(want)
        self._pending.append(block)
        return None

    def _enter_next_table(self, ranges) -> None:
        """Move onto the table at ``_next_reader``, whose blocks still to
        read are ``ranges`` (from its ``iter_block_ranges``)."""
        self._reader = self._readers[self._next_reader]
        self._next_reader += 1
        self._ranges = ranges
        self._first = True
        self._pending = []

    async def _read_first(self, want: list) -> None:
        block = await self._read(want)
        self._pending.append(block)

    async def next_block(self, limit: int | None = None) -> list | None:
        """The next non-empty run of entries, or None at the end: the rest
        of the current block, or with ``limit`` at most that many (at least
        MIN_RUN) of them, followed by entries of the blocks already read
        ahead (never one that needs a read) while the run holds fewer than
        ``limit``.  A block is decoded a run at a time, so a scan that stops
        inside a block decodes only what it took."""
        end = self._end
        run = None
        while True:
            block = self._block
            if block is None:
                if run is not None and not self._pending:
                    return run
                block = self._next_now(limit)       # with a run: a block read ahead
                if type(block) is list:
                    block = await self._read(block)
                if block is None:
                    return run
                pos = block.lower_bound(self._start) if self._first and self._start is not None else 0
                self._first = False
            else:
                pos = self._pos
            count = len(block)
            if limit is None:
                stop = count
            elif run is None:
                stop = min(count, pos + max(limit, MIN_RUN))
            else:
                stop = min(count, pos + limit - len(run))
            if stop == count:
                self._block = None
            else:
                self._block = block
                self._pos = stop
            entries = block.entries_between(pos, stop)
            if end is not None and entries and entries[-1][0] >= end:
                entries = entries[:bisect.bisect_left(entries, end, key=_user_key)]
                self._readers = ()        # nothing at or past `end` follows
                self._ranges = None
                self._pending = []
                self._next_reader = 0
                self._block = None
            if entries:
                run = entries if run is None else run + entries
            if run is not None and (self._block is not None or (limit is not None and len(run) >= limit)):
                return run


def read_first_blocks(cursors: list, pairs: int | None = None):
    """Take the first blocks of every TableCursor among ``cursors``,
    forward or reverse (the first block, or with ``pairs`` wanted those
    they are expected to need), from the cache or the page cache now
    (``first_read``), and return an awaitable that reads the others
    through the ring, all at once; None when there are none.  A scan then
    waits for one round of reads before it can merge, instead of one
    round per source (the merge asks its sources for their first runs one
    after the other).  REQUIRES: on an executor (the reads run as tasks
    of it)."""
    reads = []
    for cursor in cursors:
        if isinstance(cursor, TableCursor):
            read = cursor.first_read(pairs)
            if read is not None:
                reads.append(read)
    if not reads:
        return None
    return gather(*reads) if len(reads) > 1 else reads[0]


class MemtableCursor:
    """The entries of one memtable from ``start`` below ``end`` (None:
    unbounded) visible at ``snapshot_seq``, in runs of keys that start at
    ``first`` and double up to ``size`` (as ListCursor's): each run is one
    ``Memtable.visible_run``, a list built without a generator step per
    entry.  Used by one task at a time."""

    __slots__ = ("_mem", "_from", "_after", "_end", "_snap", "_size", "_max", "_more")

    def __init__(self, mem, start: bytes | None, end: bytes | None, snapshot_seq: int,
                 size: int = 128, first: int = 16):
        self._mem = mem
        self._from = start
        self._after = False
        self._end = end
        self._snap = snapshot_seq
        self._size = min(first, size)
        self._max = size
        self._more = True

    async def next_block(self, limit: int | None = None) -> list | None:
        """The next non-empty run (None at the end); ``limit`` is a hint it
        ignores: a run costs no decoding."""
        while self._more:
            n = self._size
            if n < self._max:
                self._size = min(2 * n, self._max)
            run, last, self._more = self._mem.visible_run(self._from, self._after, self._end, self._snap, n)
            if last is not None:
                self._from = last
                self._after = True
            if run:
                return run
        return None


class ListCursor:
    """A plain iterator of entries (memtables), in runs that start at
    ``first`` entries and double up to ``size``: a short scan does not pull
    many more entries than it uses, a long one soon takes big runs."""

    __slots__ = ("_it", "_size", "_max")

    def __init__(self, iterable, size: int = 128, first: int = 16):
        self._it = iter(iterable)
        self._size = min(first, size)
        self._max = size

    async def next_block(self, limit: int | None = None) -> list | None:
        """The next run (None at the end); ``limit`` is a hint it ignores:
        a run costs no decoding."""
        n = self._size
        if n < self._max:
            self._size = min(2 * n, self._max)
        run = list(itertools.islice(self._it, n))
        return run or None


async def visible_merge(cursors: list, snapshot_seq: int, want: int = 256,
                        limit: int | None = None) -> AsyncIterator[list]:
    """The pairs (key, value) of the newest version of each key with seq <=
    snapshot_seq across ``cursors`` (each in entry order), deleted keys
    skipped, handed out in chunks (see ``chunks`` in the module
    docstring): each chunk holds at least ``want`` pairs, the number given
    or last sent with ``asend``, except the last, which holds fewer
    (possibly none).  A chunk may hold more than ``want``: the rest of a
    run already in memory, never a pair that needs another block.

    Merges runs: it awaits only when a cursor needs its next run, never
    per pair.  With ``limit`` (the most pairs the consumer will take in
    all), it tells each cursor how many pairs are still needed (one more
    while several merge: a round leaves the entries at its bound for the
    next, so a run one entry longer spares a second round when the others
    give no new keys below it), so a table cursor decodes no more of its
    block than that (at least MIN_RUN);
    without one it takes whole blocks, as a consumer asking for chunk
    after chunk would soon want them.

    Several cursors are merged a round at a time, with no step per entry
    in Python but the filter: a round's *bound* is the smallest last key
    among the runs of the cursors that may give more.  Every version of
    every key below it is in hand (a cursor's later runs start at or above
    its run's last key), so the round takes those entries from every run
    (one bisect each), orders them by user key with one stable sort, and
    filters them; versions of one key from several cursors are compared
    by seq, whatever the cursors' order.  The cursors whose runs end at
    the bound then read their next run (their entries at the bound wait
    for it: more versions of that key may follow).  Once one cursor is
    left, its runs are filtered as they come."""
    out: list = []
    append = out.append
    # The pairs still wanted beyond those in ``out`` (None: no limit).
    left = limit
    decided = None              # the last key whose visible version was found
    decided_seq = 0             # that version's seq
    cursor = cursors[0] if len(cursors) == 1 else None
    run = None
    if cursor is None:
        live = []               # [cursor, entries not yet merged, whether it may give more]
        for source in cursors:
            entries = await source.next_block(None if left is None else left + 1)
            if entries:
                live.append([source, entries, True])
        while len(live) > 1:
            bound = None
            for item in live:
                if item[2]:
                    last = item[1][-1][0]
                    if bound is None or last < bound:
                        bound = last
            taken: list = []
            takers = 0
            for item in live:
                entries = item[1]
                if bound is None or entries[-1][0] < bound:
                    taken += entries
                    item[1] = None
                elif entries[0][0] < bound:
                    cut = bisect.bisect_left(entries, bound, 1, len(entries), key=_user_key)
                    taken += entries[:cut]
                    item[1] = entries[cut:]
                else:
                    continue
                takers += 1
            if takers > 1:
                taken.sort(key=_user_key)
            for key, seq, kind, value in taken:
                if seq > snapshot_seq:
                    continue
                if key == decided:
                    if seq > decided_seq:
                        # A newer version of the key from a later cursor:
                        # it decides instead.
                        if out and out[-1][0] == key:
                            out.pop()
                        decided_seq = seq
                        if kind == PUT:
                            append((key, value))
                    continue
                decided = key
                decided_seq = seq
                if kind == PUT:
                    append((key, value))
            if len(out) >= want:
                if left is not None:
                    left -= len(out)
                want = (yield out) or want
                out = []
                append = out.append
            for item in live:
                entries = item[1]
                if item[2] and (entries is None or entries[-1][0] == bound):
                    more = await item[0].next_block(None if left is None else left - len(out) + 1)
                    if more is None:
                        item[2] = False
                    else:
                        item[1] = entries + more if entries else more
            live = [item for item in live if item[1]]
        if live:
            source, run, may_give_more = live[0]
            if may_give_more:
                cursor = source
    while True:
        if run:
            for key, seq, kind, value in run:
                if seq > snapshot_seq or key == decided:
                    continue
                decided = key
                if kind == PUT:
                    append((key, value))
        if cursor is None:
            break
        if len(out) >= want:
            if left is not None:
                left -= len(out)
            want = (yield out) or want
            out = []
            append = out.append
        run = await cursor.next_block(None if left is None else left - len(out))
        if run is None:
            break
    if len(out) >= want:
        yield out                   # a full chunk: the last, shorter one follows
        out = []
    yield out
