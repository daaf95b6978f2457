"""Drive coroutines and async generators without an event loop.

The table code awaits only its ``read`` callable; a test's ``read`` returns at
once, so a coroutine runs to completion on the first ``send(None)``.  Anything
that really suspends is a bug in the test set-up and fails loudly.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion and return its result (or raise its error)."""
    try:
        while True:
            yielded = coro.send(None)
            raise AssertionError(f"coroutine suspended on {yielded!r}; test reads must not suspend")
    except StopIteration as stop:
        return stop.value
    finally:
        coro.close()


def collect(agen: AsyncIterator) -> list:
    """Every item of an async generator, in order."""
    items = []
    while True:
        try:
            items.append(run(agen.__anext__()))
        except StopAsyncIteration:
            return items


def memory_reader(data: bytes, log: list | None = None):
    """A ``read(offset, length)`` over ``data``; appends each request to
    ``log`` when given."""

    async def read(offset: int, length: int) -> bytes:
        if log is not None:
            log.append((offset, length))
        return data[offset : offset + length]

    return read


def collect_chunks(agen: AsyncIterator, want: int = 256, rng=None) -> list:
    """Every pair of a chunked scan generator (the protocol in
    hedge/lsm/amerge.py) started with ``want``, asking for a new want of
    1 to 9 after each chunk when ``rng`` is given.  Checks the protocol:
    each chunk but the last holds at least the want asked, the last holds
    fewer, and nothing follows it."""
    pairs: list = []
    chunk = run(agen.__anext__())
    while True:
        pairs += chunk
        if len(chunk) < want:
            try:
                run(agen.__anext__())
            except StopAsyncIteration:
                return pairs
            raise AssertionError(f"a chunk followed a last chunk of {len(chunk)} < {want} pairs")
        if rng is not None:
            want = rng.randint(1, 9)
        chunk = run(agen.asend(want))
