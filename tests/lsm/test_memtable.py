"""Memtable against a model, and iteration while another thread adds."""
import random
import sys
import threading

import pytest
from sortedcontainers import SortedList

from hedge.lsm.keys import Kind, entry_order
from hedge.lsm.memtable import ENTRY_OVERHEAD_BYTES, Memtable, keys_from
from tests.lsm.model import lookup, random_entries, sorted_entries


def filled(entries) -> Memtable:
    mt = Memtable()
    for e in entries:
        mt.add(*e)
    return mt


def test_empty_memtable():
    mt = Memtable()
    assert len(mt) == 0 and mt.approximate_bytes() == 0
    assert mt.min_seq == 0 and mt.max_seq == 0
    assert mt.get(b"k", 10) is None
    assert list(mt.entries()) == []


def test_get_at_snapshots_matches_model():
    rng = random.Random(5)
    entries = random_entries(rng, 3000, 60)
    mt = filled(entries)
    keys = sorted({e[0] for e in entries}) + [b"\xff\xff\xff\xff\xff", b"\x00"]
    for snapshot in [0, 1, 2, 17, 500, 1499, 2999, 3000, 10_000] + [rng.randint(1, 3000) for _ in range(20)]:
        for key in keys:
            assert mt.get(key, snapshot) == lookup(entries, key, snapshot), (key, snapshot)


def test_get_returns_a_delete_as_such():
    mt = Memtable()
    mt.add(b"k", 1, Kind.PUT, b"v1")
    mt.add(b"k", 2, Kind.DELETE, b"")
    assert mt.get(b"k", 2) == (2, Kind.DELETE, b"")
    assert mt.get(b"k", 1) == (1, Kind.PUT, b"v1")


def test_iteration_matches_model_over_ranges():
    rng = random.Random(9)
    entries = random_entries(rng, 3000, 300)
    mt = filled(entries)
    assert list(mt.entries()) == sorted_entries(entries)
    keys = sorted({e[0] for e in entries})
    for _ in range(50):
        start = rng.choice(keys + [None, b"\x00", rng.randbytes(2)])
        end = rng.choice(keys + [None, b"\xff" * 5, rng.randbytes(2)])
        assert list(mt.iter_from(start, end)) == sorted_entries(entries, start, end), (start, end)


def _newest_visible(entries, snapshot, start, end) -> list[tuple]:
    """Each key's newest entry with seq <= snapshot (deletes included), in
    entry order, over start <= key < end."""
    out = []
    for entry in sorted_entries(entries, start, end):
        if entry[1] <= snapshot and (not out or out[-1][0] != entry[0]):
            out.append(entry)
    return out


def test_iteration_at_a_snapshot_gives_each_keys_newest_visible_version():
    """With a snapshot, forward and reverse iteration give one entry per
    key, the newest the snapshot sees (a delete as such), and skip keys
    written only after it."""
    rng = random.Random(21)
    entries = random_entries(rng, 3000, 200)
    mt = filled(entries)
    keys = sorted({e[0] for e in entries})
    for snapshot in [0, 1, 5, 100, 1500, 2999, 3000, 10_000] + [rng.randint(1, 3000) for _ in range(20)]:
        start = rng.choice(keys + [None, b"\x00"])
        end = rng.choice(keys + [None, b"\xff" * 5])
        expected = _newest_visible(entries, snapshot, start, end)
        assert list(mt.iter_from(start, end, snapshot)) == expected, (snapshot, start, end)
        assert list(mt.iter_reverse(start, end, snapshot)) == expected[::-1], (snapshot, start, end)
    assert len(list(mt.iter_from(None, None, 3000))) == len(keys) < len(entries)


def test_iteration_at_a_snapshot_skips_versions_added_after_it_while_iterating():
    """A version added while the iterator stands at its key, newer than the
    snapshot, changes nothing: the iterator yields the version the snapshot
    sees, once."""
    mt = Memtable()
    mt.add(b"a", 1, Kind.PUT, b"a1")
    mt.add(b"k", 2, Kind.PUT, b"k2")
    mt.add(b"k", 3, Kind.PUT, b"k3")
    mt.add(b"z", 4, Kind.PUT, b"z4")
    it = mt.iter_from(None, None, 4)
    assert next(it) == (b"a", 1, Kind.PUT, b"a1")
    mt.add(b"k", 5, Kind.PUT, b"k5")            # moves seq 3 to the older versions
    assert list(it) == [(b"k", 3, Kind.PUT, b"k3"), (b"z", 4, Kind.PUT, b"z4")]
    assert list(mt.iter_reverse(None, None, 2)) == [(b"k", 2, Kind.PUT, b"k2"), (b"a", 1, Kind.PUT, b"a1")]


@pytest.mark.parametrize("nkeys", [1, 63, 64, 65, 130, 1000])
def test_iteration_interleaved_with_adds_sees_every_key(nkeys):
    """Keys reach the sorted index in batches; iterating between adds, at
    every count around the batch size, still yields every entry in order."""
    rng = random.Random(nkeys)
    mt = Memtable()
    added = []
    for seq in range(1, nkeys + 1):
        key = rng.randbytes(rng.randint(1, 4))
        if any(e[0] == key for e in added):
            continue
        mt.add(key, seq, Kind.PUT, b"v")
        added.append((key, seq, Kind.PUT, b"v"))
        if seq % 7 == 0 or seq in (1, nkeys):
            assert list(mt.entries()) == sorted(added, key=entry_order)
            start = rng.choice(added)[0]
            assert list(mt.iter_from(start)) == [e for e in sorted(added, key=entry_order) if e[0] >= start]
    assert list(mt.entries()) == sorted(added, key=entry_order)


def test_counters():
    entries = [(b"b", 5, Kind.PUT, b"xyz"), (b"a", 3, Kind.DELETE, b""), (b"b", 9, Kind.PUT, b"")]
    mt = filled(entries)
    assert len(mt) == 3
    assert mt.min_seq == 3 and mt.max_seq == 9
    assert mt.approximate_bytes() == (1 + 3) + 1 + 1 + 3 * ENTRY_OVERHEAD_BYTES


def test_add_rejects_a_seq_not_above_the_keys_newest():
    mt = Memtable()
    mt.add(b"k", 5, Kind.PUT, b"v")
    for seq in (5, 4):
        with pytest.raises(ValueError):
            mt.add(b"k", seq, Kind.PUT, b"w")
    assert len(mt) == 1 and list(mt.entries()) == [(b"k", 5, Kind.PUT, b"v")]


def test_add_many_is_a_run_of_adds():
    """The same entries, one call per entry and in groups of every size:
    the same reads, iteration and counters."""
    rng = random.Random(8)
    entries = random_entries(rng, 2000, 80)
    one = filled(entries)
    grouped = Memtable()
    i = 0
    while i < len(entries):
        n = rng.randint(1, 70)
        grouped.add_many(entries[i:i + n])
        i += n
    assert list(grouped.entries()) == list(one.entries()) == sorted_entries(entries)
    assert (len(grouped), grouped.approximate_bytes(), grouped.min_seq, grouped.max_seq) == \
        (len(one), one.approximate_bytes(), one.min_seq, one.max_seq)
    for key in {e[0] for e in entries}:
        assert grouped.get(key, 10**9) == one.get(key, 10**9)


def test_add_many_keeps_the_entries_before_a_bad_one():
    mt = Memtable()
    mt.add(b"k", 5, Kind.PUT, b"v")
    with pytest.raises(ValueError):
        mt.add_many([(b"a", 6, Kind.PUT, b"1"), (b"k", 4, Kind.PUT, b"w"), (b"z", 7, Kind.PUT, b"2")])
    assert list(mt.entries()) == [(b"a", 6, Kind.PUT, b"1"), (b"k", 5, Kind.PUT, b"v")]
    assert len(mt) == 2 and mt.max_seq == 6 and mt.min_seq == 5
    assert mt.approximate_bytes() == 2 + 2 + 2 * ENTRY_OVERHEAD_BYTES


def test_new_keys_are_merged_into_the_sorted_keys_by_sort_not_one_by_one(monkeypatch):
    """The writer folds its new keys in when they are a quarter of the
    sorted keys (rounded up), where SortedList.update merges them in one
    sort; below a quarter it would insert them one at a time."""
    from sortedcontainers import SortedList
    inserted = []
    real_add = SortedList.add

    def add(self, value):
        inserted.append(value)
        real_add(self, value)

    monkeypatch.setattr(SortedList, "add", add)
    rng = random.Random(2)
    mt = Memtable()
    keys = [rng.randbytes(12) for _ in range(20000)]
    for seq, key in enumerate(keys, 1):
        mt.add(key, seq, Kind.PUT, b"")
    assert inserted == []
    assert [e[0] for e in mt.entries()] == sorted(set(keys))


def test_concurrent_iteration_while_another_thread_adds():
    rng = random.Random(13)
    # Enough distinct keys that the SortedList splits its lists while we iterate.
    keys = [rng.randbytes(8) for _ in range(20_000)]
    mt = Memtable()
    seq = 0
    before = []
    for key in keys[:10_000]:
        seq += 1
        mt.add(key, seq, Kind.PUT, b"a")
        before.append((key, seq, Kind.PUT, b"a"))
    for key in keys[:2000]:                # second versions of some keys
        seq += 1
        mt.add(key, seq, Kind.PUT, b"b")
        before.append((key, seq, Kind.PUT, b"b"))
    start_seq = seq + 1
    stop = threading.Event()

    def writer():
        s = start_seq
        i = 0
        while not stop.is_set():
            key = keys[10_000 + i % 10_000] if i < 10_000 else keys[rng.randrange(20_000)]
            mt.add(key, s, Kind.PUT, b"c")
            s += 1
            i += 1

    thread = threading.Thread(target=writer)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)             # interleave the threads finely
    thread.start()
    grew_during = 0
    try:
        for _ in range(10):
            if grew_during == 3:
                break
            n_before = len(mt)
            seen = list(mt.iter_from())
            grew_during += len(mt) > n_before
            assert seen == sorted(seen, key=entry_order)
            assert len({(e[0], e[1]) for e in seen}) == len(seen)
            assert set(before) <= set(seen)
            assert all(e[1] < start_seq or e[3] == b"c" for e in seen)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old_interval)
    assert grew_during == 3                 # the writer really ran during three iterations
    assert list(mt.entries()) == sorted(mt.entries(), key=entry_order)


def test_version_added_while_the_iterator_is_at_its_key_is_not_repeated():
    mt = Memtable()
    mt.add(b"k", 1, Kind.PUT, b"v1")
    mt.add(b"k", 2, Kind.PUT, b"v2")
    mt.add(b"z", 3, Kind.PUT, b"z")
    it = mt.iter_from()
    first = next(it)                 # suspended between the newest and the older versions of b"k"
    mt.add(b"k", 4, Kind.PUT, b"v4")  # moves seq 2 to the older versions
    rest = list(it)
    assert [first] + rest == [(b"k", 2, Kind.PUT, b"v2"), (b"k", 1, Kind.PUT, b"v1"), (b"z", 3, Kind.PUT, b"z")]


def _runs(mt: Memtable, start, end, snapshot, n) -> list[tuple]:
    """Every entry of ``visible_run`` calls from ``start``, each going on
    after the last key of the one before, checking each call's promises."""
    out = []
    key, after = start, False
    while True:
        run, last, more = mt.visible_run(key, after, end, snapshot, n)
        assert len(run) <= n
        assert all(e[1] <= snapshot for e in run)
        out += run
        if last is None:
            assert not run and not more
            return out
        if run:
            assert run[-1][0] <= last
        key, after = last, True
        if not more:
            assert mt.visible_run(key, True, end, snapshot, n)[0] == []
            return out


def test_visible_runs_match_iteration_at_a_snapshot():
    """``visible_run`` calls, each going on after the last key of the one
    before, give what ``iter_from`` at the snapshot gives, whatever the run
    size, bounds and snapshot (keys with no visible version skipped)."""
    rng = random.Random(33)
    entries = random_entries(rng, 3000, 200)
    mt = filled(entries)
    keys = sorted({e[0] for e in entries})
    for snapshot in [0, 1, 5, 100, 1500, 2999, 3000, 10_000] + [rng.randint(1, 3000) for _ in range(20)]:
        start = rng.choice(keys + [None, b"\x00", rng.randbytes(2)])
        end = rng.choice(keys + [None, b"\xff" * 5, rng.randbytes(2)])
        expected = _newest_visible(entries, snapshot, start, end)
        for n in (1, 2, 7, 64, 5000):
            assert _runs(mt, start, end, snapshot, n) == expected, (snapshot, start, end, n)
    assert mt.visible_run(None, False, b"", 3000, 8) == ([], None, False)


def test_visible_runs_while_another_thread_adds_see_exactly_the_snapshot():
    """Runs taken at a snapshot while a writer adds new keys and new
    versions of old ones give exactly what the memtable held at the
    snapshot: no key added later, no version newer than it, no key lost."""
    rng = random.Random(17)
    keys = [rng.randbytes(8) for _ in range(20_000)]
    mt = Memtable()
    before = []
    for seq, key in enumerate(keys[:10_000], 1):
        mt.add(key, seq, Kind.PUT, b"a")
        before.append((key, seq, Kind.PUT, b"a"))
    snapshot = len(before)
    expected = _newest_visible(before, snapshot, None, None)
    stop = threading.Event()

    def writer():
        s = snapshot + 1
        while not stop.is_set():
            mt.add(keys[rng.randrange(20_000)], s, Kind.PUT, b"c")
            s += 1

    thread = threading.Thread(target=writer)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread.start()
    grew_during = 0
    try:
        for n in (3, 16, 128, 128, 128):
            size = len(mt)
            assert _runs(mt, None, None, snapshot, n) == expected, n
            grew_during += len(mt) > size
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old_interval)
    assert grew_during >= 3                 # the writer really ran during the runs


def test_a_visible_run_checks_each_entry_not_the_memtables_newest_seq():
    """A writer puts a key's new entry in place before it raises the
    memtable's newest seq: a run taken in between (the state built here by
    hand, as ``add`` leaves it halfway) still gives what the snapshot sees."""
    mt = Memtable()
    mt.add(b"a", 1, Kind.PUT, b"a1")
    mt.add(b"b", 2, Kind.PUT, b"b2")
    # add(b"a", 3, ...) up to its replacing the newest entry:
    mt._older[b"a"] = [mt._newest[b"a"]]
    mt._newest[b"a"] = (b"a", 3, Kind.PUT, b"a3")
    assert mt.max_seq == 2
    assert mt.visible_run(None, False, None, 2, 10) == ([(b"a", 1, Kind.PUT, b"a1"), (b"b", 2, Kind.PUT, b"b2")],
                                                        b"b", False)


@pytest.mark.parametrize("size", [0, 1, 7, 999, 1000, 1001, 5000])
def test_keys_from_gives_what_the_public_bisect_and_slice_give(size):
    """keys_from reads SortedList's sublists directly: its answers must be
    those of the public calls, from any start, across sublists, at both
    ends, so that a change of SortedList's layout fails here."""
    rng = random.Random(size)
    keys = SortedList()
    for _ in range(size):                           # one by one: sublists split as a memtable's do
        keys.add(rng.randbytes(rng.randint(0, 6)))
    if size >= 5000:
        assert len(keys._lists) > 2                 # several sublists to cross
    starts = [None, b"", b"\x00", b"\xff" * 7] + [rng.randbytes(rng.randint(0, 6)) for _ in range(30)]
    starts += rng.sample(list(keys), min(30, len(keys)))
    for start in starts:
        for after in (False, True):
            if start is None:
                pos = 0
            else:
                pos = keys.bisect_right(start) if after else keys.bisect_left(start)
            for n in (1, 16, 128, 1500, size + 1):
                assert keys_from(keys, start, after, n) == list(keys[pos:pos + n]), (start, after, n)
