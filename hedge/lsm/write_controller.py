"""Write controller: how fast writers may go while flushes and L0
compactions fall behind (RocksDB's delayed write rate).

Writers are slowed smoothly long before they are stopped.  The backlog is
measured in steps (``debt_steps``): one step once L0 holds
``l0_slowdown_trigger`` tables, one more per table beyond it, and at least
one while ``MAX_IMMUTABLES`` memtables await their flush (the next full
memtable would stop writers).  At step k >= 1 writers may write
``DELAYED_WRITE_RATE / 2 ** (k - 1)`` bytes per second: 16 MiB/s at the
slowdown trigger, half as much for each table more, until
``l0_stop_trigger`` tables stop them (``policy.write_stall``) until a
compaction brings L0 down.

Pacing is a virtual clock: ``delay(nbytes, steps)`` books ``nbytes`` at
the current rate after what was booked before and returns how long the
write group must wait for its turn.  A debt under ``MIN_DELAY`` is carried
to the next group instead of being slept (a sleep costs a ring request);
no single wait exceeds ``MAX_DELAY`` (the debt beyond it is forgiven, so
one big group cannot hold the next ones for seconds).  When the backlog is
gone the booking starts afresh.

Owner: the group-commit leader (one at a time, from any thread); nothing
here blocks or does I/O.  The clock is injectable for tests.
"""
from __future__ import annotations

import time
from typing import Callable

MAX_IMMUTABLES = 2          # memtables awaiting flush at which a full memtable stops writers
DELAYED_WRITE_RATE = 16 << 20   # bytes per second allowed at the first step of backlog
MIN_DELAY = 0.001           # seconds: shorter debts are carried over, not slept
MAX_DELAY = 0.05            # seconds: the longest single wait of a write group


def debt_steps(l0_tables: int, immutables: int, slowdown_trigger: int) -> int:
    """Steps of backlog (0: none; see the module docstring)."""
    steps = l0_tables - slowdown_trigger + 1 if l0_tables >= slowdown_trigger else 0
    if immutables >= MAX_IMMUTABLES:
        steps = max(steps, 1)
    return steps


def rate_at(steps: int) -> float:
    """Bytes per second writers may write at ``steps`` >= 1 of backlog."""
    if steps < 1:
        raise ValueError(f"no rate limit without backlog (steps={steps})")
    return DELAYED_WRITE_RATE / (1 << min(steps - 1, 30))


class WriteController:
    """The pacing state of one engine's writers."""

    __slots__ = ("_clock", "_next_free", "delays", "delayed_seconds")

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._next_free: float | None = None    # when the booked bytes are paid for; None: not pacing
        self.delays = 0                         # waits handed out
        self.delayed_seconds = 0.0              # their sum

    @property
    def pacing(self) -> bool:
        """Whether bytes are booked (a backlog was seen and not yet gone)."""
        return self._next_free is not None

    def delay(self, nbytes: int, steps: int) -> float:
        """Seconds the write group of ``nbytes`` must wait at ``steps`` of
        backlog (0 when none, or when the debt is still under MIN_DELAY)."""
        if steps < 1:
            self._next_free = None
            return 0.0
        now = self._clock()
        start = now if self._next_free is None or self._next_free < now else self._next_free
        self._next_free = start + nbytes / rate_at(steps)
        wait = start - now
        if wait < MIN_DELAY:
            return 0.0
        if wait > MAX_DELAY:
            self._next_free -= wait - MAX_DELAY
            wait = MAX_DELAY
        self.delays += 1
        self.delayed_seconds += wait
        return wait
