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

Thread-safe: any thread may call any method.  A lookup takes no lock: it is
a dict probe, then setting the entry's reference bit and advancing the hit
counter, or advancing the miss counter, each one atomic under the GIL (an
entry list is never replaced, only its slots; a hit on an entry being
evicted only sets a bit nobody reads again).  Inserts, replacements and
evictions change the map and the circle under one short lock.  The
statistics stay exact: hits and misses are ``itertools.count`` objects (one
C call advances one, so no increment is lost between threads).
"""
from __future__ import annotations

import itertools
import threading
from collections import deque

from hedge.lsm.block import Block

CacheKey = int
TABLE_SHIFT = 40


def cache_key(table_id: int, offset: int) -> CacheKey:
    """The key of the block at ``offset`` (< 2**TABLE_SHIFT) of table ``table_id``."""
    return table_id << TABLE_SHIFT | offset


# Slots of an entry list: key, block, charge, reference bit.
_KEY, _BLOCK, _CHARGE, _REF = range(4)


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

    def insert(self, key: CacheKey, block: Block) -> None:
        """Cache ``block`` under ``key`` (replacing an older one), evicting
        unreferenced entries as needed.  A block larger than the capacity is
        not cached."""
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
            entry = [key, block, charge, False]
            self._map[key] = entry
            self._clock.append(entry)
            self._bytes += charge
            self._inserts += 1

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
                "hits": _value(self._hits),
                "misses": _value(self._misses),
                "inserts": self._inserts,
                "evictions": self._evictions,
                "bytes": self._bytes,
                "capacity": self.capacity,
                "entries": len(self._map),
            }


def _value(counter: itertools.count) -> int:
    """The next number ``counter`` would give, without advancing it: its
    repr, ``count(N)``, is the one public view of it."""
    return int(repr(counter)[6:-1])
