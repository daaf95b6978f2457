"""Leveled compaction policy: which tables to merge next, and the edit that
installs the result.  Pure functions of a Version and the Options; no I/O, no
state, callable from any thread.  docs/compaction.md explains the rules.

- Scores: L0 = number of L0 tables / l0_compaction_trigger; Ln (1 <= n <
  NUM_LEVELS - 1) = bytes in Ln / max_level_bytes(n), where max_level_bytes(n)
  = Options.level1_target * level_size_ratio ** (n - 1).  The last level has
  no score.
  The level with the highest score >= 1 is compacted (the smaller level
  number on a tie).
- An L0 task starts from the oldest L0 table and takes every L0 table that
  overlaps the growing key range until it stops growing (so no L0 table left
  behind overlaps the tables that leave), plus the L1 tables overlapping it.
- An Ln task takes one table: the first whose smallest key is above the
  level's compaction pointer (wrapping to the first table), plus the Ln+1
  tables overlapping it.
- When a task has one input table and nothing overlaps it in the next level,
  it is a trivial move: the table changes level, no data is rewritten --
  unless the table is small (below table_bytes / SMALL_TABLE_DIVISOR): then
  the small tables next to it in the next level (the one just before its
  range, the one just after) join the task as lower inputs, so that small
  tables (a flush at each reopen, an explicit flush) merge into bigger ones
  instead of piling up one per flush.
- A task is bottommost when no level below its output level overlaps its key
  range; only then may tombstones be dropped.
- Scans pay for L0: when scans have merged a version's L0 tables long
  enough (maintenance counts them, ``Options.l0_scan_compaction``), the
  caller passes ``l0_scans_due`` and L0 is compacted below its trigger
  (LevelDB's seek compaction, counted in scans: a short scan merges every
  L0 table it overlaps, a get rarely reads one past its bloom filter).

Manual range compactions (``db.compact(start, end)``, LevelDB's
CompactRange): ``range_last_level`` is the deepest level holding a table
that overlaps the range (at least 1), and ``pick_range(level)`` merges every
table of ``level`` overlapping the range (L0: closed under overlap, as for an
automatic L0 task) with the tables of ``level + 1`` overlapping them.  Run
for each level from 0 down to ``range_last_level - 1``, it leaves the
range's data in ``range_last_level``, tombstones dropped when nothing lies
below.

``pick`` assumes no other compaction is running (the engine runs one at a
time); running several needs key-range conflict checks this module lacks.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from enum import StrEnum
from typing import Sequence

from hedge.lsm.version import Version
from hedge.lsm.version_edit import NUM_LEVELS, FileMeta, VersionEdit
from hedge.options import Options

NO_POINTERS: tuple[bytes | None, ...] = (None,) * NUM_LEVELS
SMALL_TABLE_DIVISOR = 16    # a table under table_bytes / 16 is merged with small neighbours, not moved alone


class Stall(StrEnum):
    """What writers must do given the shape of L0 (compares equal to its string)."""

    NONE = "none"
    SLOWDOWN = "slowdown"
    STOP = "stop"


@dataclass(frozen=True)
class CompactionTask:
    """One compaction: merge ``upper`` (tables of ``level``) with ``lower`` (the
    tables of ``output_level`` overlapping them) into new tables of
    ``output_level``, each at most ``max_output_bytes`` (a target; a table may
    exceed it to keep one user key's versions together).

    ``bottommost``: no level below ``output_level`` overlaps the task's key
    range, so tombstones visible to the oldest snapshot may be dropped.
    ``trivial_move``: one upper table, no lower tables; the runner writes
    nothing and installs ``apply(version, task, [])``.
    """

    level: int
    output_level: int
    upper: tuple[FileMeta, ...]
    lower: tuple[FileMeta, ...]
    bottommost: bool
    trivial_move: bool
    max_output_bytes: int
    score: float

    def inputs(self) -> tuple[tuple[int, tuple[FileMeta, ...]], ...]:
        """(level, tables) for each input level."""
        return ((self.level, self.upper), (self.output_level, self.lower))

    @property
    def smallest_key(self) -> bytes:
        return min(m.smallest_key for m in self.upper + self.lower)

    @property
    def largest_key(self) -> bytes:
        return max(m.largest_key for m in self.upper + self.lower)

    @property
    def input_bytes(self) -> int:
        return sum(m.size for m in self.upper + self.lower)


def max_level_bytes(options: Options, level: int) -> int:
    """Target size of ``level``.  REQUIRES: 1 <= level < NUM_LEVELS."""
    if not 1 <= level < NUM_LEVELS:
        raise ValueError(f"level {level} has no byte target")
    return options.level1_target * options.level_size_ratio ** (level - 1)


def level_scores(version: Version, options: Options) -> tuple[float, ...]:
    """Scores of levels 0..NUM_LEVELS-2; >= 1 means the level needs compacting."""
    scores = [version.num_files(0) / options.l0_compaction_trigger]
    for level in range(1, NUM_LEVELS - 1):
        scores.append(version.level_bytes(level) / max_level_bytes(options, level))
    return tuple(scores)


def pick(version: Version, options: Options,
         compact_pointers: Sequence[bytes | None] = NO_POINTERS,
         l0_scans_due: bool = False) -> CompactionTask | None:
    """The next compaction, or None when every score is below 1 (and, with
    ``l0_scans_due``, L0 is empty).

    ``compact_pointers[n]`` is the largest key of the last task started at
    level n (VersionSetState.compact_pointers), None when there was none.
    ``l0_scans_due``: scans have paid for L0's tables (module docstring).
    """
    scores = level_scores(version, options)
    level = max(range(len(scores)), key=lambda n: (scores[n], -n))
    if scores[level] < 1:
        if not (l0_scans_due and version.levels[0]):
            return None
        level = 0
    if level == 0:
        upper = _l0_inputs(version)
    else:
        upper = (_next_in_round(version.levels[level], compact_pointers[level]),)
    output_level = level + 1
    lower = version.overlapping(output_level, min(m.smallest_key for m in upper),
                                max(m.largest_key for m in upper))
    small = options.table_bytes // SMALL_TABLE_DIVISOR
    if len(upper) == 1 and not lower and upper[0].size < small:
        lower = _small_neighbours(version.levels[output_level], upper[0], small)
    start = min(m.smallest_key for m in upper + lower)
    end = max(m.largest_key for m in upper + lower)
    bottommost = not any(version.overlapping(deeper, start, end)
                         for deeper in range(output_level + 1, NUM_LEVELS))
    return CompactionTask(level=level, output_level=output_level, upper=upper, lower=lower,
                          bottommost=bottommost, trivial_move=len(upper) == 1 and not lower,
                          max_output_bytes=options.table_bytes, score=scores[level])


def range_last_level(version: Version, start: bytes | None, end: bytes | None) -> int:
    """The level a manual compaction of [start, end] (inclusive; None:
    unbounded) brings the range's data down to: the deepest level with a
    table overlapping it, and at least 1."""
    deepest = 1
    for level in range(1, NUM_LEVELS):
        if version.overlapping(level, start, end):
            deepest = level
    return deepest


def pick_range(version: Version, options: Options, level: int, start: bytes | None,
               end: bytes | None) -> CompactionTask | None:
    """The manual compaction of the tables of ``level`` overlapping [start,
    end] (inclusive; None: unbounded) into ``level + 1``, or None when no
    table of ``level`` overlaps it.  L0's inputs are closed under overlap.
    A single input table with nothing under it moves down without a rewrite
    unless it holds tombstones (a manual compaction is how they are purged).
    REQUIRES: 0 <= level < NUM_LEVELS - 1; start <= end when both are given."""
    if not 0 <= level < NUM_LEVELS - 1:
        raise ValueError(f"a range compaction starts at L0..L{NUM_LEVELS - 2}, not L{level}")
    upper = version.overlapping(level, start, end)
    if not upper:
        return None
    if level == 0:
        upper = _l0_closure(version, upper)
    output_level = level + 1
    lower = version.overlapping(output_level, min(m.smallest_key for m in upper),
                                max(m.largest_key for m in upper))
    low = min(m.smallest_key for m in upper + lower)
    high = max(m.largest_key for m in upper + lower)
    bottommost = not any(version.overlapping(deeper, low, high) for deeper in range(output_level + 1, NUM_LEVELS))
    trivial = len(upper) == 1 and not lower and upper[0].deletes == 0
    return CompactionTask(level=level, output_level=output_level, upper=upper, lower=lower,
                          bottommost=bottommost, trivial_move=trivial, max_output_bytes=options.table_bytes,
                          score=0.0)


def _l0_inputs(version: Version) -> tuple[FileMeta, ...]:
    """The oldest L0 table and every L0 table overlapping the range, closed
    under overlap; newest first, as in L0."""
    return _l0_closure(version, version.levels[0][-1:])


def _l0_closure(version: Version, seed: tuple[FileMeta, ...]) -> tuple[FileMeta, ...]:
    """``seed`` (L0 tables) and every L0 table overlapping their key range,
    widening the range until it stops growing; newest first, as in L0."""
    l0 = version.levels[0]
    start = min(m.smallest_key for m in seed)
    end = max(m.largest_key for m in seed)
    chosen = {m.number for m in seed}
    grown = True
    while grown:
        grown = False
        for meta in l0:
            if meta.number not in chosen and meta.overlaps(start, end):
                chosen.add(meta.number)
                start = min(start, meta.smallest_key)
                end = max(end, meta.largest_key)
                grown = True
    return tuple(m for m in l0 if m.number in chosen)


def _small_neighbours(files: tuple[FileMeta, ...], meta: FileMeta, small: int) -> tuple[FileMeta, ...]:
    """The tables of a sorted run just before and just after ``meta``'s
    range (which overlaps none of them) that are smaller than ``small``, in
    the run's order."""
    i = bisect_left(files, meta.smallest_key, key=lambda m: m.smallest_key)
    return tuple(m for m in files[max(i - 1, 0):i + 1] if m.size < small)


def _next_in_round(files: tuple[FileMeta, ...], pointer: bytes | None) -> FileMeta:
    """The first table starting after ``pointer``, wrapping to the first."""
    if pointer is not None:
        for meta in files:
            if meta.smallest_key > pointer:
                return meta
    return files[0]


def apply(version: Version, task: CompactionTask, outputs: list[FileMeta]) -> VersionEdit:
    """The edit installing ``task``'s result: its inputs leave, ``outputs``
    (or, for a trivial move, the moved table) enter ``task.output_level``, and
    the compaction pointer of ``task.level`` (n >= 1) moves to the largest
    input key of that level.

    REQUIRES: every input of ``task`` is still in ``version``; ``outputs`` are
    sorted, non-overlapping and inside the task's key range; empty for a
    trivial move.  Raises ValueError otherwise.  The engine adds the
    bookkeeping numbers (next_file_number, ...) to the edit before logging it.
    """
    live = {m.number: level for level, m in version.files()}
    for level, files in task.inputs():
        for meta in files:
            if live.get(meta.number) != level:
                raise ValueError(f"input file {meta.number} is no longer in L{level}")
    edit = VersionEdit()
    for level, files in task.inputs():
        for meta in files:
            edit.delete_file(level, meta.number)
    if task.trivial_move:
        if outputs:
            raise ValueError("a trivial move has no output tables")
        edit.add_file(task.output_level, task.upper[0])
    else:
        start, end = task.smallest_key, task.largest_key
        for prev, cur in zip(outputs, outputs[1:]):
            if prev.largest_key >= cur.smallest_key:
                raise ValueError(f"outputs {prev.number} and {cur.number} overlap or are out of order")
        for meta in outputs:
            if meta.smallest_key < start or meta.largest_key > end:
                raise ValueError(f"output {meta.number} lies outside the task's key range")
            edit.add_file(task.output_level, meta)
    if task.level > 0:
        edit.set_compact_pointer(task.level, max(m.largest_key for m in task.upper))
    return edit


def write_stall(version: Version, options: Options) -> Stall:
    """STOP at l0_stop_trigger L0 tables, SLOWDOWN at l0_slowdown_trigger,
    NONE below."""
    count = version.num_files(0)
    if count >= options.l0_stop_trigger:
        return Stall.STOP
    if count >= options.l0_slowdown_trigger:
        return Stall.SLOWDOWN
    return Stall.NONE
