"""The comparison harness: memtable iterators, merged sources and visible()
against a plain sorted-list / dict model on random multi-version data."""
import random

import pytest

from hedge.lsm.iterators import merge, visible
from hedge.lsm.keys import Kind, entry_order
from hedge.lsm.memtable import Memtable
from tests.lsm.model import random_entries, sorted_entries, visible_state


def split(rng: random.Random, entries, n_sources: int, dup_ratio: float = 0.0) -> list[list]:
    """Deal entries over sources (each sorted); with dup_ratio, also copy
    some entries into a later source with a different value (a stale copy of
    the same (key, seq) that merge must drop)."""
    sources = [[] for _ in range(n_sources)]
    for e in entries:
        i = rng.randrange(n_sources)
        sources[i].append(e)
        if i + 1 < n_sources and rng.random() < dup_ratio:
            j = rng.randrange(i + 1, n_sources)
            sources[j].append((e[0], e[1], e[2], e[3] + b"-stale"))
    return [sorted(s, key=entry_order) for s in sources]


@pytest.mark.parametrize("n_sources", [0, 1, 2, 3, 5, 9])
def test_merge_matches_a_sorted_model(n_sources):
    rng = random.Random(n_sources)
    entries = random_entries(rng, 4000, 200)
    sources = split(rng, entries, n_sources) if n_sources else []
    expected = sorted_entries(entries) if n_sources else []
    assert list(merge(sources)) == expected


@pytest.mark.parametrize("n_sources", [2, 3, 6])
def test_merge_keeps_the_earliest_source_on_identical_key_and_seq(n_sources):
    rng = random.Random(100 + n_sources)
    entries = random_entries(rng, 3000, 100)
    sources = split(rng, entries, n_sources, dup_ratio=0.3)
    assert sum(map(len, sources)) > len(entries)          # there are copies to drop
    assert list(merge(sources)) == sorted_entries(entries)


def test_merge_of_identical_sources_yields_each_entry_once():
    entries = sorted_entries(random_entries(random.Random(4), 500, 30))
    for n in (2, 4):
        assert list(merge([list(entries) for _ in range(n)])) == entries


def test_merge_with_empty_sources():
    entries = sorted_entries(random_entries(random.Random(8), 300, 30))
    assert list(merge([[], entries, []])) == entries
    assert list(merge([[], []])) == []


def test_visible_matches_a_dict_model_at_every_snapshot():
    rng = random.Random(21)
    entries = random_entries(rng, 2000, 80, delete_ratio=0.35)
    ordered = sorted_entries(entries)
    for snapshot in range(0, 2001, 37):
        assert list(visible(ordered, snapshot)) == visible_state(entries, snapshot), snapshot


def test_visible_with_bounds_matches_the_model():
    rng = random.Random(22)
    entries = random_entries(rng, 2000, 120)
    ordered = sorted_entries(entries)
    keys = sorted({e[0] for e in entries})
    for _ in range(60):
        snapshot = rng.randint(0, 2100)
        start = rng.choice(keys + [None, rng.randbytes(2)])
        end = rng.choice(keys + [None, rng.randbytes(2)])
        assert list(visible(ordered, snapshot, start, end)) == visible_state(entries, snapshot, start, end)


def test_delete_hides_older_puts_in_older_sources():
    newer = [(b"k", 5, Kind.DELETE, b"")]
    older = [(b"k", 3, Kind.PUT, b"old"), (b"m", 2, Kind.PUT, b"m")]
    assert list(visible(merge([newer, older]), 10)) == [(b"m", b"m")]
    assert list(visible(merge([newer, older]), 4)) == [(b"k", b"old"), (b"m", b"m")]


def test_memtables_merged_and_filtered_match_the_model():
    # The read path in miniature: a mutable memtable, two immutable ones and
    # a "table" (a sorted list), queried at snapshots over ranges.
    rng = random.Random(31)
    entries = random_entries(rng, 6000, 400, delete_ratio=0.3)
    cut = [0, 1500, 3000, 4500, 6000]
    table = sorted_entries(entries[cut[0]:cut[1]])
    memtables = []
    for lo, hi in zip(cut[1:], cut[2:]):
        mt = Memtable()
        for e in entries[lo:hi]:
            mt.add(*e)
        memtables.append(mt)
    memtables.reverse()                       # newest first
    keys = sorted({e[0] for e in entries})
    for _ in range(40):
        snapshot = rng.randint(0, 6000)
        start = rng.choice(keys + [None])
        end = rng.choice(keys + [None])
        sources = [mt.iter_from(start, end) for mt in memtables]
        sources.append([e for e in table if (start is None or e[0] >= start) and (end is None or e[0] < end)])
        assert list(merge(sources)) == sorted_entries(entries, start, end)
        sources = [mt.iter_from(start, end) for mt in memtables] + [table]
        assert list(visible(merge(sources), snapshot, start, end)) == visible_state(entries, snapshot, start, end)
