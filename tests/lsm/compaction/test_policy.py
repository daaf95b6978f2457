"""The leveled policy, one rule per test."""
from __future__ import annotations

import pytest

from hedge.lsm.compaction.policy import (NO_POINTERS, SMALL_TABLE_DIVISOR, Stall, apply, level_scores,
                                         max_level_bytes, pick, pick_range, range_last_level, write_stall)
from hedge.lsm.version import Version, apply as apply_edit
from hedge.lsm.version_edit import NUM_LEVELS
from hedge.options import Options
from tests.lsm.helpers import table

OPTS = Options(l0_compaction_trigger=4, l0_slowdown_trigger=6, l0_stop_trigger=8,
               level1_bytes=1000, level_size_ratio=10, table_bytes=300)


def version_of(*levels) -> Version:
    return Version(list(levels) + [()] * (NUM_LEVELS - len(levels)))


def l0_tables(*ranges: tuple[str, str], first: int = 100) -> tuple:
    """L0 tables, newest first: the last range given is the oldest."""
    count = len(ranges)
    return tuple(table(first + count - i, lo, hi, seqs=(10 * (count - i), 10 * (count - i) + 9))
                 for i, (lo, hi) in enumerate(ranges))


def test_max_level_bytes_grows_by_the_size_ratio():
    assert [max_level_bytes(OPTS, n) for n in (1, 2, 3)] == [1000, 10_000, 100_000]


def test_level1_defaults_to_twice_l0_at_its_trigger():
    opts = Options(memtable_bytes=1000, l0_compaction_trigger=3, l0_slowdown_trigger=3, l0_stop_trigger=3,
                   level_size_ratio=10)
    assert [max_level_bytes(opts, n) for n in (1, 2)] == [6000, 60_000]
    with pytest.raises(ValueError):
        max_level_bytes(OPTS, 0)


def test_no_task_below_the_l0_trigger():
    v = version_of(l0_tables(("a", "z"), ("a", "z"), ("a", "z")))
    assert level_scores(v, OPTS)[0] == 0.75
    assert pick(v, OPTS) is None


def test_scans_paid_for_l0_compact_it_below_the_trigger():
    l0 = l0_tables(("a", "c"), ("b", "e"))
    l1 = (table(1, "a", "b"), table(2, "x", "z"))
    v = version_of(l0, l1)
    assert pick(v, OPTS) is None
    task = pick(v, OPTS, NO_POINTERS, l0_scans_due=True)
    assert task.level == 0 and task.output_level == 1 and task.score == 0.5
    assert [m.smallest_key for m in task.upper] == [b"a", b"b"]
    assert [m.number for m in task.lower] == [1]
    assert not task.trivial_move


def test_scans_paid_for_an_empty_l0_leave_the_levels_alone():
    v = version_of((), (table(1, "a", "b"),))
    assert pick(v, OPTS, NO_POINTERS, l0_scans_due=True) is None


def test_a_level_over_its_target_goes_before_the_l0_scans_paid_for():
    l0 = l0_tables(("a", "c"))
    l1 = (table(1, "a", "b", size=2000),)
    task = pick(version_of(l0, l1), OPTS, NO_POINTERS, l0_scans_due=True)
    assert task.level == 1


def test_l0_trigger_takes_overlapping_l0_and_l1_tables():
    l0 = l0_tables(("a", "c"), ("b", "e"), ("x", "z"), ("d", "f"))
    l1 = (table(1, "a", "a"), table(2, "e", "g"), table(3, "h", "w"), table(4, "y", "z"))
    task = pick(version_of(l0, l1), OPTS)
    assert task.level == 0 and task.output_level == 1 and task.score == 1.0
    # The oldest ("d".."f") grows to "b".."f", then "a".."f"; "x".."z" stays.
    assert [m.smallest_key for m in task.upper] == [b"a", b"b", b"d"]
    assert [m.number for m in task.lower] == [1, 2]
    assert not task.trivial_move and task.max_output_bytes == 300


def test_level_score_picks_the_level_most_over_its_target():
    l1 = (table(1, "a", "c", size=600), table(2, "d", "f", size=600))      # 1.2
    l2 = (table(3, "a", "m", size=7000), table(4, "n", "z", size=7000))    # 1.4
    task = pick(version_of((), l1, l2), OPTS)
    assert task.level == 2 and task.output_level == 3 and task.score == pytest.approx(1.4)
    assert task.upper == (l2[0],)


def test_levels_under_their_target_are_left_alone():
    l1 = (table(1, "a", "c", size=999),)
    assert pick(version_of((), l1), OPTS) is None


def test_round_robin_pointer_walks_the_level_and_wraps():
    l1 = tuple(table(n, k, k, size=400) for n, k in ((1, "b"), (2, "d"), (3, "f")))
    l2 = (table(9, "a", "z"),)
    v = version_of((), l1, l2)
    pointers = list(NO_POINTERS)
    picked = []
    for _ in range(4):
        task = pick(v, OPTS, pointers)
        picked.append(task.upper[0].number)
        pointers[1] = apply(v, task, [] if task.trivial_move else [table(50, "a", "z")]).compact_pointers[1]
    assert picked == [1, 2, 3, 1]


def test_bottommost_only_when_no_deeper_level_overlaps():
    l1 = (table(1, "c", "f", size=2000),)
    l2 = (table(2, "a", "d"),)
    deeper_elsewhere = version_of((), l1, l2, (table(3, "x", "z"),))
    deeper_overlapping = version_of((), l1, l2, (), (), (table(4, "e", "e"),))
    assert pick(deeper_elsewhere, OPTS).bottommost
    assert not pick(deeper_overlapping, OPTS).bottommost


def test_bottommost_checks_the_range_of_lower_inputs_too():
    l1 = (table(1, "c", "f", size=2000),)
    l2 = (table(2, "a", "d"),)
    # "b" lies outside the L1 table but inside the L2 input it pulls in.
    v = version_of((), l1, l2, (table(3, "b", "b"),))
    assert not pick(v, OPTS).bottommost


def test_single_table_without_overlap_is_a_trivial_move():
    l1 = (table(1, "a", "c", size=2000),)
    l2 = (table(2, "d", "f"),)
    v = version_of((), l1, l2)
    task = pick(v, OPTS)
    assert task.trivial_move and task.lower == ()
    after = apply_edit(v, apply(v, task, []))
    assert [m.number for m in after.levels[2]] == [1, 2] and after.levels[1] == ()


def test_l0_table_disjoint_from_everything_moves_trivially():
    l0 = l0_tables(("a", "b"), ("c", "d"), ("e", "f"), ("g", "h"))
    task = pick(version_of(l0, (table(1, "i", "j"),)), OPTS)
    assert task.trivial_move and task.upper == (l0[-1],)


def test_a_small_table_merges_with_the_small_tables_next_to_it_instead_of_moving():
    """A small table (under table_bytes / SMALL_TABLE_DIVISOR) that would move
    down alone takes the small tables just before and after its range along:
    small flushes merge instead of piling up one table each."""
    small = OPTS.table_bytes // SMALL_TABLE_DIVISOR - 1
    l0 = (table(100, "m", "n", size=small),)
    l1 = (table(1, "a", "c", size=small), table(2, "p", "q", size=small), table(3, "x", "z", size=small))
    v = version_of(l0, l1)
    task = pick(v, OPTS.replace(l0_compaction_trigger=1, l0_slowdown_trigger=6))
    assert not task.trivial_move and task.upper == l0 and task.lower == l1[:2]
    after = apply_edit(v, apply(v, task, [table(50, "a", "q", size=3 * small)]))
    assert [m.number for m in after.levels[1]] == [50, 3]


def test_a_small_table_next_to_big_tables_or_a_big_table_still_moves_trivially():
    opts = OPTS.replace(l0_compaction_trigger=1, l0_slowdown_trigger=6)
    small = OPTS.table_bytes // SMALL_TABLE_DIVISOR
    big_neighbours = version_of((table(100, "m", "n", size=small - 1),),
                                (table(1, "a", "c", size=small), table(2, "p", "q", size=small)))
    big_table = version_of((table(100, "m", "n", size=small),),
                           (table(1, "a", "c", size=1), table(2, "p", "q", size=1)))
    for v in (big_neighbours, big_table):
        task = pick(v, opts)
        assert task.trivial_move and task.lower == ()


def test_trivial_move_with_outputs_is_refused():
    v = version_of((), (table(1, "a", "c", size=2000),))
    with pytest.raises(ValueError, match="trivial move"):
        apply(v, pick(v, OPTS), [table(5, "a", "c")])


def test_apply_replaces_inputs_by_outputs_and_sets_the_pointer():
    l1 = (table(1, "c", "f", size=2000), table(5, "k", "m", size=10))
    l2 = (table(2, "a", "d"), table(3, "e", "g"), table(4, "h", "z"))
    v = version_of((), l1, l2)
    task = pick(v, OPTS)
    edit = apply(v, task, [table(10, "a", "c"), table(11, "d", "g")])
    assert edit.deleted_files == {(1, 1), (2, 2), (2, 3)}
    assert edit.compact_pointers == {1: b"f"}
    after = apply_edit(v, edit)
    assert [m.number for m in after.levels[2]] == [10, 11, 4]
    assert [m.number for m in after.levels[1]] == [5]


def test_apply_refuses_outputs_outside_the_task_range():
    l1 = (table(1, "c", "f", size=2000),)
    l2 = (table(2, "a", "d"),)
    v = version_of((), l1, l2)
    with pytest.raises(ValueError, match="outside"):
        apply(v, pick(v, OPTS), [table(10, "a", "h")])


def test_apply_refuses_overlapping_outputs():
    v = version_of((), (table(1, "c", "f", size=2000),), (table(2, "a", "d"),))
    with pytest.raises(ValueError, match="overlap"):
        apply(v, pick(v, OPTS), [table(10, "a", "d"), table(11, "d", "f")])


def test_apply_refuses_a_stale_task():
    v = version_of((), (table(1, "c", "f", size=2000),), (table(2, "a", "d"),))
    task = pick(v, OPTS)
    changed = version_of((), (table(1, "c", "f", size=2000),), (table(3, "a", "d"),))
    with pytest.raises(ValueError, match="no longer"):
        apply(changed, task, [table(10, "a", "f")])


def test_write_stall_follows_the_l0_count():
    def stall(count: int) -> Stall:
        return write_stall(version_of(l0_tables(*[("a", "z")] * count)), OPTS)
    assert [stall(n) for n in (0, 5, 6, 7, 8, 20)] == [
        Stall.NONE, Stall.NONE, Stall.SLOWDOWN, Stall.SLOWDOWN, Stall.STOP, Stall.STOP]
    assert stall(6) == "slowdown"


# -- manual range compactions ----------------------------------------------------------
def test_range_last_level_is_the_deepest_level_overlapping_the_range_and_at_least_1():
    v = version_of(l0_tables(("a", "c")), (table(1, "a", "b"),), (), (table(2, "m", "p"),))
    assert range_last_level(v, b"a", b"c") == 1
    assert range_last_level(v, b"a", b"n") == 3
    assert range_last_level(v, None, None) == 3
    assert range_last_level(v, b"q", None) == 1             # nothing there: L0 -> L1 would be the move
    assert range_last_level(version_of(l0_tables(("a", "c"))), None, None) == 1


def test_pick_range_takes_only_the_tables_overlapping_the_range():
    l1 = (table(1, "a", "c"), table(2, "d", "f"), table(3, "g", "i"), table(4, "j", "l"))
    l2 = (table(5, "a", "e"), table(6, "f", "h", deletes=1), table(7, "x", "z"))
    v = version_of((), l1, l2)
    task = pick_range(v, OPTS, 1, b"e", b"g")
    assert [m.number for m in task.upper] == [2, 3]
    assert [m.number for m in task.lower] == [5, 6]        # under d..i
    assert task.level == 1 and task.output_level == 2 and task.bottommost and not task.trivial_move
    assert pick_range(v, OPTS, 1, b"m", b"w") is None
    assert pick_range(v, OPTS, 0, None, None) is None


def test_pick_range_closes_l0_inputs_under_overlap():
    l0 = l0_tables(("a", "c"), ("b", "e"), ("x", "z"), ("d", "f"))
    v = version_of(l0, (table(1, "f", "g"), table(2, "y", "z")))
    task = pick_range(v, OPTS, 0, b"a", b"a")
    # a..c grows through b..e and d..f; x..z stays in L0.
    assert sorted(m.smallest_key for m in task.upper) == [b"a", b"b", b"d"]
    assert [m.number for m in task.lower] == [1]


def test_pick_range_moves_a_lone_table_unless_it_holds_tombstones():
    v = version_of((), (table(1, "a", "c"), table(2, "m", "p", deletes=3)), (table(3, "x", "z"),))
    assert pick_range(v, OPTS, 1, b"a", b"b").trivial_move
    task = pick_range(v, OPTS, 1, b"n", b"n")
    assert not task.trivial_move and task.upper == (v.levels[1][1],) and task.lower == ()
    assert task.bottommost
    assert apply(v, task, []).deleted_files == {(1, 2)}    # the merge drops it; its output (none) enters L2


def test_pick_range_is_not_bottommost_with_data_below():
    v = version_of((), (table(1, "a", "c"),), (), (table(2, "b", "b"),))
    assert not pick_range(v, OPTS, 1, None, None).bottommost
    with pytest.raises(ValueError):
        pick_range(v, OPTS, NUM_LEVELS - 1, None, None)
