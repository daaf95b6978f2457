"""Named properties of an open database (``db.property(name)``) and the
approximate size of a key range (``db.approximate_size``).

Both read one super version (hedge/lsm/engine.py) and the engine's
counters: no I/O, no lock held across anything, callable from any thread.
Table sizes come from the version's FileMeta and the open tables' in-memory
indexes; memtable sizes are their ``approximate_bytes`` (key + value + a
fixed overhead per entry), not Python's memory.

The properties (docs/api.md lists them too):

    hedge.num-files-at-level<N>  tables in level N (0..6)
    hedge.bytes-at-level<N>      bytes of the tables in level N
    hedge.num-files              tables in all levels
    hedge.total-table-bytes      bytes of every table
    hedge.memtable-bytes         approximate bytes of the memtable and the
                                 immutable memtables awaiting flush
    hedge.num-immutable-memtables  memtables awaiting flush
    hedge.estimate-num-keys      entries of the tables and memtables minus
                                 their tombstones: every version of a key
                                 counts, so an overestimate until compaction
    hedge.last-sequence          the last sequence number published
    hedge.write-amplification    bytes written by flushes and compactions /
                                 bytes written to the WAL, since open
    hedge.space-amplification    bytes of every table / bytes of the deepest
                                 non-empty level (1.0 for one level, 0.0
                                 with no table)
"""
from __future__ import annotations

import re

from hedge.lsm.version_edit import NUM_LEVELS

PREFIX = "hedge."
_PER_LEVEL = re.compile(r"^hedge\.(num-files|bytes)-at-level(\d+)$")
PROPERTIES = (
    "hedge.num-files-at-level<N>", "hedge.bytes-at-level<N>", "hedge.num-files", "hedge.total-table-bytes",
    "hedge.memtable-bytes", "hedge.num-immutable-memtables", "hedge.estimate-num-keys", "hedge.last-sequence",
    "hedge.write-amplification", "hedge.space-amplification",
)


def get_property(engine, name: str) -> int | float:
    """The value of property ``name`` of ``engine``.  Raises TypeError for a
    name that is not a str, ValueError for an unknown name (or a level
    outside 0..NUM_LEVELS-1)."""
    if not isinstance(name, str):
        raise TypeError(f"a property name is a str, not {type(name).__name__}")
    sv = engine.super_version
    version = sv.version
    m = _PER_LEVEL.match(name)
    if m is not None:
        level = int(m.group(2))
        if not 0 <= level < NUM_LEVELS:
            raise ValueError(f"{name}: levels are 0..{NUM_LEVELS - 1}")
        return version.num_files(level) if m.group(1) == "num-files" else version.level_bytes(level)
    mems = (sv.mem, *(mem for mem, _ in sv.imms))
    if name == "hedge.num-files":
        return sum(version.num_files(level) for level in range(NUM_LEVELS))
    if name == "hedge.total-table-bytes":
        return sum(version.level_bytes(level) for level in range(NUM_LEVELS))
    if name == "hedge.memtable-bytes":
        return sum(mem.approximate_bytes() for mem in mems)
    if name == "hedge.num-immutable-memtables":
        return len(sv.imms)
    if name == "hedge.estimate-num-keys":
        tables = sum(meta.entries - meta.deletes for _level, meta in version.files())
        return max(tables + sum(len(mem) for mem in mems), 0)
    if name == "hedge.last-sequence":
        return engine.versions.last_seq
    if name == "hedge.write-amplification":
        return float(engine.stats()["compaction"]["write_amplification"])
    if name == "hedge.space-amplification":
        total = sum(version.level_bytes(level) for level in range(NUM_LEVELS))
        deepest = next((version.level_bytes(level) for level in reversed(range(NUM_LEVELS))
                        if version.num_files(level)), 0)
        return total / deepest if deepest else 0.0
    raise ValueError(f"unknown property {name!r}; the properties are: {', '.join(PROPERTIES)}")


def approximate_size(sv, start: bytes | None, end: bytes | None, include_memtables: bool = True) -> int:
    """Approximate bytes the keys in [start, end) (None: unbounded) take:
    for each table overlapping the range, the bytes of the blocks that may
    hold such keys (the whole file when the range covers the table), plus,
    with ``include_memtables``, each memtable's approximate bytes scaled by
    the share of its keys in the range.  Every version and tombstone
    counts."""
    version = sv.version
    tables = sv.tables
    total = 0
    for level in range(NUM_LEVELS):
        for meta in version.overlapping(level, start, end):
            if end is not None and meta.smallest_key >= end:
                continue                # overlapping() is inclusive of end
            total += tables[meta.number].approximate_bytes(start, end)
    if include_memtables:
        for mem in (sv.mem, *(mem for mem, _ in sv.imms)):
            total += mem.approximate_bytes_between(start, end)
    return total
