"""Version invariants, lookups, apply(), and the manifest fold."""
from __future__ import annotations

import random

import pytest

from hedge.errors import CorruptionError
from hedge.lsm.version import Version, VersionBuilder, VersionSetState, apply, snapshot_edit
from hedge.lsm.version_edit import NUM_LEVELS, VersionEdit
from tests.lsm.helpers import table


def version_of(*levels) -> Version:
    padded = list(levels) + [()] * (NUM_LEVELS - len(levels))
    return Version(padded)


def test_empty_version_has_seven_empty_levels():
    v = Version()
    assert len(v.levels) == NUM_LEVELS
    assert all(v.num_files(n) == 0 and v.level_bytes(n) == 0 for n in range(NUM_LEVELS))
    assert v.all_file_numbers() == frozenset()


def test_constructor_rejects_overlapping_l1():
    with pytest.raises(ValueError, match="overlap"):
        version_of((), (table(1, "a", "c"), table(2, "c", "e")))


def test_constructor_rejects_l0_oldest_first():
    with pytest.raises(ValueError, match="newest first"):
        version_of((table(1, "a", "c"), table(2, "a", "c")))


def test_constructor_rejects_duplicate_file_number():
    with pytest.raises(ValueError, match="twice"):
        version_of((table(3, "a", "c"),), (table(3, "x", "y"),))


def test_files_for_key_probes_l0_newest_first_then_one_table_per_level():
    l0 = (table(12, "a", "m"), table(11, "n", "z"), table(10, "c", "f"))
    l1 = (table(5, "a", "b"), table(6, "d", "e"), table(7, "g", "k"))
    l2 = (table(3, "a", "d"), table(4, "e", "z"))
    l4 = (table(1, "a", "z"),)
    v = version_of(l0, l1, l2, (), l4)
    assert [(lvl, m.number) for lvl, m in v.files_for_key(b"d")] == [(0, 12), (0, 10), (1, 6), (2, 3), (4, 1)]
    assert [(lvl, m.number) for lvl, m in v.files_for_key(b"f")] == [(0, 12), (0, 10), (2, 4), (4, 1)]
    assert [(lvl, m.number) for lvl, m in v.files_for_key(b"zz")] == []


def test_files_for_key_at_table_boundaries():
    v = version_of((), (table(1, "b", "d"), table(2, "f", "h")))
    assert [m.number for _, m in v.files_for_key(b"a")] == []
    assert [m.number for _, m in v.files_for_key(b"b")] == [1]
    assert [m.number for _, m in v.files_for_key(b"d")] == [1]
    assert [m.number for _, m in v.files_for_key(b"e")] == []
    assert [m.number for _, m in v.files_for_key(b"h")] == [2]
    assert [m.number for _, m in v.files_for_key(b"i")] == []


def test_overlapping_matches_a_scan_of_the_level():
    rng = random.Random(7)
    for _ in range(200):
        bounds = sorted(rng.sample(range(100), 2 * rng.randint(0, 10)))
        files = tuple(table(i + 1, b"%03d" % bounds[2 * i], b"%03d" % bounds[2 * i + 1])
                      for i in range(len(bounds) // 2))
        v = version_of((), (), files)
        for _ in range(10):
            lo, hi = sorted(rng.sample(range(-5, 106), 2))
            start = None if rng.random() < 0.1 else b"%03d" % lo if lo >= 0 else b"-"
            end = None if rng.random() < 0.1 else b"%03d" % hi
            expected = tuple(m for m in files if m.overlaps(start, end))
            assert v.overlapping(2, start, end) == expected


def test_level_bytes_and_all_file_numbers():
    v = version_of((table(9, "a", "b", size=5),), (table(2, "a", "b", size=7), table(3, "c", "d", size=11)))
    assert v.level_bytes(0) == 5 and v.level_bytes(1) == 18 and v.num_files(1) == 2
    assert v.all_file_numbers() == {9, 2, 3}


def test_apply_adds_deletes_and_orders_l0_newest_first():
    v = version_of((table(4, "a", "z", seqs=(10, 19)),), (table(2, "a", "c"),))
    edit = VersionEdit()
    edit.add_file(0, table(6, "a", "z", seqs=(20, 29)))
    edit.add_file(0, table(5, "b", "y", seqs=(1, 9)))
    edit.delete_file(1, 2)
    edit.add_file(1, table(3, "d", "e"))
    edit.add_file(1, table(7, "a", "b"))
    result = apply(v, edit)
    assert [m.number for m in result.levels[0]] == [6, 4, 5]
    assert [m.number for m in result.levels[1]] == [7, 3]
    assert v.levels[1][0].number == 2, "the base version must not change"


def test_apply_moves_a_table_between_levels_in_one_edit():
    moved = table(2, "a", "c")
    v = version_of((), (moved,))
    edit = VersionEdit()
    edit.delete_file(1, 2)
    edit.add_file(2, moved)
    assert apply(v, edit).levels[2] == (moved,) and apply(v, edit).levels[1] == ()


def test_apply_rejects_deleting_a_missing_file():
    edit = VersionEdit()
    edit.delete_file(1, 42)
    with pytest.raises(CorruptionError, match="deletes file 42"):
        apply(version_of((), (table(2, "a", "c"),)), edit)


def test_apply_rejects_deleting_a_file_from_the_wrong_level():
    edit = VersionEdit()
    edit.delete_file(2, 2)
    with pytest.raises(CorruptionError, match="deletes file 2 from L2"):
        apply(version_of((), (table(2, "a", "c"),)), edit)


def test_apply_rejects_a_table_overlapping_its_level():
    edit = VersionEdit()
    edit.add_file(1, table(3, "c", "d"))
    with pytest.raises(CorruptionError, match="overlapping file 2"):
        apply(version_of((), (table(2, "a", "c"),)), edit)


def test_apply_rejects_two_overlapping_tables_in_one_edit():
    edit = VersionEdit()
    edit.add_file(3, table(3, "m", "p"))
    edit.add_file(3, table(4, "a", "m"))
    with pytest.raises(CorruptionError, match="overlapping file 3"):
        apply(Version(), edit)


def test_apply_rejects_adding_a_live_file_number():
    edit = VersionEdit()
    edit.add_file(0, table(2, "x", "y"))
    with pytest.raises(CorruptionError, match="live in L1"):
        apply(version_of((), (table(2, "a", "c"),)), edit)


def random_state_and_edits(rng: random.Random, steps: int) -> list[VersionEdit]:
    """A plausible manifest: a snapshot-ish first edit, then flushes and moves."""
    edits = [VersionEdit(wal_number=1, next_file_number=1, last_seq=0)]
    version = Version()
    number = 1
    for step in range(steps):
        edit = VersionEdit(last_seq=step * 10 + 9, wal_number=step + 1)
        if version.num_files(0) and rng.random() < 0.4:
            meta = version.levels[0][-1]
            target = rng.randrange(1, NUM_LEVELS)
            if not version.overlapping(target, meta.smallest_key, meta.largest_key):
                edit.delete_file(0, meta.number)
                edit.add_file(target, meta)
                edit.set_compact_pointer(target, meta.largest_key)
        lo, hi = sorted(rng.sample(range(1000), 2))
        edit.add_file(0, table(number, b"%04d" % lo, b"%04d" % hi, seqs=(step * 10, step * 10 + 9)))
        number += 1
        edit.next_file_number = number
        version = apply(version, edit)
        edits.append(edit)
    return edits


def test_fold_equals_applying_edits_one_by_one():
    rng = random.Random(3)
    edits = random_state_and_edits(rng, 60)
    folded = VersionSetState.fold(edits)
    stepwise = VersionSetState.fold(edits[:1])
    for edit in edits[1:]:
        stepwise = stepwise.apply(edit)
    assert folded == stepwise
    assert folded.last_seq == 599 and folded.wal_number == 60 and folded.next_file_number == 61


def test_snapshot_edit_round_trips_through_encoding_and_fold():
    state = VersionSetState.fold(random_state_and_edits(random.Random(5), 40))
    assert any(p is not None for p in state.compact_pointers)
    edit = VersionEdit.decode(snapshot_edit(state).encode())
    assert VersionSetState.fold([edit]) == state


def test_fold_raises_next_file_number_above_every_file_seen():
    edit = VersionEdit(wal_number=1, next_file_number=3, last_seq=0)
    edit.add_file(1, table(10, "a", "b"))
    assert VersionSetState.fold([edit]).next_file_number == 11


def test_fold_rejects_a_manifest_that_never_sets_last_seq():
    with pytest.raises(CorruptionError, match="never sets last_seq"):
        VersionSetState.fold([VersionEdit(wal_number=1, next_file_number=2)], file="MANIFEST-000001")


def test_fold_names_the_bad_edit():
    first = VersionEdit(wal_number=1, next_file_number=2, last_seq=0)
    bad = VersionEdit()
    bad.delete_file(0, 77)
    with pytest.raises(CorruptionError, match="edit #1: edit deletes file 77") as info:
        VersionSetState.fold([first, bad], file="MANIFEST-000009")
    assert info.value.file == "MANIFEST-000009"


def test_builder_accumulates_edits_before_building():
    builder = VersionBuilder(Version())
    first = VersionEdit()
    first.add_file(2, table(1, "a", "b"))
    second = VersionEdit()
    second.delete_file(2, 1)
    second.add_file(3, table(1, "a", "b"))
    builder.apply(first)
    builder.apply(second)
    assert [m.number for m in builder.build().levels[3]] == [1]


def test_apply_rejects_a_level_out_of_range():
    edit = VersionEdit(added_files=[(NUM_LEVELS, table(1, "a", "b"))])
    with pytest.raises(CorruptionError, match="level 7"):
        apply(Version(), edit)
