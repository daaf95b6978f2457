"""Options: every knob of a database, frozen once the database is open.

Options are given as keywords to ``hedge.open``; an unknown keyword is a
TypeError (dataclass construction).  ``validate`` (run by ``hedge.open``
before anything touches the disk) checks every option, each error naming
the option: a value of the wrong type is a TypeError (a bool option takes
only True/False, an int option only an int: not a bool, str or float), a
value out of range a ValueError.  The ranges (``RANGES``, inclusive) are
wide but bounded, so a typo cannot ask for a terabyte block or a million
bloom bits per key.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from hedge.io.backend import SUBMIT_MIN

IO_METHODS = ("auto", "io_uring", "threads", "sync")
WAL_RECOVERY_MODES = ("tolerate_tail", "absolute", "point_in_time")
# "none", then the codecs of hedge/lsm/compression.py CODECS.
COMPRESSIONS = ("none", "zstd")
KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
MAX_CPU = 1 << 16

# Inclusive ranges of the int options.
RANGES = {
    "block_cache_bytes": (0, TiB),
    "memtable_bytes": (1, 4 * GiB),
    "block_bytes": (256, 16 * MiB),        # a lookup reads one block
    "bloom_bits_per_key": (1, 64),         # ~1% false positives at 10; 43 reaches the probe cap
    "foreground_threads": (1, 1024),       # or None
    "background_threads": (1, 1024),       # or None
    "ring_entries": (4, 32768),            # the kernel's limit; fewer than 4 leave no room in flight
    "ring_submit_min": (0, 32768),
    "l0_compaction_trigger": (1, 10000),
    "l0_slowdown_trigger": (1, 10000),
    "l0_stop_trigger": (1, 10000),
    "level1_bytes": (1, 1 << 50),
    "level_size_ratio": (2, 1000),
    "table_bytes": (1, 64 * GiB),
    "max_open_files": (1, 1 << 20),       # table files open at once (LevelDB's max_open_files)
}
_OPTIONAL = frozenset({"foreground_threads", "background_threads", "level1_bytes"})
_BOOLS = frozenset({"create", "error_if_exists", "read_only", "direct_io", "pin", "compaction_process", "flush_process",
                    "allow_foreign_files", "l0_scan_compaction", "inline_reads"})
_CHOICES = {"io_method": IO_METHODS, "wal_recovery": WAL_RECOVERY_MODES, "compression": COMPRESSIONS}


@dataclass(frozen=True)
class Options:
    # Create the directory and an empty database when none exists.
    create: bool = True
    # Fail when the database already exists (a guard for fresh loads).
    error_if_exists: bool = False
    # Open an existing database for reading only: a shared lock (several
    # read-only opens at once, none beside a writer), the WAL replayed into
    # memory, nothing written; every write raises ReadOnlyError.
    read_only: bool = False
    # How I/O is issued: io_uring, a worker-thread pool, or inline syscalls.
    io_method: str = "auto"
    # Open tables with O_DIRECT; reads then rely on the block cache.
    direct_io: bool = False
    # A table block that is not in the block cache but is in the OS page
    # cache is read on the reading thread with one preadv2(RWF_NOWAIT),
    # which never waits for the device, instead of a ring request the task
    # must suspend for (docs/design.md, "Inline block reads").  Blocks the
    # page cache lacks and every read of an O_DIRECT table stay ring
    # requests.
    inline_reads: bool = True
    # Bytes of decoded blocks kept in memory (CLOCK cache).
    block_cache_bytes: int = 64 << 20
    # A memtable becomes immutable (and is flushed) at this size.  32 MiB
    # (RocksDB: 64 MB, LevelDB: 4 MB): a flush's and a table's fixed costs
    # are paid a quarter as often as at 8 MiB, and the YCSB load no longer
    # waits on memtables queued for flush (docs/design.md).  Up to three
    # are held at once (one taking writes, two awaiting their flush).
    memtable_bytes: int = 32 << 20
    # Target size of a data block inside a table.  Blocks of large entries
    # grow to hold 16 of them, up to 4x this (docs/format/table.md): a block
    # costs CPU to read, verify, cache and decode mostly per block.
    block_bytes: int = 4096
    # Bloom filter bits per key (~1% false positives at 10).
    bloom_bits_per_key: int = 10
    # Compress the data blocks of tables written from now on: "none" or
    # "zstd" (level 1; a block that does not shrink by an eighth is stored
    # raw).  Tables written under any setting open under any other.  Off:
    # the YCSB driver's values are random bytes, and zstd gains 1.3% on its
    # 4 KiB blocks for ~12 us of CPU per block written (docs/design.md,
    # "Block compression"); on JSON-like values it stores a third of the bytes.
    compression: str = "none"
    # Table files kept open at once (LevelDB's max_open_files): beyond it the
    # least recently used is closed and reopened when read again.  Half of the
    # 1,024 descriptors a process usually gets.
    max_open_files: int = 500
    # Threads running put/get/remove/scan (None: from the CPU topology).
    foreground_threads: int | None = None
    # Threads running flush and compaction (None: from the CPU topology).
    background_threads: int | None = None
    # Pin pool threads to cores (P-cores for foreground, E-cores for background).
    pin: bool = True
    # Explicit CPU sets for the pools (None: from the topology); e.g. (0, 1).
    foreground_cpus: tuple[int, ...] | None = None
    background_cpus: tuple[int, ...] | None = None
    # Submission-queue entries of each ring; bounds requests in flight per thread.
    ring_entries: int = 256
    # Submit staged requests without waiting for the ready queue to drain once
    # this many are staged and they are half of what the kernel holds
    # (0: only when the SQ is full or no task is ready).  Early submission keeps
    # a device busy while many tasks run; each submission costs a system call
    # and a device kick, so it waits for a batch (hedge/io/backend.py).
    ring_submit_min: int = SUBMIT_MIN
    # What to do with a damaged WAL on open: drop only a torn final record
    # (tolerate_tail), refuse any damage (absolute), or stop at the first bad
    # record (point_in_time).
    wal_recovery: str = "tolerate_tail"
    # Number of L0 tables that triggers a compaction.
    l0_compaction_trigger: int = 4
    # Compact L0 below that trigger once scans have paid for its tables: after
    # (L0 bytes / 16 KiB, at least 100) scans of the same L0 (LevelDB's seek
    # compaction, counted in scans).  Every scan merges each L0 table it
    # overlaps; a read-mostly phase after writes keeps up to three of them
    # (YCSB E after A, B and C: 6-7% more scans/s with this on).
    l0_scan_compaction: bool = True
    # Number of L0 tables at which writers are slowed down.
    l0_slowdown_trigger: int = 8
    # Number of L0 tables at which writers wait for compaction.
    l0_stop_trigger: int = 12
    # Size of level 1; each deeper level is level_size_ratio times larger.
    # None: twice what L0 holds at its compaction trigger (2 x memtable_bytes
    # x l0_compaction_trigger; 256 MiB with the defaults, RocksDB's
    # max_bytes_for_level_base), read as ``level1_target``.  A compaction
    # of L0 then rewrites about twice its input of L1, and a database of a
    # few hundred MiB keeps one level instead of two, so a scan merges one
    # source fewer (docs/compaction.md, "Level 1's size").
    level1_bytes: int | None = None
    # Size ratio between adjacent levels.
    level_size_ratio: int = 10
    # Target size of one table written by flush or compaction.
    table_bytes: int = 32 << 20
    # Run compaction merges in a worker process pinned to the background cores
    # (it has its own GIL).  On: during a compaction, gets from a caller's
    # thread measured p99.9 0.41 ms / max 4.3 ms with it against 5.2 / 20 ms
    # with merges on the foreground's GIL (docs/design.md, "The GIL").
    compaction_process: bool = True
    # Build flushed tables in a second worker process, from the memtable's
    # WAL, instead of in the maintenance thread on the foreground's GIL
    # (docs/design.md, "The GIL").  The memtable stays the truth: when the
    # worker fails, the thread flushes it.
    flush_process: bool = True
    # Create a database in a directory that already holds files which are not
    # hedge's (refused otherwise: a wrong path must not mix a database into
    # the user's files).  Hedge never removes a file it did not name.
    allow_foreign_files: bool = False

    def validate(self) -> "Options":
        """Raise TypeError for a value of the wrong type, ValueError for one
        out of range (both naming the option); return self."""
        for f in dataclasses.fields(self):
            name, value = f.name, getattr(self, f.name)
            if name in _BOOLS:
                if not isinstance(value, bool):
                    raise TypeError(f"{name} must be True or False, not {_show(value)}")
            elif name in RANGES:
                low, high = RANGES[name]
                if value is None and name in _OPTIONAL:
                    continue
                _check_int(name, value, low, high)
            elif name in _CHOICES:
                choices = _CHOICES[name]
                if not isinstance(value, str):
                    raise TypeError(f"{name} must be a str, one of {choices}, not {_show(value)}")
                if value not in choices:
                    raise ValueError(f"{name} must be one of {choices}, not {value!r}")
            elif name in ("foreground_cpus", "background_cpus"):
                if value is None:
                    continue
                if not isinstance(value, (tuple, list, set, frozenset)):
                    raise TypeError(f"{name} must be a sequence of CPU numbers or None, not {_show(value)}")
                if not value:
                    raise ValueError(f"{name} must be a non-empty sequence of CPU numbers or None")
                for cpu in value:
                    _check_int(name, cpu, 0, MAX_CPU, what="a CPU number")
            else:  # pragma: no cover - a new field needs a rule above
                raise AssertionError(f"option {name} has no validation rule")
        if not (self.l0_compaction_trigger <= self.l0_slowdown_trigger <= self.l0_stop_trigger):
            raise ValueError("need l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger, not "
                             f"{self.l0_compaction_trigger}, {self.l0_slowdown_trigger}, {self.l0_stop_trigger}")
        if self.direct_io and self.block_cache_bytes == 0:
            raise ValueError("direct_io=True needs a block cache (block_cache_bytes > 0)")
        return self

    @property
    def level1_target(self) -> int:
        """Bytes level 1 holds before it is compacted: ``level1_bytes``, or
        when that is None twice what L0 holds at its compaction trigger."""
        if self.level1_bytes is not None:
            return self.level1_bytes
        return 2 * self.memtable_bytes * self.l0_compaction_trigger

    def replace(self, **changes) -> "Options":
        return dataclasses.replace(self, **changes).validate()


def _show(value) -> str:
    return f"{type(value).__name__} {value!r}"


def _check_int(name: str, value, low: int, high: int, what: str = "an int") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {what}, not {_show(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, not {value}")


def io_method_from_env(requested: str) -> str:
    """HEDGE_IO_METHOD, when set, overrides the configured io_method."""
    env = os.environ.get("HEDGE_IO_METHOD")
    if env:
        if env not in IO_METHODS:
            raise ValueError(f"HEDGE_IO_METHOD must be one of {IO_METHODS}, not {env!r}")
        return env
    return requested
