"""Point lookups over a super version: what a reader holds, frozen, and the
get that walks it.

A ``SuperVersion`` is the memtable, the immutable memtables (newest first),
the version and the open reader of every table of that version.  The engine
swaps it as a whole (hedge/lsm/engine.py); it is never modified, so any
thread may read it.

At construction it lays out, once, the tables a point lookup may probe, in
the order it must probe them, so that a lookup allocates nothing:
  - ``_l0``: ``(smallest key, largest key, reader)`` per L0 table, newest
    first (overlapping ranges: each table whose range holds the key is
    probed);
  - ``_deep``: per non-empty level below L0, in level order, the list of its
    tables' largest keys (for ``bisect_left``) and the tuple of their readers
    in the same order: the first table whose largest key is >= the key is
    the only one of the level that may hold it (its reader checks the
    smallest key).

``SuperVersion.get`` answers from memory (memtables, cached blocks, key
ranges, bloom filters, blocks the page cache holds: Options.inline_reads)
without suspending, or returns a ``NeedsIO``: the lookup stopped at a
table whose block must be read through the ring.  ``await
NeedsIO.finish()`` reads that block and, when the table has no version of
the key, resumes at the NEXT table of the same super version (never from
the first again), probing cached blocks without suspending and awaiting only
for the next block that is not cached.  A NeedsIO holds its super version's
readers (so their files stay open) and belongs to the task that awaits it.

Why resuming is correct: the lookup found no version of the key at or below
the snapshot in the memtables or the tables it passed, and every version it
could still see is in a later table of the same super version.
"""
from __future__ import annotations

from bisect import bisect_left

from hedge.lsm.keys import DELETE
from hedge.lsm.table.reader import NOT_CACHED


class SuperVersion:
    """What a reader needs, frozen: ``imms`` are (memtable, wal_number)
    pairs, newest first; ``tables`` maps file number -> TableReader for every
    table of ``version`` (KeyError at construction otherwise)."""

    __slots__ = ("mem", "mem_wal", "imms", "version", "tables", "_imm_mems", "_l0", "_deep")

    def __init__(self, mem, mem_wal, imms, version, tables):
        self.mem = mem
        self.mem_wal = mem_wal
        self.imms = imms
        self.version = version
        self.tables = tables
        self._imm_mems = tuple(m for m, _ in imms)
        self._l0 = tuple((m.smallest_key, m.largest_key, tables[m.number]) for m in version.levels[0])
        self._deep = tuple((largest_keys, tuple(tables[m.number] for m in files))
                           for _level, largest_keys, files in version.point_levels())

    def get(self, key: bytes, snap: int):
        """The value of ``key`` at sequence ``snap`` (None when absent or
        deleted), or a NeedsIO to await.  Never suspends.
        REQUIRES: ``key`` is checked bytes."""
        found = self.mem.get(key, snap)
        if found is None:
            return self.get_below_memtable(key, snap)
        if found[1] == DELETE:
            return None
        return found[2]

    def get_below_memtable(self, key: bytes, snap: int):
        """``get`` for a key the (mutable) memtable has no version of at
        ``snap``: the immutable memtables, then the tables."""
        for mem in self._imm_mems:
            found = mem.get(key, snap)
            if found is not None:
                break
        else:
            found = _probe(key, snap, self._l0, self._deep)
            if found is None:
                return None
            if type(found) is NeedsIO:
                return found
        if found[1] == DELETE:
            return None
        return found[2]


class NeedsIO:
    """A lookup stopped at ``reader``, whose block for the key is not
    cached; ``l0`` and ``deep`` are the tables after it, laid out as
    SuperVersion's.  ``await finish()`` for the answer."""

    __slots__ = ("_key", "_snap", "_reader", "_l0", "_deep")

    def __init__(self, key: bytes, snap: int, reader, l0: tuple, deep: tuple):
        self._key = key
        self._snap = snap
        self._reader = reader
        self._l0 = l0
        self._deep = deep

    def __repr__(self) -> str:
        return f"<NeedsIO {self._reader.file_name}>"

    async def finish(self) -> bytes | None:
        """The value (None when absent or deleted).  Raises CorruptionError
        or HedgeIOError from a block read."""
        key = self._key
        snap = self._snap
        pending = self
        while True:
            found = await pending._reader.get_uncached(key, snap)
            if found is None:
                found = _probe(key, snap, pending._l0, pending._deep)
                if type(found) is NeedsIO:
                    pending = found
                    continue
            if found is None or found[1] == DELETE:
                return None
            return found[2]


def _probe(key: bytes, snap: int, l0: tuple, deep: tuple):
    """The first table answer ``(seq, kind, value)`` in probe order, None
    when no table holds a version of ``key`` at or below ``snap``, or a
    NeedsIO at the first table whose block is not cached."""
    for entry in l0:
        if entry[0] <= key <= entry[1]:
            found = entry[2].get_cached(key, snap)
            if found is not None:
                if found is NOT_CACHED:
                    return NeedsIO(key, snap, entry[2], l0[l0.index(entry) + 1:], deep)
                return found
    for level in deep:
        readers = level[1]
        i = bisect_left(level[0], key)
        if i < len(readers):
            found = readers[i].get_cached(key, snap)
            if found is not None:
                if found is NOT_CACHED:
                    return NeedsIO(key, snap, readers[i], (), deep[deep.index(level) + 1:])
                return found
    return None
