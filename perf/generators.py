"""Number generators of the YCSB core workload: which record an operation
touches, how long a scan is, which operation comes next, which record number
an insert gets.

- ``Zipfian``: ranks 0, 1, 2, ... with P(rank i) proportional to 1/(i+1)^theta
  (theta 0.99), drawn in O(1) with the method of Gray et al., "Quickly
  generating billion-record synthetic databases" (SIGMOD 1994), the one YCSB
  uses.  The item count may grow between draws (zeta is extended, not
  recomputed).
- ``ScrambledZipfian``: a zipfian rank over a huge fixed item space (10^10,
  zeta precomputed as YCSB does) hashed with ``fnvhash64`` and folded onto the
  records, so popular records are spread over the key space instead of being
  the lowest record numbers.
- ``SkewedLatest``: the most recently inserted records are the most popular
  (``latest`` request distribution, workload D).
- ``KeyChooser`` (uniform, zipfian or latest over the records present),
  ``OperationChooser`` (weighted choice), ``ScanLength``.
- ``InsertCounter``: hands out record numbers to inserts and knows the highest
  contiguous acknowledged one, so reads only ask for records that exist
  (YCSB's AcknowledgedCounterGenerator).

Thread safety: a generator drawing random numbers belongs to one client (give
each its own ``random.Random``).  ``InsertCounter`` and the zeta cache are
shared and lock.
"""
from __future__ import annotations

import bisect
import random
import threading
from typing import Sequence

from perf.keys import fnvhash64

ZIPFIAN_CONSTANT = 0.99
# The item space of the scrambled generator and its zeta (theta 0.99), the
# constants YCSB uses so that no zeta has to be summed over 10^10 terms.
SCRAMBLED_ITEM_COUNT = 10_000_000_000
SCRAMBLED_ZETAN = 26.46902820178302

REQUEST_DISTRIBUTIONS = ("uniform", "zipfian", "latest")
SCAN_LENGTH_DISTRIBUTIONS = ("uniform", "zipfian")


def zeta(n: int, theta: float, start: int = 0, partial: float = 0.0) -> float:
    """sum(1 / i**theta for i in 1..n), given ``partial`` = the same sum up to
    ``start`` (so a growing zeta is extended, not recomputed).

    REQUIRES: 0 <= start <= n.
    """
    return partial + sum(i ** -theta for i in range(start + 1, n + 1))


class _ZetaCache:
    """Every zeta computed so far per theta, shared by all generators: a new
    one is extended from the largest known smaller count (the latest
    distribution asks for count+1 after each insert, from every client and
    every store of a run)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[float, list[int]] = {}
        self._values: dict[tuple[float, int], float] = {}

    def get(self, n: int, theta: float) -> float:
        with self._lock:
            value = self._values.get((theta, n))
            if value is not None:
                return value
            counts = self._counts.setdefault(theta, [])
            i = bisect.bisect_left(counts, n)
            start = counts[i - 1] if i > 0 else 0
            value = zeta(n, theta, start, self._values[(theta, start)] if i > 0 else 0.0)
            counts.insert(i, n)
            self._values[(theta, n)] = value
            return value


_zetas = _ZetaCache()


class Zipfian:
    """Ranks in [0, items) with P(i) ~ 1/(i+1)^theta, rank 0 the most popular.

    REQUIRES: items >= 1, 0 < theta < 1.
    """

    def __init__(self, items: int, rng: random.Random, theta: float = ZIPFIAN_CONSTANT,
                 zetan: float | None = None):
        if items < 1:
            raise ValueError("a zipfian generator needs at least one item")
        if not 0 < theta < 1:
            raise ValueError("zipfian theta must be in (0, 1)")
        self._rng = rng
        self.theta = theta
        self._alpha = 1.0 / (1.0 - theta)
        self._zeta2 = zeta(2, theta)
        self._half_pow_theta = 0.5 ** theta
        self._items = 0
        self._zetan = 0.0
        self._eta = 0.0
        self._resize(items, zetan)

    def _resize(self, items: int, zetan: float | None = None) -> None:
        self._zetan = zetan if zetan is not None else _zetas.get(items, self.theta)
        self._items = items
        if items >= 2:
            self._eta = (1 - (2.0 / items) ** (1 - self.theta)) / (1 - self._zeta2 / self._zetan)

    def next(self, items: int | None = None) -> int:
        """One rank.  ``items``, when given, is the current item count (it
        may grow; a smaller count recomputes zeta)."""
        if items is not None and items != self._items:
            if items < 1:
                raise ValueError("a zipfian generator needs at least one item")
            self._resize(items)
        n = self._items
        u = self._rng.random()
        uz = u * self._zetan
        if uz < 1.0 or n == 1:
            return 0
        if uz < 1.0 + self._half_pow_theta:
            return 1
        rank = int(n * (self._eta * u - self._eta + 1) ** self._alpha)
        return rank if rank < n else n - 1


class ScrambledZipfian:
    """Record numbers in [0, items): zipfian popularity, popular records
    scattered by hashing (YCSB's ScrambledZipfianGenerator)."""

    def __init__(self, items: int, rng: random.Random):
        if items < 1:
            raise ValueError("a scrambled zipfian generator needs at least one item")
        self.items = items
        self._ranks = Zipfian(SCRAMBLED_ITEM_COUNT, rng, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN)

    def next(self) -> int:
        return fnvhash64(self._ranks.next()) % self.items


class InsertCounter:
    """Record numbers for inserts, and the acknowledged limit: every record
    number below ``limit`` has been written and acknowledged by the store.

    Shared by all clients of a store; every method locks.
    """

    def __init__(self, start: int = 0):
        self._lock = threading.Lock()
        self._next = start
        self._limit = start
        self._acked_above: set[int] = set()

    @property
    def limit(self) -> int:
        return self._limit

    def take(self, bound: int | None = None) -> int | None:
        """The next record number, or None when ``bound`` is reached."""
        with self._lock:
            n = self._next
            if bound is not None and n >= bound:
                return None
            self._next = n + 1
            return n

    def acknowledge(self, n: int) -> None:
        """Record ``n`` is in the store.  REQUIRES: ``n`` came from ``take``."""
        with self._lock:
            if n != self._limit:
                self._acked_above.add(n)
                return
            limit = n + 1
            pending = self._acked_above
            while limit in pending:
                pending.remove(limit)
                limit += 1
            self._limit = limit


class SkewedLatest:
    """Record numbers below the acknowledged limit, the newest the most
    popular: limit - 1 - zipfian rank over the current record count."""

    def __init__(self, counter: InsertCounter, rng: random.Random):
        self._counter = counter
        self._ranks = Zipfian(max(counter.limit, 1), rng)

    def next(self) -> int:
        limit = self._counter.limit
        if limit < 1:
            raise ValueError("the latest distribution needs at least one record")
        return limit - 1 - self._ranks.next(limit)


class OperationChooser:
    """Picks one of ``names`` with probability proportional to ``weights``.

    REQUIRES: weights non-negative with a positive sum.
    """

    def __init__(self, names: Sequence[str], weights: Sequence[float], rng: random.Random):
        if len(names) != len(weights) or not names:
            raise ValueError("need one weight per operation")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("operation proportions must be >= 0 with a positive sum")
        pairs = [(n, w) for n, w in zip(names, weights) if w > 0]
        total = sum(w for _, w in pairs)
        self._names = [n for n, _ in pairs]
        cumulative, running = [], 0.0
        for _, w in pairs:
            running += w / total
            cumulative.append(running)
        cumulative[-1] = 1.0
        self._cumulative = cumulative
        self._rng = rng

    def next(self) -> str:
        u = self._rng.random()
        for name, bound in zip(self._names, self._cumulative):
            if u < bound:
                return name
        return self._names[-1]


class ScanLength:
    """Scan lengths in [minimum, maximum], uniform or zipfian (short scans the
    most likely)."""

    def __init__(self, minimum: int, maximum: int, distribution: str, rng: random.Random):
        if not 1 <= minimum <= maximum:
            raise ValueError("scan lengths need 1 <= minimum <= maximum")
        if distribution not in SCAN_LENGTH_DISTRIBUTIONS:
            raise ValueError(f"scan length distribution must be one of {SCAN_LENGTH_DISTRIBUTIONS}")
        self.minimum, self.maximum = minimum, maximum
        self._rng = rng
        self._zipf = Zipfian(maximum - minimum + 1, rng) if distribution == "zipfian" else None

    def next(self) -> int:
        if self._zipf is not None:
            return self.minimum + self._zipf.next()
        return self._rng.randint(self.minimum, self.maximum)


class KeyChooser:
    """Record numbers for reads, updates and scans under a request
    distribution, never at or above the acknowledged insert limit (a draw
    beyond it is drawn again, as YCSB does).

    ``expected_items`` sizes the zipfian space: the records present plus the
    inserts the workload may make, so the hot set does not shift as records
    arrive.
    """

    def __init__(self, distribution: str, counter: InsertCounter, expected_items: int,
                 rng: random.Random):
        if distribution not in REQUEST_DISTRIBUTIONS:
            raise ValueError(f"request distribution must be one of {REQUEST_DISTRIBUTIONS}, not {distribution!r}")
        self.distribution = distribution
        self._counter = counter
        self._rng = rng
        if distribution == "zipfian":
            self._draw = ScrambledZipfian(max(expected_items, 1), rng).next
        elif distribution == "latest":
            self._draw = SkewedLatest(counter, rng).next
        else:
            self._draw = self._uniform

    def _uniform(self) -> int:
        return int(self._rng.random() * self._counter.limit)

    def next(self) -> int:
        limit = self._counter.limit
        if limit < 1:
            raise ValueError("no record has been inserted yet")
        while True:
            n = self._draw()
            if n < limit:
                return n
