"""OneInSkip: take one offer in ``skip``, with ``skip`` between 1 and a
bound: the sampler under the engine's adaptive read policies (the block
cache's admissions, hedge/lsm/cache.py; the inline-read gate,
hedge/lsm/inline_gate.py).  Each policy judges what the sampler took and
asks for ``fewer`` (``skip`` doubled) or ``more`` (halved).

Any thread: ``take`` takes no lock (the count is advanced atomically; a
``skip`` changed meanwhile only shifts the sample); ``fewer`` and ``more``
run under the policy's own lock.
"""
from __future__ import annotations

import itertools


class OneInSkip:
    __slots__ = ("skip", "max_skip", "_offers")

    def __init__(self, max_skip: int):
        self.skip = 1
        self.max_skip = max_skip
        self._offers = itertools.count()

    def take(self) -> bool:
        """Whether to take this offer: every one at a ``skip`` of 1."""
        skip = self.skip
        return skip == 1 or next(self._offers) % skip == 0

    def fewer(self) -> None:
        """Take half as many from now on (down to one in ``max_skip``)."""
        self.skip = min(self.skip * 2, self.max_skip)

    def more(self) -> None:
        """Take twice as many from now on (up to every one)."""
        self.skip = max(self.skip // 2, 1)
