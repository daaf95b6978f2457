"""Options: every knob of a database, frozen once the database is open.

Options are given as keywords to ``hedge.open``; an unknown keyword is a
TypeError (dataclass construction), a bad value a ValueError (``validate``).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

IO_METHODS = ("auto", "io_uring", "threads", "sync")
WAL_RECOVERY_MODES = ("tolerate_tail", "absolute", "point_in_time")


@dataclass(frozen=True)
class Options:
    # Create the directory and an empty database when none exists.
    create: bool = True
    # Fail when the database already exists (a guard for fresh loads).
    error_if_exists: bool = False
    # How I/O is issued: io_uring, a worker-thread pool, or inline syscalls.
    io_method: str = "auto"
    # Open tables with O_DIRECT; reads then rely on the block cache.
    direct_io: bool = False
    # Bytes of decoded blocks kept in memory (CLOCK cache).
    block_cache_bytes: int = 64 << 20
    # A memtable becomes immutable (and is flushed) at this size.
    memtable_bytes: int = 8 << 20
    # Target size of a data block inside a table.
    block_bytes: int = 4096
    # Bloom filter bits per key (~1% false positives at 10).
    bloom_bits_per_key: int = 10
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
    # this many are staged and they are an eighth of what the kernel holds
    # (0: only when the SQ is full or no task is ready).  Early submission keeps
    # the device busy: 0.87 of fio's IOPS at 32 in flight against 0.64.
    ring_submit_min: int = 2
    # What to do with a damaged WAL on open: drop only a torn final record
    # (tolerate_tail), refuse any damage (absolute), or stop at the first bad
    # record (point_in_time).
    wal_recovery: str = "tolerate_tail"
    # Number of L0 tables that triggers a compaction.
    l0_compaction_trigger: int = 4
    # Number of L0 tables at which writers are slowed down.
    l0_slowdown_trigger: int = 8
    # Number of L0 tables at which writers wait for compaction.
    l0_stop_trigger: int = 12
    # Size of level 1; each deeper level is level_size_ratio times larger.
    level1_bytes: int = 64 << 20
    # Size ratio between adjacent levels.
    level_size_ratio: int = 10
    # Target size of one table written by flush or compaction.
    table_bytes: int = 32 << 20
    # Run compaction merges in a worker process pinned to the background cores
    # (it has its own GIL).  Off: on a 2-core machine the load measured no
    # faster with it (docs/design.md, "The GIL").
    compaction_process: bool = False

    def validate(self) -> "Options":
        """Raise ValueError for a value out of range; return self."""
        if self.io_method not in IO_METHODS:
            raise ValueError(f"io_method must be one of {IO_METHODS}, not {self.io_method!r}")
        if self.wal_recovery not in WAL_RECOVERY_MODES:
            raise ValueError(f"wal_recovery must be one of {WAL_RECOVERY_MODES}, not {self.wal_recovery!r}")
        for name in ("block_cache_bytes", "ring_submit_min"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("memtable_bytes", "block_bytes", "ring_entries", "level1_bytes", "table_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.level_size_ratio < 2:
            raise ValueError("level_size_ratio must be >= 2")
        for name in ("foreground_threads", "background_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None")
        for name in ("foreground_cpus", "background_cpus"):
            cpus = getattr(self, name)
            if cpus is not None and (not cpus or not all(isinstance(c, int) and c >= 0 for c in cpus)):
                raise ValueError(f"{name} must be a non-empty sequence of CPU numbers or None")
        for name in ("l0_compaction_trigger", "l0_slowdown_trigger", "l0_stop_trigger", "max_open_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        if not (self.l0_compaction_trigger <= self.l0_slowdown_trigger <= self.l0_stop_trigger):
            raise ValueError("need l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger")
        if self.direct_io and self.block_cache_bytes == 0:
            raise ValueError("direct_io=True needs a block cache (block_cache_bytes > 0)")
        return self

    def replace(self, **changes) -> "Options":
        return dataclasses.replace(self, **changes).validate()


def io_method_from_env(requested: str) -> str:
    """HEDGE_IO_METHOD, when set, overrides the configured io_method."""
    env = os.environ.get("HEDGE_IO_METHOD")
    if env:
        if env not in IO_METHODS:
            raise ValueError(f"HEDGE_IO_METHOD must be one of {IO_METHODS}, not {env!r}")
        return env
    return requested
