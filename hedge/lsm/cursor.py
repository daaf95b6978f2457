"""EngineCursor: a position among the visible keys of the database at one
sequence number, moved by seeks and steps in either direction.

It is built on ``Engine.scan``: a seek opens a scan (forward or reverse)
from the sought key within the cursor's range and takes its pairs in
chunks (SCAN_CHUNK_MIN growing to SCAN_CHUNK_MAX); a step moves along the
chunk and takes the next one when it runs out.  A step against the
direction of the open scan re-seeks: ``next`` opens a forward scan just
after the current key, ``prev`` a reverse scan just before it (LevelDB's
DBIter does the same when it changes direction).

Invariants: ``current`` is None (not positioned: before the first seek,
after stepping off either end, after close) or the pair at ``_items[_pos]``
of the open scan; the cursor never yields a key outside [lower, upper).

The sequence number must stay pinned (a snapshot the owner holds) for as
long as the cursor is used: every re-seek reads at it.  One task at a
time: the owner (hedge/cursor.py) runs the coroutines on the caller's
executor; ``step_now`` and ``close`` are plain calls.
"""
from __future__ import annotations

from hedge.lsm.keys import check_key, key_after

# Pairs a scan hands over per chunk: few first (a short walk merges no
# more than it needs), doubling up to the most.  The blocking scans use them too.
SCAN_CHUNK_MIN = 16
SCAN_CHUNK_MAX = 256


class EngineCursor:
    __slots__ = ("_engine", "_snap", "_lower", "_upper", "_scan", "_reverse", "_items", "_pos", "_more",
                 "_size", "current")

    def __init__(self, engine, snap: int, lower: bytes | None, upper: bytes | None):
        """A cursor over [lower, upper) (None: unbounded) at sequence number
        ``snap``, not positioned."""
        self._engine = engine
        self._snap = snap
        self._lower = lower
        self._upper = upper
        self._scan = None
        self._reverse = False
        self._items: list = []
        self._pos = 0
        self._more = False
        self._size = SCAN_CHUNK_MIN
        self.current: tuple[bytes, bytes] | None = None

    # -- seeks ------------------------------------------------------------------
    async def seek(self, key) -> None:
        """To the first key >= ``key`` (within the range)."""
        key = check_key(key)
        lower = self._lower
        await self._open(key if lower is None or key > lower else lower, self._upper, False)

    async def seek_for_prev(self, key) -> None:
        """To the last key <= ``key`` (within the range)."""
        after = key_after(check_key(key))
        upper = self._upper
        await self._open(self._lower, upper if upper is not None and (after is None or upper < after) else after,
                         True)

    async def seek_to_first(self) -> None:
        await self._open(self._lower, self._upper, False)

    async def seek_to_last(self) -> None:
        await self._open(self._lower, self._upper, True)

    # -- steps ------------------------------------------------------------------
    def step_now(self, reverse: bool) -> bool:
        """Take the step (``prev`` when ``reverse``, else ``next``) when the
        next pair is at hand, and return True; else return False, having
        done nothing (await ``next``/``prev``).  REQUIRES: positioned."""
        pos = self._pos + 1
        if reverse != self._reverse or pos >= len(self._items):
            return False
        self._pos = pos
        self.current = self._items[pos]
        return True

    async def next(self) -> None:
        """To the next key; off the end (not positioned) after the last.
        REQUIRES: positioned."""
        await self._step(False)

    async def prev(self) -> None:
        """To the previous key; off the end (not positioned) before the
        first.  REQUIRES: positioned."""
        await self._step(True)

    async def _step(self, reverse: bool) -> None:
        if self.step_now(reverse):
            return
        key = self.current[0]
        if reverse != self._reverse:
            if reverse:
                await self._open(self._lower, key, True)
            else:
                after = key_after(key)
                if after is None:               # the largest key there can be: nothing follows
                    await self._drop()
                else:
                    await self._open(after, self._upper, False)
            return
        if self._more:
            await self._take()
            if self._items:
                self.current = self._items[0]
                return
        await self._drop()

    # -- the scan underneath --------------------------------------------------------
    async def _open(self, start: bytes | None, end: bytes | None, reverse: bool) -> None:
        await self._drop()
        if start is not None and end is not None and start >= end:
            return
        self._size = SCAN_CHUNK_MIN
        self._scan = self._engine.scan(start, end, self._snap, reverse, SCAN_CHUNK_MIN)
        self._reverse = reverse
        await self._take(True)
        if self._items:
            self.current = self._items[0]
        else:
            await self._drop()

    async def _take(self, first: bool = False) -> None:
        """The next chunk of the open scan into ``_items`` (``first``: the
        chunk the scan was started for)."""
        n = self._size
        self._size = min(n * 2, SCAN_CHUNK_MAX)
        try:
            items = await self._scan.asend(None if first else n)
        except BaseException:
            self._clear()           # the scan failed (closed database, damaged block): not positioned
            raise
        self._more = len(items) >= n
        self._items = items
        self._pos = 0

    async def _drop(self) -> None:
        """Close the open scan (if any): not positioned."""
        scan = self._scan
        self._clear()
        if scan is not None:
            await scan.aclose()

    def _clear(self) -> None:
        self._scan = None
        self._items = []
        self._pos = 0
        self._more = False
        self.current = None

    def close(self) -> None:
        """Not positioned, the scan dropped.  Needs no executor: a scan's
        clean-up (Engine.scan's ``finally``) does no I/O, so closing its
        generator finishes without suspending."""
        scan = self._scan
        self._clear()
        if scan is not None:
            closing = scan.aclose()
            try:
                closing.send(None)
            except StopIteration:
                pass
            else:           # pragma: no cover - a scan's clean-up never awaits
                closing.close()
                raise RuntimeError("a scan's clean-up suspended")
