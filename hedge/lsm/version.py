"""Versions: immutable snapshots of the set of live tables, and how edits change them.

A ``Version`` is NUM_LEVELS tuples of ``FileMeta``:
  - L0 holds tables flushed from memtables; their key ranges may overlap.  They
    are ordered newest first (by largest_seq, then file number, descending),
    which is the order a point lookup must probe them in.
  - L1..L6 are each one sorted run: tables ordered by smallest_key with
    strictly disjoint user-key ranges (a table's largest_key is below the next
    table's smallest_key), so one user key lives in at most one table per
    level.  Compaction output must therefore never split the versions of one
    user key across two tables.
  - For a given user key, every version in level n is newer than every
    version in level n + 1, and within L0 a newer table holds newer versions.
  - No file number appears twice in a version.

A Version is never modified: readers hold one while they read, and a flush or
compaction installs a new one built with ``apply`` / ``VersionBuilder``.  It
may be read from any thread.  ``VersionBuilder`` and the ``fold`` of
``VersionSetState`` belong to the thread that runs recovery or installs edits.

``VersionSetState`` is what the manifest describes: the version plus the WAL
number, next file number, last sequence and compaction pointers.
``VersionSetState.fold`` replays a manifest's edits on open;
``snapshot_edit`` writes a whole state as the first edit of a new manifest.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Iterable, Iterator

from sortedcontainers import SortedKeyList

from hedge.errors import CorruptionError
from hedge.lsm.version_edit import NUM_LEVELS, FileMeta, VersionEdit


def _l0_order(meta: FileMeta) -> tuple[int, int]:
    """Sort key of L0, newest first when sorted in reverse."""
    return (meta.largest_seq, meta.number)


class Version:
    """An immutable snapshot of the live tables (see the module docstring for
    the invariants, which the constructor checks: ValueError otherwise)."""

    __slots__ = ("levels", "_starts", "_level_bytes", "entries", "_deep")

    def __init__(self, levels: Iterable[Iterable[FileMeta]] = ()):
        levels = tuple(tuple(files) for files in levels)
        if not levels:
            levels = ((),) * NUM_LEVELS
        if len(levels) != NUM_LEVELS:
            raise ValueError(f"a version has {NUM_LEVELS} levels, not {len(levels)}")
        numbers: set[int] = set()
        for level, files in enumerate(levels):
            for meta in files:
                if meta.number in numbers:
                    raise ValueError(f"file {meta.number} appears twice")
                numbers.add(meta.number)
            for prev, cur in zip(files, files[1:]):
                if level == 0:
                    if _l0_order(prev) <= _l0_order(cur):
                        raise ValueError(f"L0 not newest first at file {cur.number}")
                elif prev.largest_key >= cur.smallest_key:
                    raise ValueError(f"L{level} files {prev.number} and {cur.number} "
                                     "overlap or are out of order")
        self.levels: tuple[tuple[FileMeta, ...], ...] = levels
        self._starts = tuple([m.smallest_key for m in files] for files in levels)
        self._level_bytes = tuple(sum(m.size for m in files) for files in levels)
        # Entries of every table (a scan sizes its reads by them).
        self.entries: int = sum(m.entries for files in levels for m in files)
        # The non-empty levels below L0, for point lookups: the largest key
        # of each table, for bisect_left.
        self._deep = tuple((level, [m.largest_key for m in levels[level]], levels[level])
                           for level in range(1, NUM_LEVELS) if levels[level])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.levels == other.levels

    def __hash__(self) -> int:
        return hash(self.levels)

    def __repr__(self) -> str:
        parts = [f"L{n}={[m.number for m in files]}" for n, files in enumerate(self.levels) if files]
        return f"Version({', '.join(parts)})"

    def num_files(self, level: int) -> int:
        return len(self.levels[level])

    def level_bytes(self, level: int) -> int:
        return self._level_bytes[level]

    def all_file_numbers(self) -> frozenset[int]:
        return frozenset(m.number for files in self.levels for m in files)

    def files(self) -> Iterator[tuple[int, FileMeta]]:
        """Every (level, table), level by level in level order."""
        for level, files in enumerate(self.levels):
            for meta in files:
                yield level, meta

    def files_for_key(self, key: bytes) -> list[tuple[int, FileMeta]]:
        """The (level, table) pairs whose range holds ``key``, in the order a
        point lookup must probe them: L0 newest to oldest, then at most one
        table per deeper level.  The first table holding any version of the
        key visible to the reader answers the lookup."""
        found = [(0, m) for m in self.levels[0] if m.smallest_key <= key <= m.largest_key]
        for level, largest_keys, files in self._deep:
            i = bisect_left(largest_keys, key)
            if i < len(files) and files[i].smallest_key <= key:
                found.append((level, files[i]))
        return found

    def point_levels(self) -> tuple[tuple[int, list[bytes], tuple[FileMeta, ...]], ...]:
        """Per non-empty level below L0, in level order: ``(level, largest
        keys, tables)``, the largest key of each table in the level's order.
        The one table of the level that may hold a key is the first whose
        largest key is >= it (``bisect_left``), if its smallest key is <= it.
        Precomputed: the caller must not modify the lists."""
        return self._deep

    def overlapping(self, level: int, start: bytes | None, end: bytes | None) -> tuple[FileMeta, ...]:
        """Tables of ``level`` whose range meets [start, end] (inclusive; None
        is unbounded), in the level's order."""
        files = self.levels[level]
        if level == 0:
            return tuple(m for m in files if m.overlaps(start, end))
        lo = 0
        if start is not None:
            # The first table that may reach start: the one starting at or
            # before it, unless it ends before start.
            lo = max(bisect_right(self._starts[level], start) - 1, 0)
            if lo < len(files) and files[lo].largest_key < start:
                lo += 1
        hi = len(files) if end is None else bisect_right(self._starts[level], end)
        return files[lo:hi]


class VersionBuilder:
    """Applies a run of edits to a base version and builds the result once.

    Used by ``apply`` (one edit) and by recovery (a whole manifest).  After a
    CorruptionError the builder is in an unspecified state and must be
    dropped.  Single-threaded.
    """

    def __init__(self, base: Version):
        self._l0: dict[int, FileMeta] = {m.number: m for m in base.levels[0]}
        self._runs = [SortedKeyList(files, key=lambda m: m.smallest_key) for files in base.levels[1:]]
        self._live: dict[int, tuple[int, FileMeta]] = {m.number: (level, m) for level, m in base.files()}

    def apply(self, edit: VersionEdit, file: str | None = None, offset: int | None = None) -> None:
        """Apply ``edit``: deletions first, then additions.

        Raises CorruptionError (with ``file``/``offset`` for the location) when
        the edit deletes a table not present at that level, adds a file number
        already live, adds a table overlapping another one in L1+, or names a
        level outside 0..NUM_LEVELS-1.
        """
        for level in {lvl for lvl, _ in edit.deleted_files} | {lvl for lvl, _ in edit.added_files}:
            if not 0 <= level < NUM_LEVELS:
                raise CorruptionError(file, offset, f"edit names level {level}")
        for level, number in sorted(edit.deleted_files):
            live = self._live.get(number)
            if live is None or live[0] != level:
                raise CorruptionError(file, offset, f"edit deletes file {number} from L{level}, "
                                                    "where it is not present")
            del self._live[number]
            if level == 0:
                del self._l0[number]
            else:
                self._runs[level - 1].remove(live[1])
        for level, meta in edit.added_files:
            if meta.number in self._live:
                raise CorruptionError(file, offset, f"edit adds file {meta.number} to L{level}, "
                                                    f"but it is live in L{self._live[meta.number][0]}")
            if level == 0:
                self._l0[meta.number] = meta
            else:
                run = self._runs[level - 1]
                i = run.bisect_key_left(meta.smallest_key)
                for j in (i - 1, i):
                    if 0 <= j < len(run) and run[j].overlaps(meta.smallest_key, meta.largest_key):
                        raise CorruptionError(file, offset, f"edit adds file {meta.number} to L{level} "
                                                            f"overlapping file {run[j].number}")
                run.add(meta)
            self._live[meta.number] = (level, meta)

    def build(self) -> Version:
        l0 = tuple(sorted(self._l0.values(), key=_l0_order, reverse=True))
        return Version((l0, *(tuple(run) for run in self._runs)))


def apply(version: Version, edit: VersionEdit) -> Version:
    """The version after ``edit``.  Raises CorruptionError as VersionBuilder.apply."""
    builder = VersionBuilder(version)
    builder.apply(edit)
    return builder.build()


@dataclass(frozen=True)
class VersionSetState:
    """Everything the manifest records: the version and the bookkeeping numbers.

    ``compact_pointers`` has one entry per level (None: no compaction started
    there yet).  After ``fold``, ``next_file_number`` is above every file
    number the edits mentioned.
    """

    version: Version
    wal_number: int = 0
    next_file_number: int = 1
    last_seq: int = 0
    compact_pointers: tuple[bytes | None, ...] = (None,) * NUM_LEVELS

    @classmethod
    def fold(cls, edits: Iterable[VersionEdit], base: "VersionSetState | None" = None,
             file: str | None = None) -> "VersionSetState":
        """The state after applying ``edits`` in order to ``base``.

        With no base (recovering a manifest from its start), the edits must
        together set wal_number, next_file_number and last_seq; the first
        record of a manifest, a snapshot edit, sets all three.  Scalars take
        the last value given.  next_file_number is raised above any file
        number an edit mentions.  Raises CorruptionError for an edit the
        version rejects (the detail names the edit's index) or for a missing
        scalar.
        """
        start = base if base is not None else cls(Version())
        builder = VersionBuilder(start.version)
        scalars = {"wal_number": start.wal_number, "next_file_number": start.next_file_number,
                   "last_seq": start.last_seq}
        seen: set[str] = set(scalars) if base is not None else set()
        pointers = list(start.compact_pointers)
        max_number = 0
        for index, edit in enumerate(edits):
            try:
                builder.apply(edit, file)
            except CorruptionError as exc:
                raise CorruptionError(file, None, f"manifest edit #{index}: {exc.detail}") from None
            for name in scalars:
                value = getattr(edit, name)
                if value is not None:
                    scalars[name] = value
                    seen.add(name)
            for level, key in edit.compact_pointers.items():
                pointers[level] = key
            for _, meta in edit.added_files:
                max_number = max(max_number, meta.number)
            for _, number in edit.deleted_files:
                max_number = max(max_number, number)
        missing = sorted(set(scalars) - seen)
        if missing:
            raise CorruptionError(file, None, f"manifest never sets {', '.join(missing)}")
        scalars["next_file_number"] = max(scalars["next_file_number"], max_number + 1)
        return cls(builder.build(), compact_pointers=tuple(pointers), **scalars)

    def apply(self, edit: VersionEdit) -> "VersionSetState":
        """The state after one more edit (see ``fold``)."""
        return VersionSetState.fold((edit,), base=self)


def snapshot_edit(state: VersionSetState) -> VersionEdit:
    """One edit describing the whole of ``state``: the first record of a new
    manifest.  Folding it from nothing gives back ``state``."""
    edit = VersionEdit(wal_number=state.wal_number, next_file_number=state.next_file_number,
                       last_seq=state.last_seq)
    for level, key in enumerate(state.compact_pointers):
        if key is not None:
            edit.set_compact_pointer(level, key)
    for level, meta in state.version.files():
        edit.add_file(level, meta)
    return edit
