"""Latency histogram with log-linear buckets (the HdrHistogram idea): exact
below 256 ns, then each power of two [2^k, 2^(k+1)) split into 128 equal
buckets, so any recorded value is known to within 1/128 (< 0.8 %) of itself.

Bucket index of a value v (nanoseconds, an int >= 0):
    v < 256:  v
    else:     s = v.bit_length() - 8    (v >> s is in [128, 256))
              256 + (s - 1) * 128 + (v >> s) - 128
Bucket b >= 256 covers [m << s, (m + 1) << s) with s = (b - 256) // 128 + 1,
m = (b - 256) % 128 + 128.

Percentiles are nearest-rank: the value at rank ceil(q/100 * count) in sorted
order, reported as the highest value of its bucket (never above the maximum
recorded).  Memory is a few thousand counters, whatever the number of samples,
held in an ``array`` rather than a list: the garbage collector finds nothing
to visit in it (a run keeps one histogram per client and operation, whose
thousands of list slots each full collection would otherwise visit,
lengthening the pauses the benchmark measures).

Thread safety: one histogram per client thread; merge them after the phase.
"""
from __future__ import annotations

import math
from array import array

_LINEAR = 256
_SUB = 128


def bucket_of(v: int) -> int:
    """The bucket index of value ``v``.  REQUIRES: v >= 0."""
    if v < _LINEAR:
        return v
    s = v.bit_length() - 8
    return _LINEAR + (s - 1) * _SUB + (v >> s) - _SUB


def bucket_bounds(b: int) -> tuple[int, int]:
    """(lowest, highest) value that falls in bucket ``b``."""
    if b < _LINEAR:
        return b, b
    s = (b - _LINEAR) // _SUB + 1
    m = (b - _LINEAR) % _SUB + _SUB
    return m << s, ((m + 1) << s) - 1


def _zeros(n: int) -> array:
    """``n`` zero counters."""
    return array("q", bytes(8 * n))


class Histogram:
    """Counts of latencies (nanoseconds) in log-linear buckets."""

    __slots__ = ("counts", "count", "total", "minimum", "maximum")

    def __init__(self) -> None:
        self.counts = _zeros(_LINEAR + 40 * _SUB)
        self.count = 0
        self.total = 0
        self.minimum = 0
        self.maximum = 0

    def record(self, v: int) -> None:
        """Add one value.  REQUIRES: v >= 0 (a perf_counter_ns difference)."""
        b = bucket_of(v)
        counts = self.counts
        if b >= len(counts):
            counts.extend(_zeros(b + 1 - len(counts)))
        counts[b] += 1
        if self.count == 0 or v < self.minimum:
            self.minimum = v
        if v > self.maximum:
            self.maximum = v
        self.count += 1
        self.total += v

    def merge(self, other: "Histogram") -> None:
        """Add every value of ``other`` to this histogram."""
        if other.count == 0:
            return
        counts = self.counts
        if len(other.counts) > len(counts):
            counts.extend(_zeros(len(other.counts) - len(counts)))
        for b, c in enumerate(other.counts):
            if c:
                counts[b] += c
        self.minimum = other.minimum if self.count == 0 else min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.count += other.count
        self.total += other.total

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> int:
        """The nearest-rank q-th percentile (0 < q <= 100), to bucket
        precision; 0 for an empty histogram."""
        if not 0 < q <= 100:
            raise ValueError("percentile must be in (0, 100]")
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for b, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return min(bucket_bounds(b)[1], self.maximum)
        return self.maximum

    def summary_us(self) -> dict[str, float]:
        """count, avg, p50, p95, p99, p99.9, min and max, in microseconds."""
        return {
            "count": self.count,
            "avg_us": round(self.mean() / 1000.0, 2),
            "p50_us": round(self.percentile(50) / 1000.0, 2),
            "p95_us": round(self.percentile(95) / 1000.0, 2),
            "p99_us": round(self.percentile(99) / 1000.0, 2),
            "p999_us": round(self.percentile(99.9) / 1000.0, 2),
            "min_us": round(self.minimum / 1000.0, 2),
            "max_us": round(self.maximum / 1000.0, 2),
        }
