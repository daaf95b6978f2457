"""BlockCache: decoded blocks kept in memory, bounded by bytes, CLOCK eviction.

Keys are ints, ``cache_key(table_id, block_offset)``: the table id above
TABLE_SHIFT bits, the offset below (a table is under 1 TiB).  An int,
unlike a tuple, is no object for the garbage collector to track: a table
opened with thousands of blocks makes one list of keys, not one tracked
tuple per block.  Each block is charged ``block.nbytes``
(when inserted, and again when ``replace`` swaps in its decoded copy).
The sum of charges never exceeds ``capacity`` (a block larger than the whole
capacity is not cached; capacity 0 caches nothing).

CLOCK (second chance): entries sit on a circle swept by a hand.  A hit sets
the entry's reference bit.  To make room, the hand looks at the entry under
it: a set bit is cleared and the entry passes (a second chance); a clear bit
means the entry was not used since the last sweep, and it is evicted.  New
entries start with a clear bit, so a scan of blocks read once cannot push out
blocks that are being reused.  The blocks of tables a compaction dropped
are retired (``retire_tables``): bits cleared and moved to the hand, so
they go first, freed one per eviction rather than all at once.

Admission: a block a reader read is offered to the cache, which takes one
in ``skip`` of each kind of reader's blocks (an ``Admission`` per kind:
gets, ``GET_FILL``; scans, ``SCAN_FILL``).  A block costs an insert and an
eviction (about 3 us in a running store, its memory cold by then), and a
scan's block, on its first hit by a scan, a decode of all its entries; it
pays that back only if readers hit it later.  Over a working set several
times the cache most blocks read are evicted before anyone asks for them
again, and taking each one makes the reads slower.  So the cache watches
the blocks each admission took: every ADMIT_WINDOW of them evicted, it
reads the share never hit.  Two windows in a row at the admission's
``wasted_share`` or more double its ``skip`` (up to MAX_SKIP); one window
at USEFUL_SHARE or less halves it (down to 1).  A cache that never evicts
never refuses a block, and a block that readers keep reading is taken
after about ``skip`` reads: the cache then keeps the blocks read often (a
frequency filter) rather than the ones read last.  The hand evicts blocks
never hit before any that were hit, so the first evictions of a full
cache are all of blocks never hit; the two-window rule keeps that from
raising a skip on its own.

Thread-safe: any thread may call any method.  A lookup takes no lock: it is
a dict probe, then setting the entry's reference bit and advancing the hit
counter, or advancing the miss counter, each one atomic under the GIL (an
entry list is never replaced, only its slots; a hit on an entry being
evicted only sets a bit nobody reads again); so does ``Admission.admit``.
Inserts, replacements and evictions change the map and the circle under
one short lock.  The statistics stay exact: hits and misses are
``itertools.count`` objects (one C call advances one, so no increment is
lost between threads).
"""
from __future__ import annotations

import itertools
import threading
from collections import deque

from hedge.lsm.block import Block
from hedge.lsm.one_in_skip import OneInSkip

CacheKey = int
TABLE_SHIFT = 40


def cache_key(table_id: int, offset: int) -> CacheKey:
    """The key of the block at ``offset`` (< 2**TABLE_SHIFT) of table ``table_id``."""
    return table_id << TABLE_SHIFT | offset


# How a read fills the cache: not at all, always (False and True mean
# these two), or through the admission of gets or of scans (module
# docstring).
NO_FILL, FILL, SCAN_FILL, GET_FILL = 0, 1, 2, 3

# Admission: judged every ADMIT_WINDOW evictions of the blocks it took;
# fewer taken after two windows in a row with at least the admission's
# wasted share never hit, more after one with at most USEFUL_SHARE never
# hit; never fewer than one in MAX_SKIP.
ADMIT_WINDOW = 256
SCAN_WASTED_SHARE = 0.5
GET_WASTED_SHARE = 0.7
USEFUL_SHARE = 0.1
MAX_SKIP = 16

# Slots of an entry list: key, block, charge, reference bit, how it was
# filled (an admission's mode: its eviction is judged).  The reference bit
# is None until the entry's first hit, True after a hit, False once the
# hand has passed it since.
_KEY, _BLOCK, _CHARGE, _REF, _FILL = range(5)


class Admission(OneInSkip):
    """How many of one kind of reader's blocks the cache takes: one in
    ``skip`` (hedge/lsm/one_in_skip.py).  ``admit`` takes no lock;
    ``evicted`` runs under its cache's lock."""

    __slots__ = ("wasted_share", "inserts", "_judged", "_unused", "_wasteful")

    def __init__(self, wasted_share: float):
        super().__init__(MAX_SKIP)
        self.wasted_share = wasted_share
        self.inserts = 0            # blocks taken (counted by the cache, under its lock)
        self._judged = 0            # evictions in the current window
        self._unused = 0            # of those, never hit
        self._wasteful = False      # the last window had the wasted share

    # Whether the cache should take the block just read.
    admit = OneInSkip.take

    def evicted(self, used: bool) -> None:
        """A block this admission took was evicted, hit (``used``) or never.
        REQUIRES: the cache's lock is held."""
        self._judged += 1
        if not used:
            self._unused += 1
        if self._judged < ADMIT_WINDOW:
            return
        unused = self._unused / self._judged
        self._judged = self._unused = 0
        wasteful = unused >= self.wasted_share
        if wasteful and self._wasteful:
            self.fewer()
            wasteful = False        # the next doubling needs two windows more
        elif unused <= USEFUL_SHARE:
            self.more()
        self._wasteful = wasteful


class BlockCache:
    def __init__(self, capacity_bytes: int):
        if capacity_bytes < 0:
            raise ValueError("capacity_bytes must be >= 0")
        self.capacity = capacity_bytes
        self._lock = threading.Lock()
        self._map: dict[CacheKey, list] = {}
        self._clock: deque[list] = deque()  # the hand is at the left end
        self._bytes = 0
        self._hits = itertools.count()
        self._misses = itertools.count()
        self._inserts = 0
        self._evictions = 0
        # The admissions by fill mode (SCAN_FILL, GET_FILL).
        self.admissions = (None, None, Admission(SCAN_WASTED_SHARE), Admission(GET_WASTED_SHARE))

    def get(self, key: CacheKey) -> Block | None:
        """The cached block, or None."""
        entry = self._map.get(key)
        if entry is None:
            next(self._misses)
            return None
        next(self._hits)
        entry[_REF] = True
        return entry[_BLOCK]

    def holds(self, key: CacheKey) -> bool:
        """Whether a block is cached under ``key``; counts neither a hit
        nor a miss and leaves the reference bit alone."""
        return key in self._map

    def insert(self, key: CacheKey, block: Block, fill: int = FILL) -> None:
        """Cache ``block`` under ``key`` (replacing an older one), evicting
        unreferenced entries as needed.  A block larger than the capacity is
        not cached.  ``fill``: FILL, or the mode of the admission that took
        the block (SCAN_FILL, GET_FILL), which then judges its eviction."""
        charge = block.nbytes
        if charge > self.capacity:
            return
        with self._lock:
            old = self._map.get(key)
            if old is not None:
                # Same table and offset means the same bytes: keep the
                # resident one, counted as used.
                old[_REF] = True
                return
            self._make_room(charge)
            entry = [key, block, charge, None, fill]
            self._map[key] = entry
            self._clock.append(entry)
            self._bytes += charge
            self._inserts += 1
            if fill > FILL:
                self.admissions[fill].inserts += 1

    def replace(self, key: CacheKey, old: Block, new: Block) -> None:
        """Put ``new`` in place of ``old`` under ``key`` (a decoded copy of the
        same block: ``Block.decoded``) and charge its size, evicting as
        needed; nothing happens unless ``old`` is still the resident block.
        The entry keeps its reference bit.  When ``new`` is larger than the
        whole capacity the entry is dropped."""
        charge = new.nbytes
        with self._lock:
            entry = self._map.get(key)
            if entry is None or entry[_BLOCK] is not old:
                return
            if charge > self.capacity:
                del self._map[key]
                self._clock.remove(entry)
                self._bytes -= entry[_CHARGE]
                self._evictions += 1
                return
            entry[_BLOCK] = new
            self._bytes += charge - entry[_CHARGE]
            entry[_CHARGE] = charge
            self._make_room(0)

    def _make_room(self, charge: int) -> None:
        clock = self._clock
        limit = self.capacity - charge
        while self._bytes > limit:
            entry = clock.popleft()
            if entry[_REF]:
                entry[_REF] = False
                clock.append(entry)
            else:
                del self._map[entry[_KEY]]
                self._bytes -= entry[_CHARGE]
                self._evictions += 1
                fill = entry[_FILL]
                if fill > FILL:
                    self.admissions[fill].evicted(entry[_REF] is not None)

    def erase_tables(self, table_ids) -> None:
        """Drop every block of the tables ``table_ids`` (their files are
        going away): one pass over the cache, however many tables."""
        with self._lock:
            theirs, self._clock = self._split(table_ids)
            for entry in theirs:
                del self._map[entry[_KEY]]
                self._bytes -= entry[_CHARGE]

    def retire_tables(self, table_ids) -> None:
        """Make the blocks of the tables ``table_ids`` (dropped by a
        compaction) the next ones the hand evicts: their reference bits are
        cleared and they move to the hand.  They stay readable until then
        (readers of an older version may still want them), and freeing them
        is left to the evictions that make room for new blocks, one at a
        time, instead of one long pass under the lock: one pass over the
        circle, no block freed."""
        with self._lock:
            theirs, others = self._split(table_ids)
            for entry in theirs:
                entry[_REF] = False
                entry[_FILL] = FILL       # their eviction says nothing about an admission
            theirs.extend(others)
            self._clock = theirs

    def _split(self, table_ids) -> tuple[deque, deque]:
        """The entries of the tables ``table_ids`` and all the others, each
        in circle order from the hand.  REQUIRES: the lock is held."""
        table_ids = frozenset(table_ids)
        theirs: deque[list] = deque()
        others: deque[list] = deque()
        for entry in self._clock:
            (theirs if entry[_KEY] >> TABLE_SHIFT in table_ids else others).append(entry)
        return theirs, others

    def __len__(self) -> int:
        return len(self._map)

    def stats(self) -> dict[str, int]:
        """Counters since creation plus the current and maximum bytes."""
        with self._lock:
            return {
                "hits": counter_value(self._hits),
                "misses": counter_value(self._misses),
                "inserts": self._inserts,
                "evictions": self._evictions,
                "bytes": self._bytes,
                "capacity": self.capacity,
                "entries": len(self._map),
                "scan_skip": self.admissions[SCAN_FILL].skip,
                "scan_inserts": self.admissions[SCAN_FILL].inserts,
                "get_skip": self.admissions[GET_FILL].skip,
                "get_inserts": self.admissions[GET_FILL].inserts,
            }


def counter_value(counter: itertools.count) -> int:
    """The next number ``counter`` would give, without advancing it: its
    repr, ``count(N)``, is the one public view of it."""
    return int(repr(counter)[6:-1])
