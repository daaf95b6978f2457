"""Which entries survive a compaction (and a flush: ``flush_entries``).

The input is one stream of entries ``(user_key, seq, kind, value)`` in entry
order (key ascending, seq descending; hedge.lsm.keys), already merged from the
input tables.  For each user key the output keeps:
  - every version with seq > oldest_snapshot_seq (a live snapshot or the
    latest state may still read it), and
  - the newest version with seq <= oldest_snapshot_seq (what the oldest
    snapshot reads); everything older is hidden from every reader and dropped.
When ``drop_tombstones`` is set (the task is bottommost: no deeper table can
hold an older version the tombstone hides) and that version visible at the
oldest snapshot is a tombstone, it is dropped too: every reader would see the
key as absent either way.

A pure generator; it runs on whatever thread drives the compaction.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from hedge.lsm.keys import Kind

Entry = tuple[bytes, int, Kind, bytes]


def compact_entries(entries: Iterable[Entry], drop_tombstones: bool,
                    oldest_snapshot_seq: int) -> Iterator[Entry]:
    """Yield the surviving entries, in entry order.

    ``oldest_snapshot_seq`` is the sequence number of the oldest live snapshot,
    or the last sequence number when there is none.  REQUIRES: ``entries`` in
    strict entry order (no two entries with the same key and seq); raises
    ValueError on the first entry out of order.
    """
    prev_key: bytes | None = None
    prev_seq = 0
    # True once this key's version visible at the oldest snapshot was seen.
    settled = False
    for entry in entries:
        key, seq, kind = entry[0], entry[1], entry[2]
        if key != prev_key:
            if prev_key is not None and key < prev_key:
                raise ValueError(f"entries out of order: key {key!r} after {prev_key!r}")
            prev_key = key
            settled = False
        elif seq >= prev_seq:
            raise ValueError(f"entries out of order: key {key!r} seq {seq} after seq {prev_seq}")
        prev_seq = seq
        if seq > oldest_snapshot_seq:
            yield entry
        elif not settled:
            settled = True
            if not (drop_tombstones and kind == Kind.DELETE):
                yield entry


def flush_entries(memtable, oldest_snapshot_seq: int | None = None) -> Iterator[Entry]:
    """The entries a table made of ``memtable`` holds: what a compaction
    would keep of them (``compact_entries``), tombstones always (a table
    below may hold what one hides).  Without ``oldest_snapshot_seq`` no
    snapshot can read the table (an open, a repair or a checkpoint makes
    it: no snapshot outlives a close), so the newest version of each key."""
    if oldest_snapshot_seq is None:
        oldest_snapshot_seq = memtable.max_seq
    return compact_entries(memtable.entries(), drop_tombstones=False, oldest_snapshot_seq=oldest_snapshot_seq)
