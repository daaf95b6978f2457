"""Cursors: ``db.cursor()``, ``snapshot.cursor()`` (blocking) and
``db.aio.cursor()``, ``snapshot.aio.cursor()`` (awaitable steps).

A cursor is a position among the keys of one snapshot, limited to a range
(the bounds and prefix of ``scan``).  The model is LevelDB's and
rocksdict's: it starts not positioned; ``seek(key)``, ``seek_for_prev(key)``,
``seek_to_first()``, ``seek_to_last()`` position it; ``next()`` and
``prev()`` step (a change of direction re-seeks, hedge/lsm/cursor.py);
stepping off either end leaves it not positioned.  Seeks and steps return
``valid()``.  ``key()``, ``value()`` and ``item()`` read the current pair
without I/O.  Iterating a cursor yields the pairs from its position
forward (from the first key when not positioned), moving it.

Errors: a seek, step or read after ``close()`` raises ClosedError ("the
cursor is closed"); after ``db.close()`` ClosedError, and after the
snapshot it reads is released (``snapshot.cursor()``) ClosedError;
``key()``, ``value()``, ``item()``, ``next()``, ``prev()`` on a cursor that
is not positioned raise ValueError; a bad key is a TypeError/ValueError and
leaves the position unchanged.  ``valid()`` never raises: False after
either close.

Ownership: ``db.cursor()`` pins a snapshot of its own, released by
``close()`` (idempotent; also on garbage collection and ``with`` exit); a
snapshot's cursor reads at that snapshot and holds nothing.  Use a cursor
from one thread (or task) at a time; the blocking form runs its I/O on the
calling thread's executor like every blocking call.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Self

from hedge.errors import ClosedError
from hedge.lsm.cursor import EngineCursor

if TYPE_CHECKING:
    from hedge.db import BytesLike, _Calls


class _CursorBase:
    """What both forms share: state checks, reads of the current pair, close."""

    def __init__(self, calls: "_Calls", core: EngineCursor, check_owner: Callable[[], None], sid: int | None):
        self._calls = calls
        self._core = core
        self._check_owner = check_owner       # raises when the database or the snapshot is closed
        self._sid = sid                       # the snapshot this cursor pinned itself, released by close
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise ClosedError("the cursor is closed")
        self._check_owner()

    def _current(self) -> tuple[bytes, bytes]:
        self._check()
        current = self._core.current
        if current is None:
            raise ValueError("the cursor is not on a key: seek first (or it stepped off an end)")
        return current

    def valid(self) -> bool:
        """Whether the cursor is on a key (False once it or the database is closed)."""
        return not self._closed and not self._calls.closed and self._core.current is not None

    def key(self) -> bytes:
        """The current key."""
        return self._current()[0]

    def value(self) -> bytes:
        """The current value."""
        return self._current()[1]

    def item(self) -> tuple[bytes, bytes]:
        """The current (key, value)."""
        return self._current()

    def close(self) -> None:
        """Stop at once: every later seek, step or read raises ClosedError.
        Releases the snapshot the cursor pinned.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._core.close()
        if self._sid is not None:
            self._calls.engine.release_snapshot(self._sid)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "at %r" % (self._core.current[0],) if self._core.current else "not positioned"
        return f"<hedge.{type(self).__name__} {state}>"


class Cursor(_CursorBase):
    """A blocking cursor (``db.cursor()``, ``snapshot.cursor()``): see the
    module docstring."""

    def _run(self, coro: Coroutine[Any, Any, None]) -> bool:
        try:
            self._check()
            self._calls.check_blocking()
        except BaseException:
            coro.close()
            raise
        self._calls.call(coro)
        return self._core.current is not None

    def seek(self, key: BytesLike) -> bool:
        """To the first key >= ``key`` in the range; returns ``valid()``."""
        return self._run(self._core.seek(key))

    def seek_for_prev(self, key: BytesLike) -> bool:
        """To the last key <= ``key`` in the range; returns ``valid()``."""
        return self._run(self._core.seek_for_prev(key))

    def seek_to_first(self) -> bool:
        """To the first key of the range; returns ``valid()``."""
        return self._run(self._core.seek_to_first())

    def seek_to_last(self) -> bool:
        """To the last key of the range; returns ``valid()``."""
        return self._run(self._core.seek_to_last())

    def next(self) -> bool:
        """To the next key; returns ``valid()`` (False past the last)."""
        self._current()
        if self._core.step_now(False):
            return True
        return self._run(self._core.next())

    def prev(self) -> bool:
        """To the previous key; returns ``valid()`` (False before the first)."""
        self._current()
        if self._core.step_now(True):
            return True
        return self._run(self._core.prev())

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        """The pairs from the current position (the first key when not
        positioned) forward, moving the cursor."""
        if not self.valid() and not self.seek_to_first():
            return
        while True:
            yield self.item()
            if not self.next():
                return

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _ready(value: bool) -> bool:
    return value


class AsyncCursor(_CursorBase):
    """A cursor whose seeks and steps are awaitables (``db.aio.cursor()``,
    ``snapshot.aio.cursor()``): in a hedge task they run on its executor,
    in an asyncio task on the loop thread's (as ``db.aio``).  ``key()``,
    ``value()``, ``item()``, ``valid()`` and ``close()`` are plain calls."""

    async def _moved(self, coro: Coroutine[Any, Any, None]) -> bool:
        await coro
        return self._core.current is not None

    def _run(self, coro: Coroutine[Any, Any, None]) -> Awaitable[bool]:
        try:
            self._check()
        except BaseException:
            coro.close()
            raise
        return self._calls.awaitable(self._moved(coro))

    def seek(self, key: BytesLike) -> Awaitable[bool]:
        """As ``Cursor.seek``."""
        return self._run(self._core.seek(key))

    def seek_for_prev(self, key: BytesLike) -> Awaitable[bool]:
        """As ``Cursor.seek_for_prev``."""
        return self._run(self._core.seek_for_prev(key))

    def seek_to_first(self) -> Awaitable[bool]:
        """As ``Cursor.seek_to_first``."""
        return self._run(self._core.seek_to_first())

    def seek_to_last(self) -> Awaitable[bool]:
        """As ``Cursor.seek_to_last``."""
        return self._run(self._core.seek_to_last())

    def next(self) -> Awaitable[bool]:
        """As ``Cursor.next``."""
        self._current()
        if self._core.step_now(False):
            return _ready(True)
        return self._run(self._core.next())

    def prev(self) -> Awaitable[bool]:
        """As ``Cursor.prev``."""
        self._current()
        if self._core.step_now(True):
            return _ready(True)
        return self._run(self._core.prev())

    async def __aiter__(self) -> AsyncIterator[tuple[bytes, bytes]]:
        """As ``Cursor.__iter__``: ``async for key, value in cursor``."""
        if not self.valid() and not await self.seek_to_first():
            return
        while True:
            yield self.item()
            if not await self.next():
                return

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
