"""Block cache: byte bound, hits and misses, CLOCK second chance, threads."""
from __future__ import annotations

import random
import threading

import pytest

from hedge.lsm.block import Block, BlockBuilder
from hedge.lsm.cache import ADMIT_WINDOW, GET_FILL, MAX_SKIP, SCAN_FILL, BlockCache, cache_key
from hedge.lsm.keys import Kind


def make_block(size: int) -> Block:
    """A block of exactly ``size`` bytes (size a multiple of 4096)."""
    builder = BlockBuilder(size)
    builder.add(b"k", 1, Kind.PUT, b"v")
    return Block(builder.finish(pad_to=size))


PAGE_BLOCK = make_block(4096)


def test_hit_after_insert_and_miss_before():
    cache = BlockCache(1 << 20)
    assert cache.get(cache_key(1, 0)) is None
    cache.insert(cache_key(1, 0), PAGE_BLOCK)
    assert cache.get(cache_key(1, 0)) is PAGE_BLOCK
    assert cache.get(cache_key(2, 0)) is None
    s = cache.stats()
    assert (s["hits"], s["misses"], s["inserts"], s["bytes"]) == (1, 2, 1, 4096)


def test_bound_is_never_exceeded_and_bytes_match_contents():
    rng = random.Random(3)
    blocks = {n: make_block(4096 * n) for n in (1, 2, 3, 5)}
    cache = BlockCache(10 * 4096 + 123)
    resident: dict = {}
    for i in range(2000):
        key = cache_key(rng.randrange(5), rng.randrange(40) * 4096)
        if rng.random() < 0.5:
            cache.get(key)
        else:
            cache.insert(key, blocks[rng.choice(list(blocks))])
        s = cache.stats()
        assert s["bytes"] <= s["capacity"]
    resident = {k: cache.get(k) for t in range(5) for k in [cache_key(t, o * 4096) for o in range(40)]}
    assert sum(b.nbytes for b in resident.values() if b is not None) == cache.stats()["bytes"]
    assert cache.stats()["evictions"] > 0


def test_zero_capacity_caches_nothing():
    cache = BlockCache(0)
    cache.insert(cache_key(1, 0), PAGE_BLOCK)
    assert cache.get(cache_key(1, 0)) is None
    assert cache.stats()["bytes"] == 0 and len(cache) == 0


def test_block_larger_than_capacity_is_not_cached():
    cache = BlockCache(8192)
    cache.insert(cache_key(1, 0), make_block(3 * 4096))
    assert cache.get(cache_key(1, 0)) is None
    assert cache.stats()["inserts"] == 0


def test_reinsert_keeps_resident_block_and_charge():
    cache = BlockCache(1 << 20)
    cache.insert(cache_key(1, 0), PAGE_BLOCK)
    cache.insert(cache_key(1, 0), make_block(4096))
    assert cache.get(cache_key(1, 0)) is PAGE_BLOCK
    assert cache.stats()["bytes"] == 4096


def test_second_chance_keeps_reused_blocks_through_a_cold_scan():
    capacity_blocks = 16
    cache = BlockCache(capacity_blocks * 4096)
    hot = [cache_key(1, i * 4096) for i in range(4)]
    for key in hot:
        cache.insert(key, PAGE_BLOCK)
    # A scan of cold blocks, three times the capacity, while the hot blocks
    # keep being read.  FIFO would have evicted the hot blocks long ago.
    for i in range(3 * capacity_blocks):
        cache.insert(cache_key(2, i * 4096), PAGE_BLOCK)
        if i % 4 == 0:
            for key in hot:
                assert cache.get(key) is PAGE_BLOCK, (i, key)
    assert all(cache.get(key) is PAGE_BLOCK for key in hot)
    # The cold blocks that were never reused are the ones that went.
    cold_left = sum(cache.get(cache_key(2, i * 4096)) is not None for i in range(3 * capacity_blocks))
    assert cold_left == capacity_blocks - len(hot)


def test_unreferenced_blocks_are_evicted_in_insertion_order():
    cache = BlockCache(4 * 4096)
    for i in range(6):
        cache.insert(cache_key(1, i * 4096), PAGE_BLOCK)
    present = [cache.get(cache_key(1, i * 4096)) is not None for i in range(6)]
    assert present == [False, False, True, True, True, True]


def test_erase_tables_drops_only_those_tables():
    cache = BlockCache(1 << 20)
    for t in (1, 2, 3):
        for i in range(3):
            cache.insert(cache_key(t, i * 4096), PAGE_BLOCK)
    cache.erase_tables([1, 3])
    assert all(cache.get(cache_key(t, i * 4096)) is None for t in (1, 3) for i in range(3))
    assert all(cache.get(cache_key(2, i * 4096)) is PAGE_BLOCK for i in range(3))
    assert cache.stats()["bytes"] == 3 * 4096 and len(cache) == 3
    cache.insert(cache_key(3, 0), PAGE_BLOCK)
    assert cache.get(cache_key(3, 0)) is PAGE_BLOCK


def test_retired_tables_are_evicted_first_and_stay_readable_until_then():
    cache = BlockCache(6 * 4096)
    for t in (1, 2, 3):
        for i in range(2):
            cache.insert(cache_key(t, i * 4096), PAGE_BLOCK)
    for i in range(2):                  # table 1 used: without retiring, it would outlive 2 and 3
        assert cache.get(cache_key(1, i * 4096)) is PAGE_BLOCK
    cache.retire_tables([1, 3])
    assert cache.stats()["bytes"] == 6 * 4096 and len(cache) == 6
    assert cache.get(cache_key(3, 4096)) is PAGE_BLOCK      # a reader of an older version still hits
    for i in range(3):
        cache.insert(cache_key(4, i * 4096), PAGE_BLOCK)
    # The three evicted are retired blocks: table 1's two first (their
    # bits were cleared), then table 3's block 0 (block 4096 was just hit).
    assert [cache.get(cache_key(1, i * 4096)) for i in range(2)] == [None, None]
    assert cache.get(cache_key(3, 0)) is None and cache.get(cache_key(3, 4096)) is PAGE_BLOCK
    assert all(cache.get(cache_key(2, i * 4096)) is PAGE_BLOCK for i in range(2))
    assert cache.stats()["bytes"] == 6 * 4096 and cache.stats()["evictions"] == 3


def test_concurrent_threads_keep_bound_and_exact_counts():
    cache = BlockCache(20 * 4096)
    gets_per_thread = 5000
    errors = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(gets_per_thread):
                key = cache_key(rng.randrange(3), rng.randrange(50) * 4096)
                if cache.get(key) is None:
                    cache.insert(key, PAGE_BLOCK)
                if cache.stats()["bytes"] > cache.capacity:
                    errors.append("bound exceeded")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = cache.stats()
    assert s["hits"] + s["misses"] == 4 * gets_per_thread
    assert s["bytes"] == 4096 * s["entries"] <= s["capacity"]


def test_negative_capacity_is_rejected():
    with pytest.raises(ValueError):
        BlockCache(-1)


def decoded_pair():
    builder = BlockBuilder(4096)
    for i in range(50):
        builder.add(b"key%04d" % i, 1, Kind.PUT, b"v")
    plain = Block(builder.finish(pad_to=4096))
    return plain, plain.decoded()


def test_replace_swaps_in_the_decoded_copy_and_charges_it():
    plain, decoded = decoded_pair()
    cache = BlockCache(1 << 20)
    cache.insert(cache_key(1, 0), plain)
    cache.replace(cache_key(1, 0), plain, decoded)
    assert cache.get(cache_key(1, 0)) is decoded
    assert cache.stats()["bytes"] == decoded.nbytes > plain.nbytes
    cache.replace(cache_key(1, 0), plain, decoded)          # no longer resident: nothing happens
    assert cache.stats()["bytes"] == decoded.nbytes


def test_replace_of_an_absent_block_does_nothing():
    plain, decoded = decoded_pair()
    cache = BlockCache(1 << 20)
    cache.replace(cache_key(1, 0), plain, decoded)
    assert len(cache) == 0 and cache.stats()["bytes"] == 0


def test_replace_evicts_to_stay_within_the_bound():
    plain, decoded = decoded_pair()
    cache = BlockCache(3 * 4096)
    for i in range(3):
        cache.insert(cache_key(1, i * 4096), plain)
    cache.replace(cache_key(1, 4096), plain, decoded)
    s = cache.stats()
    assert s["bytes"] <= s["capacity"] and s["evictions"] >= 1
    assert sum(b.nbytes for b in (cache.get(cache_key(1, i * 4096)) for i in range(3)) if b is not None) == s["bytes"]


def test_replace_with_a_copy_larger_than_the_capacity_drops_the_entry():
    plain, decoded = decoded_pair()
    cache = BlockCache(decoded.nbytes - 1)
    cache.insert(cache_key(1, 0), plain)
    cache.replace(cache_key(1, 0), plain, decoded)
    assert cache.get(cache_key(1, 0)) is None
    assert cache.stats()["bytes"] == 0 and len(cache) == 0



def test_holds_answers_without_counting_or_marking():
    cache = BlockCache(1 << 20)
    block = make_block(4096)
    cache.insert(cache_key(1, 0), block)
    before = cache.stats()
    assert cache.holds(cache_key(1, 0)) and not cache.holds(cache_key(1, 4096))
    after = cache.stats()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])
    assert not cache._map[cache_key(1, 0)][3]             # the reference bit is not set by holds


# ---- admission ---------------------------------------------------------------

def offer(cache: BlockCache, mode: int, table: int, count: int, hit=False) -> int:
    """Offer ``count`` distinct blocks of table ``table`` as a reader of
    ``mode`` (SCAN_FILL, GET_FILL) does: ask its admission, insert what it
    takes, each hit once after its insert when ``hit``; returns how many
    were taken."""
    admission = cache.admissions[mode]
    taken = 0
    for i in range(count):
        if admission.admit():
            key = cache_key(table, i * 4096)
            cache.insert(key, PAGE_BLOCK, mode)
            taken += 1
            if hit:
                assert cache.get(key) is PAGE_BLOCK
    return taken


@pytest.mark.parametrize("mode", [SCAN_FILL, GET_FILL])
def test_a_cache_that_never_evicts_takes_every_block(mode):
    cache = BlockCache(1 << 20)                      # 256 blocks of 4 KiB
    assert offer(cache, mode, 1, 256) == 256
    s = cache.stats()
    assert s["scan_skip"] == s["get_skip"] == 1 and s["evictions"] == 0
    assert (s["scan_inserts"], s["get_inserts"]) == ((256, 0) if mode == SCAN_FILL else (0, 256))


@pytest.mark.parametrize("mode", [SCAN_FILL, GET_FILL])
def test_blocks_evicted_unused_make_the_cache_take_fewer_down_to_one_in_max(mode):
    cache = BlockCache(64 * 4096)
    admission = cache.admissions[mode]
    # The first 64 fill the cache; each later one evicts one never hit.
    offer(cache, mode, 1, 64 + ADMIT_WINDOW)
    assert admission.skip == 1                       # one window is not enough
    offer(cache, mode, 2, ADMIT_WINDOW)
    assert admission.skip == 2
    offer(cache, mode, 3, 2 * ADMIT_WINDOW)          # a window at one in two
    assert admission.skip == 2                       # each doubling takes two
    offer(cache, mode, 4, 2 * ADMIT_WINDOW)
    assert admission.skip == 4
    offer(cache, mode, 5, 2 * ADMIT_WINDOW * (4 + 8 + 16))
    assert admission.skip == MAX_SKIP
    # From then on exactly one offer in MAX_SKIP is taken.
    offers = 64 * MAX_SKIP
    before = admission.inserts
    assert offer(cache, mode, 6, offers) == offers // MAX_SKIP
    assert admission.inserts - before == offers // MAX_SKIP
    other = cache.admissions[GET_FILL if mode == SCAN_FILL else SCAN_FILL]
    assert other.skip == 1 and other.inserts == 0   # judged apart


def test_a_wasteful_window_alone_does_not_take_fewer():
    """The first evictions of a cache that has just filled are all of
    blocks never hit (the hand passes the hit ones): one such window, then
    one of used blocks, then another wasteful one, leave the skip alone."""
    cache = BlockCache(ADMIT_WINDOW * 4096)          # one window's worth of blocks
    admission = cache.admissions[SCAN_FILL]
    offer(cache, SCAN_FILL, 0, ADMIT_WINDOW)          # fills the cache
    offer(cache, SCAN_FILL, 1, ADMIT_WINDOW, hit=True)   # evicts table 0, unused
    offer(cache, SCAN_FILL, 2, ADMIT_WINDOW)          # evicts table 1, used
    offer(cache, SCAN_FILL, 3, ADMIT_WINDOW)          # evicts table 2, unused
    assert admission.skip == 1
    offer(cache, SCAN_FILL, 4, ADMIT_WINDOW)          # table 3: two wasteful windows in a row
    assert admission.skip == 2


def test_blocks_hit_before_eviction_bring_the_admission_back_to_all():
    cache = BlockCache(64 * 4096)
    admission = cache.admissions[GET_FILL]
    offer(cache, GET_FILL, 1, 64 + ADMIT_WINDOW * 80)
    assert admission.skip == MAX_SKIP
    # Blocks that are used: each step evicts the unused ones left in the
    # cache, then a window of used ones, which halves the skip.
    table = 2
    while admission.skip > 1:
        skip = admission.skip
        offer(cache, GET_FILL, table, (64 + 2 * ADMIT_WINDOW) * skip, hit=True)
        assert admission.skip < skip
        table += 1
    assert offer(cache, GET_FILL, table, 10) == 10


def test_always_filled_blocks_and_retired_blocks_do_not_steer_the_admission():
    cache = BlockCache(ADMIT_WINDOW * 4096)
    admission = cache.admissions[SCAN_FILL]
    for i in range(5 * ADMIT_WINDOW):                # always taken, never hit again
        cache.insert(cache_key(1, i * 4096), PAGE_BLOCK)
    assert admission.skip == 1
    # Scan blocks, unused: the last of these completes a second window of them.
    offer(cache, SCAN_FILL, 2, 3 * ADMIT_WINDOW)
    assert admission.skip == 2
    # The cache holds a window of table 2's scan blocks, all unused.  Retired
    # and evicted, they would read as used (the hand clears their bits).
    cache.retire_tables([2])
    for i in range(ADMIT_WINDOW):
        cache.insert(cache_key(3, i * 4096), PAGE_BLOCK)
    assert not any(cache.holds(cache_key(2, i * 4096)) for i in range(3 * ADMIT_WINDOW))
    assert admission.skip == 2


def test_admission_under_threads_keeps_the_bound_and_the_skips_in_range():
    cache = BlockCache(64 * 4096)
    errors = []

    def reader(table):
        try:
            offer(cache, (SCAN_FILL, GET_FILL)[table % 2], table, 4000, hit=table % 3 == 0)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = cache.stats()
    assert s["bytes"] <= s["capacity"]
    assert 1 <= s["scan_skip"] <= MAX_SKIP and 1 <= s["get_skip"] <= MAX_SKIP
