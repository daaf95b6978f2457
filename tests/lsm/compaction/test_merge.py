"""compact_entries against a brute-force model of what readers see."""
from __future__ import annotations

import random

import pytest

from hedge.lsm.compaction.merge import compact_entries
from hedge.lsm.keys import Kind, entry_order


def visible(entries, key: bytes, snapshot: int):
    """What a reader at ``snapshot`` gets for ``key``: a value, or None."""
    for k, seq, kind, value in entries:
        if k == key and seq <= snapshot:
            return value if kind == Kind.PUT else None
    return None


def random_entries(rng: random.Random):
    keys = [b"k%02d" % i for i in range(rng.randint(1, 12))]
    seqs = rng.sample(range(1, 200), rng.randint(0, 60))
    entries = []
    for seq in seqs:
        if rng.random() < 0.35:
            entries.append((rng.choice(keys), seq, Kind.DELETE, b""))
        else:
            entries.append((rng.choice(keys), seq, Kind.PUT, b"v%d" % seq))
    entries.sort(key=entry_order)
    return keys, entries


@pytest.mark.parametrize("seed", range(300))
def test_readers_at_or_after_the_oldest_snapshot_see_the_same_data(seed):
    rng = random.Random(seed)
    keys, entries = random_entries(rng)
    last_seq = max((e[1] for e in entries), default=0)
    oldest = rng.randint(0, last_seq + 5)
    drop = rng.random() < 0.5
    out = list(compact_entries(iter(entries), drop_tombstones=drop, oldest_snapshot_seq=oldest))

    # Output is a subsequence of the input, in entry order.
    positions = [entries.index(e) for e in out]
    assert positions == sorted(set(positions))
    # Every reader from the oldest snapshot on sees exactly what it saw before
    # (the input is the whole tree here, so dropping a bottom tombstone is safe).
    for snapshot in range(oldest, last_seq + 2):
        for key in keys:
            assert visible(out, key, snapshot) == visible(entries, key, snapshot)
    for key in keys:
        versions = [e for e in entries if e[0] == key]
        kept = [e for e in out if e[0] == key]
        # Everything newer than the oldest snapshot survives...
        assert [e for e in versions if e[1] > oldest] == [e for e in kept if e[1] > oldest]
        # ...and at most one version at or below it: the one that snapshot reads,
        # unless it is a tombstone that may be dropped.
        old = [e for e in versions if e[1] <= oldest]
        expected_old = old[:1]
        if drop and old and old[0][2] == Kind.DELETE:
            expected_old = []
        assert [e for e in kept if e[1] <= oldest] == expected_old


def test_tombstones_stay_when_not_bottommost():
    entries = [(b"a", 5, Kind.DELETE, b""), (b"a", 3, Kind.PUT, b"x")]
    assert list(compact_entries(entries, drop_tombstones=False, oldest_snapshot_seq=9)) == entries[:1]


def test_tombstone_newer_than_the_oldest_snapshot_is_kept_even_at_the_bottom():
    entries = [(b"a", 5, Kind.DELETE, b""), (b"a", 3, Kind.PUT, b"x"), (b"a", 2, Kind.PUT, b"y")]
    assert list(compact_entries(entries, drop_tombstones=True, oldest_snapshot_seq=4)) == entries[:2]


def test_bottom_tombstone_takes_older_versions_with_it():
    entries = [(b"a", 5, Kind.DELETE, b""), (b"a", 3, Kind.PUT, b"x"), (b"b", 1, Kind.PUT, b"y")]
    assert list(compact_entries(entries, drop_tombstones=True, oldest_snapshot_seq=9)) == entries[2:]


def test_key_out_of_order_is_refused():
    entries = [(b"b", 1, Kind.PUT, b""), (b"a", 2, Kind.PUT, b"")]
    with pytest.raises(ValueError, match="out of order"):
        list(compact_entries(entries, drop_tombstones=False, oldest_snapshot_seq=9))


def test_seq_out_of_order_is_refused():
    entries = [(b"a", 1, Kind.PUT, b""), (b"a", 2, Kind.PUT, b"")]
    with pytest.raises(ValueError, match="out of order"):
        list(compact_entries(entries, drop_tombstones=False, oldest_snapshot_seq=9))
