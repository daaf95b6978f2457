"""Options.validate: every option checked for type and range, each error
naming the option; table-driven (issue 10, finding 7)."""
from __future__ import annotations

import dataclasses

import pytest

import hedge
from hedge.options import RANGES, Options

# (option, value, exception): wrong types are TypeError, bad values ValueError.
BAD = [
    ("bloom_bits_per_key", -1, ValueError),
    ("bloom_bits_per_key", 0, ValueError),
    ("bloom_bits_per_key", 1.5, TypeError),
    ("bloom_bits_per_key", "10", TypeError),
    ("bloom_bits_per_key", 10**6, ValueError),
    ("bloom_bits_per_key", True, TypeError),
    ("block_bytes", 2**40, ValueError),
    ("block_bytes", 0, ValueError),
    ("memtable_bytes", "8M", TypeError),
    ("memtable_bytes", 8.0 * 2**20, TypeError),
    ("memtable_bytes", 0, ValueError),
    ("memtable_bytes", None, TypeError),
    ("block_cache_bytes", -1, ValueError),
    ("block_cache_bytes", 2**41, ValueError),
    ("table_bytes", 0, ValueError),
    ("level1_bytes", -5, ValueError),
    ("level1_bytes", 0, ValueError),
    ("level1_bytes", "256M", TypeError),
    ("level_size_ratio", 1, ValueError),
    ("level_size_ratio", 2.5, TypeError),
    ("l0_compaction_trigger", 0, ValueError),
    ("l0_compaction_trigger", -1, ValueError),
    ("l0_stop_trigger", "12", TypeError),
    ("ring_entries", 2, ValueError),
    ("ring_entries", 1 << 20, ValueError),
    ("ring_submit_min", -1, ValueError),
    ("foreground_threads", 0, ValueError),
    ("foreground_threads", 2.0, TypeError),
    ("background_threads", False, TypeError),
    ("foreground_cpus", (), ValueError),
    ("foreground_cpus", (0, -1), ValueError),
    ("foreground_cpus", (0, True), TypeError),
    ("background_cpus", "0,1", TypeError),
    ("background_cpus", 0, TypeError),
    ("create", 1, TypeError),
    ("create", "yes", TypeError),
    ("error_if_exists", None, TypeError),
    ("direct_io", 0, TypeError),
    ("pin", "false", TypeError),
    ("compaction_process", 1, TypeError),
    ("allow_foreign_files", "True", TypeError),
    ("io_method", 3, TypeError),
    ("io_method", "uring", ValueError),
    ("wal_recovery", None, TypeError),
    ("wal_recovery", "lenient", ValueError),
]


@pytest.mark.parametrize("name,value,error", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_a_bad_option_is_refused_naming_it(name, value, error):
    with pytest.raises(error, match=name):
        Options(**{name: value}).validate()


@pytest.mark.parametrize("name,value,error", BAD[:10], ids=[f"{n}={v!r}" for n, v, _ in BAD[:10]])
def test_open_refuses_a_bad_option_before_touching_the_disk(tmp_path, name, value, error):
    with pytest.raises(error, match=name):
        hedge.open(tmp_path / "db", **{name: value})
    assert not (tmp_path / "db").exists()


def test_every_option_has_a_type_rule():
    """A value of a type no option takes is refused by every option (a new
    field without a rule would pass it)."""
    for field in dataclasses.fields(Options):
        with pytest.raises(TypeError, match=field.name):
            Options(**{field.name: object()}).validate()


@pytest.mark.parametrize("name", sorted(RANGES))
def test_range_bounds_are_inclusive(name):
    low, high = RANGES[name]
    triggers = ("l0_compaction_trigger", "l0_slowdown_trigger", "l0_stop_trigger")
    for value in (low, high):
        changes = {name: value}
        if name in triggers:                      # they must stay ordered
            changes = dict.fromkeys(triggers, value)
        assert getattr(Options(**changes).validate(), name) == value
    for value in (low - 1, high + 1):
        with pytest.raises(ValueError, match=name):
            Options(**{name: value}).validate()


def test_defaults_and_optional_values_are_valid():
    Options().validate()
    Options(foreground_threads=None, background_threads=None, foreground_cpus=[0], background_cpus=(0, 1)).validate()


def test_level1_target_follows_l0_unless_set():
    """Level 1 holds twice what L0 holds at its compaction trigger, unless
    ``level1_bytes`` says otherwise."""
    assert Options().level1_bytes is None
    assert Options().level1_target == 2 * (32 << 20) * 4 == 256 << 20
    assert Options(memtable_bytes=4 << 20, l0_compaction_trigger=2).level1_target == 16 << 20
    assert Options(level1_bytes=64 << 20, memtable_bytes=4 << 20).level1_target == 64 << 20
    assert Options().replace(memtable_bytes=1 << 20).level1_target == 8 << 20


def test_l0_triggers_must_be_ordered_and_direct_io_needs_a_cache():
    with pytest.raises(ValueError, match="l0_compaction_trigger <= l0_slowdown_trigger"):
        Options(l0_compaction_trigger=9, l0_slowdown_trigger=8).validate()
    with pytest.raises(ValueError, match="block_cache_bytes"):
        Options(direct_io=True, block_cache_bytes=0).validate()


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="memtable_size"):
        Options(memtable_size=1)
