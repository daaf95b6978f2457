"""VersionSet: the current version state of one database and the manifest
that makes it durable (LevelDB's VersionSet).

It owns:
  - ``current``: the VersionSetState (version, wal_number, next_file_number,
    last_seq, compaction pointers) that the manifest describes;
  - the manifest log that every change is appended to (hedge/lsm/manifest.py
    has the file format and I/O);
  - file numbers: ``new_file_number`` hands out numbers for WALs, tables and
    manifests from one counter, ``mark_file_number_used`` moves it past a
    number found on disk;
  - ``last_seq``: the last sequence number published to readers;
  - ``log_and_apply(edit)``: make an edit durable, then make it current;
  - the manifest side of recovery: ``recover`` reads CURRENT and folds its
    manifest, ``install_manifest`` writes a new manifest holding the whole
    state and switches CURRENT to it.

Invariants:
  - ``current`` only changes to a state whose edit is durable in the
    manifest; it is never modified, only replaced.
  - Installs take turns: one ``log_and_apply`` at a time, from its manifest
    append to its install callback, so a flush and a concurrent compaction
    never interleave their appends or their super-version swaps.
  - No number handed out is ever handed out again, nor one at or below a
    number the manifest or the directory names.

Threads: ``new_file_number`` / ``mark_file_number_used`` from any thread
(under a lock).  ``last_seq`` is written only by the group-commit leader
(and by recovery), read by anyone.  ``recover`` and ``install_manifest`` run
once, during open, on the executor that opens the database;
``log_and_apply`` on the background executor (flush and compaction).
``current`` may be read from any thread.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Callable

from hedge.errors import CorruptionError
from hedge.exec.signal import Signal
from hedge.lsm import filenames
from hedge.lsm.manifest import ManifestLog, load_state, read_current
from hedge.lsm.version import Version, VersionSetState
from hedge.lsm.version_edit import VersionEdit

log = logging.getLogger("hedge")


class VersionSet:
    def __init__(self, directory: str, state: VersionSetState):
        """Private: use ``recover``."""
        self.directory = directory
        self._state = state
        self._manifest: ManifestLog | None = None
        self._file_lock = threading.Lock()
        self._next_file = state.next_file_number
        self.last_seq = state.last_seq
        self._turn_lock = threading.Lock()
        self._installing = False
        self._turn = Signal()

    # -- recovery (open) ----------------------------------------------------------
    @classmethod
    async def recover(cls, directory: str, names: list[str]) -> "VersionSet":
        """The version set CURRENT describes, or the empty one for a new
        database.  ``names`` lists the directory; every numbered file in it
        is marked used.  No manifest is open for appends yet: recovery ends
        with ``install_manifest``.

        A creation cut short before CURRENT was switched (only empty WALs
        and manifests) starts over.  Raises CorruptionError when the
        directory holds a table or a non-empty WAL but no CURRENT, when CURRENT or its manifest is damaged, or when the
        manifest's final record is torn or damaged although its edit had
        been acknowledged (``_check_torn_manifest_tail``)."""
        parsed = [p for p in map(filenames.parse, names) if p is not None]
        current = await read_current(directory)
        if current is None:
            if _may_hold_data(directory, parsed):
                raise CorruptionError(directory, None, "the directory holds database files but no CURRENT file")
            state = VersionSetState(Version())
        else:
            loaded = await load_state(directory, current)
            state = loaded.state
            if loaded.torn_tail is not None:
                _check_torn_manifest_tail(directory, names, state, loaded.torn_tail)
        versions = cls(directory, state)
        for _kind, number in parsed:
            versions.mark_file_number_used(number)
        return versions

    async def install_manifest(self, edit: VersionEdit) -> None:
        """Apply ``edit`` to the current state and write a new manifest
        holding the result (snapshot edit, fdatasync, CURRENT switched by
        rename, directory fsync).  The older manifest, if any, is obsolete
        once this returns.  REQUIRES: recovery, before any log_and_apply.
        Raises HedgeIOError, CorruptionError (an edit the version rejects)."""
        number = self.new_file_number()
        edit.next_file_number = self._next_file
        edit.last_seq = self.last_seq
        state = self._state.apply(edit)
        manifest = await ManifestLog.install(self.directory, number, state)
        if self._manifest is not None:
            self._manifest.close()
        self._manifest = manifest
        self._state = state

    # -- the state ------------------------------------------------------------------
    @property
    def current(self) -> VersionSetState:
        return self._state

    @property
    def manifest_number(self) -> int | None:
        """The number of the manifest edits are appended to (None before
        ``install_manifest``)."""
        return self._manifest.number if self._manifest is not None else None

    @property
    def next_file_number(self) -> int:
        return self._next_file

    def new_file_number(self) -> int:
        with self._file_lock:
            number = self._next_file
            self._next_file += 1
            return number

    def mark_file_number_used(self, number: int) -> None:
        """Never hand out ``number`` or anything below it."""
        with self._file_lock:
            self._next_file = max(self._next_file, number + 1)

    # -- changes --------------------------------------------------------------------
    async def log_and_apply(self, edit: VersionEdit,
                            install: Callable[[VersionSetState], None] | None = None) -> VersionSetState:
        """Make ``edit`` durable in the manifest (append, fdatasync), then
        make the new state current and call ``install(state)`` (the engine
        swaps its super version there); return the new state.  Waits for
        its turn behind another log_and_apply.

        The edit gets the bookkeeping numbers (next_file_number, last_seq)
        here.  Raises CorruptionError/ValueError for an edit the version
        rejects (nothing written) and HedgeIOError when the append fails
        (the state is unchanged; the caller makes that the background
        error and never retries).  REQUIRES: ``install_manifest`` ran."""
        await self._turn.wait_for(self._take_turn)
        try:
            edit.next_file_number = self._next_file
            edit.last_seq = self.last_seq
            state = self._state.apply(edit)
            await self._manifest.append(edit)
            self._state = state
            if install is not None:
                install(state)
            return state
        finally:
            with self._turn_lock:
                self._installing = False
            self._turn.notify()

    def _take_turn(self) -> bool:
        with self._turn_lock:
            if self._installing:
                return False
            self._installing = True
            return True

    def close(self) -> None:
        """Close the manifest.  REQUIRES: no log_and_apply runs."""
        if self._manifest is not None:
            self._manifest.close()


def _check_torn_manifest_tail(directory: str, names: list[str], state: VersionSetState,
                              torn: CorruptionError) -> None:
    """The manifest's final record was dropped as a torn append; refuse to
    open when its edit had been acknowledged.  After an acknowledged flush
    edit the WAL it made obsolete is deleted, so the WAL the state *without*
    that record names is gone; while that WAL is there its writes are
    replayed and nothing is lost.  (An acknowledged compaction's inputs are
    deleted likewise, which opening finds as a missing table; a trivial
    move changes no data.)  Raises CorruptionError."""
    wal = filenames.wal_name(state.wal_number)
    if wal not in names:
        raise CorruptionError(torn.file, torn.offset,
                              f"the final record is damaged ({torn.detail}) and {wal}, which the state before "
                              "it needs, is gone: that record's edit was acknowledged; refusing to open with "
                              "older data")
    log.warning("hedge: %s: dropped a torn final record at offset %s (%s)", torn.file, torn.offset, torn.detail)


def _may_hold_data(directory: str, parsed: list[tuple[str, int]]) -> bool:
    """Whether database files without CURRENT could hold writes: a table or
    a non-empty WAL.  A creation cut short (before CURRENT was switched)
    leaves only empty WALs and manifests."""
    for kind, number in parsed:
        if kind == "sst":
            return True
        if kind == "wal" and os.path.getsize(filenames.join(directory, filenames.wal_name(number))):
            return True
    return False
