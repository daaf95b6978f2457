"""A plain model of multi-version entries: a sorted list and dicts.  The
memtable, merge and visible are checked against it."""
from __future__ import annotations

import random

from hedge.lsm.keys import Kind, entry_order


def random_entries(rng: random.Random, n: int, n_keys: int, delete_ratio: float = 0.25) -> list[tuple]:
    """``n`` entries with unique increasing seqs over ``n_keys`` short keys
    (so keys get many versions), in write order."""
    keys = sorted({rng.randbytes(rng.randint(1, 4)) for _ in range(n_keys)})
    out = []
    for seq in range(1, n + 1):
        key = rng.choice(keys)
        if rng.random() < delete_ratio:
            out.append((key, seq, Kind.DELETE, b""))
        else:
            out.append((key, seq, Kind.PUT, rng.randbytes(rng.randint(0, 8))))
    return out


def sorted_entries(entries, start=None, end=None) -> list[tuple]:
    """Entries in entry order with start <= key < end."""
    return sorted((e for e in entries
                   if (start is None or e[0] >= start) and (end is None or e[0] < end)), key=entry_order)


def lookup(entries, key: bytes, snapshot: int):
    """(seq, kind, value) of the newest version of key with seq <= snapshot."""
    best = None
    for e in entries:
        if e[0] == key and e[1] <= snapshot and (best is None or e[1] > best[0]):
            best = e[1:]
    return best


def visible_state(entries, snapshot: int, start=None, end=None) -> list[tuple[bytes, bytes]]:
    """Sorted (key, value) pairs a reader at snapshot sees."""
    newest: dict[bytes, tuple] = {}
    for key, seq, kind, value in entries:
        if seq <= snapshot and (key not in newest or seq > newest[key][0]):
            newest[key] = (seq, kind, value)
    return sorted((k, v[2]) for k, v in newest.items()
                  if v[1] == Kind.PUT and (start is None or k >= start) and (end is None or k < end))
