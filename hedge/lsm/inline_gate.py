"""When a table read asks the page cache first (Options.inline_reads).

A read the page cache answers in place saves the ring's round trip; one it
cannot answer costs a ``preadv2`` that starts the device read in the
reader's own thread (the kernel's read-ahead), where it may wait for the
device's queue, on top of the ring read that follows.  While the tables
are mostly out of the page cache (a database larger than memory, or just
after the cache was dropped) many attempts fail: trying every read cost
18% of the gets' throughput (docs/design.md, "Inline block reads").  So
the gate tries one read in ``skip`` and judges every ``GATE_WINDOW``
attempts: at least ``MISSED_SHARE`` of them unanswered doubles ``skip``
(up to ``MAX_SKIP``), at most ``ANSWERED_BACK`` unanswered halves it.  The
reads it does not try go to the ring as before.  From ``MAX_SKIP`` back to
every read takes eight answered windows, about 32,000 reads.

Any thread: ``try_now`` takes no lock; ``record`` takes the gate's lock
once per window (``judge``).
"""
from __future__ import annotations

import itertools
import threading

from hedge.lsm.one_in_skip import OneInSkip

GATE_WINDOW = 64
MISSED_SHARE = 0.25
ANSWERED_BACK = 0.1
MAX_SKIP = 256


class InlineGate(OneInSkip):
    """Whether a read should ask the page cache first: one in ``skip``
    (hedge/lsm/one_in_skip.py)."""

    __slots__ = ("attempts", "_missed", "_lock")

    def __init__(self):
        super().__init__(MAX_SKIP)
        self.attempts = itertools.count(1)      # reads that asked the page cache
        self._missed = 0                        # of those in this window, unanswered
        self._lock = threading.Lock()

    # Whether this read should ask the page cache first.
    try_now = OneInSkip.take

    def record(self, answered: bool) -> None:
        """A read that asked the page cache was ``answered`` or not.  The
        page-cache read of TableCache inlines an answered one: ``if
        next(gate.attempts) % GATE_WINDOW == 0: gate.judge()``."""
        if not answered:
            self._missed += 1       # racy by a count or two across threads: a share, not a total
        if next(self.attempts) % GATE_WINDOW == 0:
            self.judge()

    def judge(self) -> None:
        """End a window of GATE_WINDOW attempts: ask for fewer or more."""
        with self._lock:
            missed = self._missed / GATE_WINDOW
            self._missed = 0
            if missed >= MISSED_SHARE:
                self.fewer()
            elif missed <= ANSWERED_BACK:
                self.more()
