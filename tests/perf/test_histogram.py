"""The log-linear latency histogram against exact percentiles of a sorted list."""
import math
import random

import pytest

from perf.histogram import Histogram, bucket_bounds, bucket_of


def exact_percentile(ordered: list[int], q: float) -> int:
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def test_buckets_tile_the_values_without_gaps():
    previous_high = -1
    for b in range(256 + 30 * 128):
        low, high = bucket_bounds(b)
        assert low == previous_high + 1
        assert bucket_of(low) == b and bucket_of(high) == b
        assert high - low + 1 <= max(1, low / 128)  # precision 1/128
        previous_high = high


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_match_a_sorted_list_within_bucket_precision(seed):
    rng = random.Random(seed)
    samples = [int(rng.lognormvariate(10, 1.5)) for _ in range(20_000)] + [0, 1, 255, 256, 10 ** 10]
    h = Histogram()
    for v in samples:
        h.record(v)
    ordered = sorted(samples)
    for q in (1, 50, 90, 95, 99, 99.9, 99.99, 100):
        exact = exact_percentile(ordered, q)
        got = h.percentile(q)
        assert exact <= got <= exact + exact / 128 + 1, (q, exact, got)
    assert h.count == len(samples)
    assert h.maximum == max(samples) and h.minimum == 0
    assert h.mean() == pytest.approx(sum(samples) / len(samples))


def test_merge_equals_recording_everything_in_one():
    rng = random.Random(4)
    parts = [[rng.randrange(1, 5_000_000) for _ in range(3000)] for _ in range(4)]
    merged, whole = Histogram(), Histogram()
    for part in parts:
        h = Histogram()
        for v in part:
            h.record(v)
            whole.record(v)
        merged.merge(h)
    assert merged.counts == whole.counts
    assert (merged.count, merged.total, merged.minimum, merged.maximum) == \
        (whole.count, whole.total, whole.minimum, whole.maximum)


def test_summary_is_in_microseconds():
    h = Histogram()
    for v in (1000, 2000, 3000):
        h.record(v)
    s = h.summary_us()
    assert s["count"] == 3
    assert s["avg_us"] == 2.0
    assert s["max_us"] == 3.0 and s["min_us"] == 1.0
    assert set(s) == {"count", "avg_us", "p50_us", "p95_us", "p99_us", "p999_us", "min_us", "max_us"}


def test_empty_histogram_and_bad_percentile():
    h = Histogram()
    assert h.percentile(99) == 0 and h.mean() == 0.0
    with pytest.raises(ValueError):
        h.percentile(0)


def test_counters_are_not_walked_by_the_garbage_collector():
    """A run keeps one histogram per client and operation; their counters
    must not add to every full collection the benchmark sits through."""
    import gc
    h = Histogram()
    for v in (5, 300, 10**9, 10**12):
        h.record(v)
    other = Histogram()
    other.record(10**13)
    h.merge(other)
    assert gc.get_referents(h.counts) == [type(h.counts)]     # a list would hand over every slot
    assert h.count == 5 and h.percentile(100) == 10**13
