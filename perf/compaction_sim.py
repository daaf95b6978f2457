"""Write amplification of the leveled compaction policy, simulated without a disk.

Loads random keys in fixed-size flushes, runs hedge.lsm.compaction.policy
after every flush until it has nothing to do (a background pool that keeps
up), and prints bytes written by compactions / bytes flushed.  Each simulated
entry stands for ``--entry-bytes`` of data; tables are sorted lists of integer
keys, and a compaction's output is the union of its inputs' keys (every write
is a put, so only duplicates disappear).  Not a timed benchmark.

    python -m perf.compaction_sim [--total-bytes 1G] [--flush-bytes 4M] ...
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time

from hedge.lsm.compaction import policy
from hedge.lsm.version import Version, VersionSetState
from hedge.lsm.version_edit import NUM_LEVELS, FileMeta, VersionEdit
from hedge.options import Options

UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


class Tree:
    """The version set plus each live table's keys."""

    def __init__(self, options: Options, entry_bytes: int):
        self.options = options
        self.entry_bytes = entry_bytes
        self.state = VersionSetState(Version())
        self.keys: dict[int, list[int]] = {}
        self.seq = 0
        self.flushed = 0
        self.compacted = 0
        self.compactions = 0
        self.trivial_moves = 0
        self.compacted_by_level = [0] * NUM_LEVELS

    def _table(self, number: int, keys: list[int], seqs: tuple[int, int]) -> FileMeta:
        self.keys[number] = keys
        return FileMeta(number=number, size=len(keys) * self.entry_bytes,
                        smallest_key=keys[0].to_bytes(8, "big"), largest_key=keys[-1].to_bytes(8, "big"),
                        smallest_seq=seqs[0], largest_seq=seqs[1], entries=len(keys), deletes=0)

    def _install(self, edit: VersionEdit) -> None:
        self.state = self.state.apply(edit)
        live = self.state.version.all_file_numbers()
        for number in [n for n in self.keys if n not in live]:
            del self.keys[number]

    def flush(self, keys: list[int]) -> None:
        keys = sorted(set(keys))
        first = self.seq + 1
        self.seq += len(keys)
        number = self.state.next_file_number
        edit = VersionEdit(next_file_number=number + 1, last_seq=self.seq)
        edit.add_file(0, self._table(number, keys, (first, self.seq)))
        self._install(edit)
        self.flushed += len(keys) * self.entry_bytes

    def compact_once(self) -> bool:
        version = self.state.version
        task = policy.pick(version, self.options, self.state.compact_pointers)
        if task is None:
            return False
        self.compactions += 1
        if task.trivial_move:
            self.trivial_moves += 1
            self._install(policy.apply(version, task, []))
            return True
        inputs = [m for _, files in task.inputs() for m in files]
        merged = sorted(set().union(*(self.keys[m.number] for m in inputs)))
        seqs = (min(m.smallest_seq for m in inputs), max(m.largest_seq for m in inputs))
        per_table = max(task.max_output_bytes // self.entry_bytes, 1)
        number = self.state.next_file_number
        outputs = []
        for start in range(0, len(merged), per_table):
            outputs.append(self._table(number, merged[start:start + per_table], seqs))
            number += 1
        written = len(merged) * self.entry_bytes
        self.compacted += written
        self.compacted_by_level[task.output_level] += written
        edit = policy.apply(version, task, outputs)
        edit.next_file_number = number
        self._install(edit)
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-bytes", default="1G", help="bytes loaded (default 1G)")
    parser.add_argument("--flush-bytes", default="4M", help="bytes per flush (default 4M)")
    parser.add_argument("--entry-bytes", default="4K", help="bytes one simulated entry stands for")
    parser.add_argument("--key-space", type=int, default=0,
                        help="distinct keys (0: random 64-bit keys, no overwrites)")
    parser.add_argument("--level1-bytes", default=None,
                        help="Options.level1_bytes (default: twice L0 at its trigger, from the flush size)")
    parser.add_argument("--table-bytes", default=None, help="Options.table_bytes (default: Options)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    changes = {}
    if args.level1_bytes:
        changes["level1_bytes"] = parse_size(args.level1_bytes)
    if args.table_bytes:
        changes["table_bytes"] = parse_size(args.table_bytes)
    total, flush_bytes, entry_bytes = (parse_size(args.total_bytes), parse_size(args.flush_bytes),
                                       parse_size(args.entry_bytes))
    # A flush writes one memtable: level 1's default size follows it.
    options = Options().replace(memtable_bytes=flush_bytes, **changes)
    per_flush = max(flush_bytes // entry_bytes, 1)
    key_space = args.key_space or (1 << 64)

    print(f"# python {platform.python_version()} on {platform.system()} {platform.release()} "
          f"({platform.machine()}, {os.cpu_count()} cpus); pure simulation, no I/O")
    print(f"# load {total >> 20} MiB in {flush_bytes >> 20} MiB flushes, {entry_bytes} B per entry, "
          f"key space {'2^64' if not args.key_space else key_space}")
    print(f"# level1_bytes={options.level1_target >> 20} MiB ratio={options.level_size_ratio} "
          f"table_bytes={options.table_bytes >> 20} MiB l0_trigger={options.l0_compaction_trigger}")

    rng = random.Random(args.seed)
    tree = Tree(options, entry_bytes)
    started = time.perf_counter()
    while tree.flushed < total:
        tree.flush([rng.randrange(key_space) for _ in range(per_flush)])
        while tree.compact_once():
            pass
    elapsed = time.perf_counter() - started

    version = tree.state.version
    print(f"{'level':>5} {'files':>6} {'MiB':>9} {'target MiB':>11} {'written MiB':>12}")
    for level in range(NUM_LEVELS):
        target = "" if level in (0, NUM_LEVELS - 1) else f"{policy.max_level_bytes(options, level) >> 20}"
        print(f"{level:>5} {version.num_files(level):>6} {version.level_bytes(level) / (1 << 20):>9.1f} "
              f"{target:>11} {tree.compacted_by_level[level] / (1 << 20):>12.1f}")
    print(f"compactions: {tree.compactions} ({tree.trivial_moves} trivial moves), simulated in {elapsed:.1f} s")
    print(f"flushed: {tree.flushed / (1 << 20):.0f} MiB, written by compactions: "
          f"{tree.compacted / (1 << 20):.0f} MiB")
    print(f"write amplification (compaction bytes / flushed bytes): {tree.compacted / tree.flushed:.2f}")
    print(f"write amplification incl. flush (all table bytes / flushed bytes): "
          f"{(tree.compacted + tree.flushed) / tree.flushed:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
