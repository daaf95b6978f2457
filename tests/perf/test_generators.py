"""The YCSB number generators: zipfian skew against the zipfian formula, the
scrambled variant's spread, latest, scan lengths, operation mix, the insert
counter."""
import collections
import random

import pytest

from perf.generators import (SCRAMBLED_ZETAN, InsertCounter, KeyChooser, OperationChooser, ScanLength,
                             ScrambledZipfian, SkewedLatest, Zipfian, zeta)

N = 10_000
DRAWS = 200_000
THETA = 0.99


def hottest_share(counts: collections.Counter, k: int, draws: int) -> float:
    return sum(c for _, c in counts.most_common(k)) / draws


def test_zeta_extends_a_partial_sum():
    assert zeta(10, THETA) == pytest.approx(sum(1 / i ** THETA for i in range(1, 11)))
    assert zeta(10, THETA, 4, zeta(4, THETA)) == pytest.approx(zeta(10, THETA))


def test_zipfian_hottest_rank_draws_one_over_zeta():
    z = Zipfian(N, random.Random(1))
    counts = collections.Counter(z.next() for _ in range(DRAWS))
    assert counts[0] / DRAWS == pytest.approx(1 / zeta(N, THETA), abs=0.006)
    assert counts[1] / DRAWS == pytest.approx(0.5 ** THETA / zeta(N, THETA), abs=0.006)


def test_zipfian_hottest_one_percent_draws_the_formula_share():
    z = Zipfian(N, random.Random(2))
    counts = collections.Counter(z.next() for _ in range(DRAWS))
    expected = zeta(N // 100, THETA) / zeta(N, THETA)  # ~0.52
    # Gray et al.'s method approximates the tail, hence the tolerance.
    assert hottest_share(counts, N // 100, DRAWS) == pytest.approx(expected, abs=0.03)
    assert all(0 <= r < N for r in counts)


def test_zipfian_item_count_can_grow():
    z = Zipfian(10, random.Random(3))
    draws = [z.next(1000) for _ in range(20_000)]
    assert max(draws) >= 10 and max(draws) < 1000


def test_scrambled_zipfian_matches_folded_formula_share():
    s = ScrambledZipfian(N, random.Random(4))
    counts = collections.Counter(s.next() for _ in range(DRAWS))
    # The hottest 1% of records hold the top N/100 ranks of a zipfian over
    # 10^10 items (zeta precomputed as YCSB does) plus their uniform share
    # of the folded tail.
    head = zeta(N // 100, THETA) / SCRAMBLED_ZETAN
    expected = head + (1 - head) * 0.01
    assert hottest_share(counts, N // 100, DRAWS) == pytest.approx(expected, abs=0.03)
    assert all(0 <= r < N for r in counts)


def test_scrambled_zipfian_spreads_hot_keys_over_the_key_space():
    s = ScrambledZipfian(N, random.Random(5))
    counts = collections.Counter(s.next() for _ in range(DRAWS))
    hot = [r for r, _ in counts.most_common(N // 100)]
    per_decile = collections.Counter(r * 10 // N for r in hot)
    # 100 hot records over 10 deciles: ~10 each, none empty or hoarding.
    assert len(per_decile) == 10
    assert max(per_decile.values()) <= 25
    # Plain zipfian, by contrast, puts them all in the first decile.
    z = Zipfian(N, random.Random(5))
    plain = collections.Counter(z.next() for _ in range(DRAWS))
    assert {r * 10 // N for r, _ in plain.most_common(N // 100)} == {0}


def test_latest_favours_the_newest_records():
    counter = InsertCounter(N)
    latest = SkewedLatest(counter, random.Random(6))
    counts = collections.Counter(latest.next() for _ in range(DRAWS))
    assert counts.most_common(1)[0][0] == N - 1
    newest = sum(counts[r] for r in range(N - N // 100, N)) / DRAWS
    assert newest == pytest.approx(zeta(N // 100, THETA) / zeta(N, THETA), abs=0.03)
    assert max(counts) < N
    # After an insert is acknowledged, it is the hottest record.
    counter.acknowledge(counter.take())
    after = collections.Counter(latest.next() for _ in range(20_000))
    assert after.most_common(1)[0][0] == N


@pytest.mark.parametrize("distribution", ["uniform", "zipfian", "latest"])
def test_key_chooser_stays_below_the_acknowledged_limit(distribution):
    counter = InsertCounter(1000)
    chooser = KeyChooser(distribution, counter, 1000 + 500, random.Random(7))
    taken = [counter.take() for _ in range(500)]  # issued, not acknowledged
    draws = [chooser.next() for _ in range(20_000)]
    assert max(draws) < 1000 and min(draws) >= 0
    assert taken[0] == 1000


def test_uniform_key_chooser_covers_the_records_evenly():
    counter = InsertCounter(100)
    chooser = KeyChooser("uniform", counter, 100, random.Random(8))
    counts = collections.Counter(chooser.next() for _ in range(50_000))
    assert len(counts) == 100
    assert max(counts.values()) < 2 * min(counts.values())


def test_uniform_scan_lengths_cover_the_range():
    lengths = ScanLength(1, 100, "uniform", random.Random(9))
    draws = [lengths.next() for _ in range(50_000)]
    assert min(draws) == 1 and max(draws) == 100
    assert len(set(draws)) == 100
    assert sum(draws) / len(draws) == pytest.approx(50.5, abs=1.0)


def test_zipfian_scan_lengths_prefer_short_scans():
    lengths = ScanLength(1, 100, "zipfian", random.Random(10))
    counts = collections.Counter(lengths.next() for _ in range(50_000))
    assert min(counts) >= 1 and max(counts) <= 100
    assert counts.most_common(1)[0][0] == 1


def test_operation_chooser_follows_proportions():
    chooser = OperationChooser(["read", "update", "scan"], [0.95, 0.05, 0.0], random.Random(11))
    counts = collections.Counter(chooser.next() for _ in range(100_000))
    assert counts["read"] / 100_000 == pytest.approx(0.95, abs=0.005)
    assert counts["scan"] == 0


def test_operation_chooser_refuses_bad_weights():
    with pytest.raises(ValueError):
        OperationChooser(["read"], [0.0], random.Random(0))
    with pytest.raises(ValueError):
        OperationChooser(["read", "update"], [1.0, -0.5], random.Random(0))


def test_insert_counter_limit_is_the_contiguous_acknowledged_prefix():
    counter = InsertCounter(10)
    a, b, c = counter.take(), counter.take(), counter.take()
    assert (a, b, c) == (10, 11, 12)
    counter.acknowledge(c)
    counter.acknowledge(b)
    assert counter.limit == 10
    counter.acknowledge(a)
    assert counter.limit == 13
    assert counter.take(bound=13) is None
