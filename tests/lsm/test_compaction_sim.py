"""The compaction policy driven through thousands of flushes with no disk.

Each simulated table holds its entries in memory; flushes add L0 tables,
compactions merge entries with compact_entries and cut outputs at the target
size, and every step checks the tree's invariants against a model of the
latest value of every key.  HEDGE_SOAK=1 runs a longer load.
"""
from __future__ import annotations

import os
import random

from hedge.lsm.compaction import policy
from hedge.lsm.compaction.merge import compact_entries
from hedge.lsm.keys import Kind, entry_order
from hedge.lsm.version import Version, VersionSetState, snapshot_edit
from hedge.lsm.version_edit import NUM_LEVELS, FileMeta, VersionEdit
from hedge.options import Options

ENTRY_BYTES = 100
SOAK = os.environ.get("HEDGE_SOAK") == "1"
OPTS = Options(l0_compaction_trigger=4, l0_slowdown_trigger=6, l0_stop_trigger=8,
               level1_bytes=40_000, level_size_ratio=10, table_bytes=20_000)


def key_of(i: int) -> bytes:
    return b"%08d" % i


class Sim:
    """An LSM tree whose tables are lists of entries in memory."""

    def __init__(self, options: Options):
        self.options = options
        self.state = VersionSetState(Version())
        self.tables: dict[int, list] = {}
        # Per table: user key -> (seq, kind) of its newest version there.
        self.index: dict[int, dict[bytes, tuple[int, Kind]]] = {}
        self.latest: dict[bytes, tuple[int, Kind]] = {}
        self.seq = 0
        self.flushed_bytes = 0
        self.compacted_bytes = 0
        self.trivial_moves = 0
        self.compactions = 0
        self.tombstones_dropped = 0

    def _store(self, number: int, entries: list) -> FileMeta:
        """Keep a new table's entries; return its FileMeta."""
        self.tables[number] = entries
        index: dict[bytes, tuple[int, Kind]] = {}
        for key, seq, kind, _ in entries:
            index.setdefault(key, (seq, kind))
        self.index[number] = index
        seqs = [e[1] for e in entries]
        return FileMeta(number=number, size=len(entries) * ENTRY_BYTES, smallest_key=entries[0][0],
                        largest_key=entries[-1][0], smallest_seq=min(seqs), largest_seq=max(seqs),
                        entries=len(entries), deletes=sum(e[2] == Kind.DELETE for e in entries))

    def _install(self, edit: VersionEdit) -> None:
        before = self.state.version.all_file_numbers()
        self.state = self.state.apply(edit)
        after = self.state.version.all_file_numbers()
        added = {m.number for _, m in edit.added_files}
        deleted = {n for _, n in edit.deleted_files}
        # No table lost or duplicated: exactly the edit's tables came and went.
        assert after == (before - deleted) | added
        assert sum(self.state.version.num_files(n) for n in range(NUM_LEVELS)) == len(after)
        for number in deleted - added:
            del self.tables[number]
            del self.index[number]

    def flush(self, keys: list[int], delete_fraction: float, rng: random.Random) -> None:
        entries = []
        for k in sorted(set(keys)):
            self.seq += 1
            kind = Kind.DELETE if rng.random() < delete_fraction else Kind.PUT
            entries.append((key_of(k), self.seq, kind, b""))
            self.latest[key_of(k)] = (self.seq, kind)
        number = self.state.next_file_number
        edit = VersionEdit(next_file_number=number + 1, last_seq=self.seq)
        edit.add_file(0, self._store(number, entries))
        self._install(edit)
        self.flushed_bytes += len(entries) * ENTRY_BYTES

    def compact_once(self) -> policy.CompactionTask | None:
        version = self.state.version
        task = policy.pick(version, self.options, self.state.compact_pointers)
        if task is None:
            return None
        assert task.trivial_move == (len(task.upper) == 1 and not task.lower)
        assert task.max_output_bytes == self.options.table_bytes
        deeper = [m for n in range(task.output_level + 1, NUM_LEVELS)
                  for m in version.overlapping(n, task.smallest_key, task.largest_key)]
        assert task.bottommost == (not deeper)
        self.compactions += 1
        if task.trivial_move:
            self.trivial_moves += 1
            self._install(policy.apply(version, task, []))
            return task
        merged = sorted((e for _, files in task.inputs() for m in files for e in self.tables[m.number]),
                        key=entry_order)
        survivors = list(compact_entries(merged, task.bottommost, oldest_snapshot_seq=self.seq))
        newest = {}
        for e in merged:
            newest.setdefault(e[0], e)
        # No snapshots: exactly the newest version of each key survives, minus
        # tombstones when nothing deeper can hold an older version.
        assert survivors == [e for e in newest.values()
                             if not (task.bottommost and e[2] == Kind.DELETE)]
        self.tombstones_dropped += sum(e[2] == Kind.DELETE for e in newest.values()) * task.bottommost
        per_table = task.max_output_bytes // ENTRY_BYTES
        outputs = []
        number = self.state.next_file_number
        for start in range(0, len(survivors), per_table):
            chunk = survivors[start:start + per_table]
            outputs.append(self._store(number, chunk))
            number += 1
        self.compacted_bytes += len(survivors) * ENTRY_BYTES
        edit = policy.apply(version, task, outputs)
        edit.next_file_number = number
        self._install(edit)
        return task

    def check(self, keys) -> None:
        version = self.state.version
        for level in range(1, NUM_LEVELS):
            files = version.levels[level]
            assert all(a.largest_key < b.smallest_key for a, b in zip(files, files[1:]))
        l0 = version.levels[0]
        assert all(a.largest_seq > b.largest_seq for a, b in zip(l0, l0[1:]))
        for level, meta in version.files():
            entries = self.tables[meta.number]
            assert (entries[0][0], entries[-1][0]) == (meta.smallest_key, meta.largest_key)
        # Every key reads back its latest write through files_for_key.
        for key in keys:
            found = None
            for _, meta in version.files_for_key(key):
                found = self.index[meta.number].get(key)
                if found is not None:
                    break
            expected = self.latest.get(key)
            if expected is not None and expected[1] == Kind.DELETE:
                # A tombstone may have been dropped at the bottom; reads see absence either way.
                assert found is None or found == expected
            else:
                assert found == expected


def random_flush_keys(rng: random.Random, key_space: int) -> list[int]:
    """200 keys, from the whole key space or from a narrow window of it, so
    L0 tables overlap in varied patterns and some move down trivially."""
    width = key_space if rng.random() < 0.6 else rng.randint(200, key_space // 20)
    low = rng.randrange(key_space - width + 1)
    return [low + rng.randrange(width) for _ in range(200)]


def test_random_load_keeps_every_invariant_and_converges():
    rng = random.Random(11)
    sim = Sim(OPTS)
    key_space = 40_000
    flushes = 6000 if SOAK else 1200
    stalls_seen = set()
    for step in range(flushes):
        if step % 300 == 150:
            # Compaction falls behind: writers must be slowed, then stopped.
            while sim.compact_once():
                pass
            assert sim.state.version.num_files(0) < OPTS.l0_compaction_trigger
            while sim.state.version.num_files(0) < OPTS.l0_stop_trigger:
                sim.flush(random_flush_keys(rng, key_space), 0.1, rng)
                count = sim.state.version.num_files(0)
                stall = policy.write_stall(sim.state.version, OPTS)
                expected = (policy.Stall.STOP if count >= OPTS.l0_stop_trigger else
                            policy.Stall.SLOWDOWN if count >= OPTS.l0_slowdown_trigger else
                            policy.Stall.NONE)
                assert stall == expected
                stalls_seen.add(stall)
        sim.flush(random_flush_keys(rng, key_space), 0.1, rng)
        # A background thread that sometimes keeps up and sometimes does not;
        # a stopped writer waits for compaction to bring L0 down.
        for _ in range(rng.randint(0, 2)):
            sim.compact_once()
        while policy.write_stall(sim.state.version, OPTS) == policy.Stall.STOP:
            assert sim.compact_once() is not None
        sim.check([key_of(rng.randrange(key_space)) for _ in range(20)])
        if step % 200 == 0:
            sim.check(list(sim.latest))
    while sim.compact_once():
        pass
    sim.check(list(sim.latest))
    version = sim.state.version
    assert stalls_seen == set(policy.Stall)
    # Converged: every level within its target, L0 below the trigger.
    assert all(score < 1 for score in policy.level_scores(version, OPTS))
    deepest = max(n for n in range(NUM_LEVELS) if version.num_files(n))
    assert deepest >= 3
    total = sum(version.level_bytes(n) for n in range(NUM_LEVELS))
    # Leveled shape: the deepest level holds most of the data.
    assert version.level_bytes(deepest) > 0.5 * total
    assert sim.compacted_bytes > sim.flushed_bytes
    assert sim.tombstones_dropped > 0
    assert 0 < sim.trivial_moves < sim.compactions
    # Manifest round trip of the final state.
    assert VersionSetState.fold([VersionEdit.decode(snapshot_edit(sim.state).encode())]) == sim.state


def test_sequential_load_compacts_by_trivial_moves_only():
    rng = random.Random(2)
    sim = Sim(OPTS)
    for step in range(400):
        sim.flush(list(range(step * 200, step * 200 + 200)), 0.0, rng)
        while sim.compact_once():
            pass
        sim.check([key_of(rng.randrange((step + 1) * 200)) for _ in range(5)])
    assert sim.compactions > 0 and sim.trivial_moves == sim.compactions
    assert sim.compacted_bytes == 0
    assert sim.state.version.num_files(3) > 0
