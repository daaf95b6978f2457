"""TableCache: the open tables of one database, with a bound on their file
descriptors (LevelDB's table cache and ``max_open_files``).

``open(number)`` reads a table's metadata (footer, index, bloom filter)
into a TableReader that stays in memory while the table is live.  The
reader reads its blocks through the cache's handle on the table's file: at
most ``max_open_files`` table files of live tables are open at once; opening
one more closes the least recently used file that no read is using, and a
later read reopens it.  A file with ring reads in progress (``users``) is
never closed, so the count may pass the limit by the number of concurrent
reads.  With ``inline_reads`` each reader also gets a ``read_now``: a read
the page cache answers on the reader's own thread, asked only as often as
the cache's InlineGate allows (hedge/lsm/inline_gate.py).

An in-place read takes no lock (the lock, taken twice, and the LRU's
update cost such a read about 2 us in place; docs/design.md, "Inline block
reads"): it joins the
handle's ``readers`` (``list.append`` and ``pop`` are atomic), then loads
the file.  Eviction takes the file out of the handle first (into
``retired``), then closes it only if no in-place read is running; else the
last of them closes it on its way out.  Each side stores before it looks,
so one of them sees the other.  An in-place read sets the handle's ``used``
bit instead of moving it in the LRU, and eviction gives a used file a
second chance (CLOCK).

A table leaves through ``drop`` once the version no longer holds it.
Readers holding an older super version may still read it, so its file
must stay open: the caller pins it (``pin``, which reopens it when
needed) before the edit is installed; a dropped file leaves the LRU and is
never closed by the cache except at ``close``.  When the last reference to
its reader goes, on whatever thread drops it, the table is *released*: its
``(number, file)`` joins a queue, with the file still open, and
``take_released`` hands it to the maintenance task, which closes the file
and then unlinks it.  The file is unlinked only once closed because the
last close of an unlinked file frees its blocks there and then (ext4 with
``discard`` waits on the device: 60-70 ms for a 32 MiB table), and that
must not happen on a foreground thread.  ``discard`` closes a table that
was opened but never published (a failed install).

Invariants: a live table's file is open or closed, never half-way; a file
with users > 0 is never closed before ``close``, nor a retired one while
in-place reads run; the LRU holds exactly the live tables whose file is
open.

Threads: any executor thread may read through a reader or call ``open`` /
``pin``; the bookkeeping is under one lock, never held across an await.
``drop``/``discard``/``unpin``/``close``/``take_released`` do no I/O and may
run anywhere.  A release takes no lock (it may run inside the garbage
collector): one ``deque.append``.
"""
from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections import OrderedDict, deque

from hedge.io import ops
from hedge.io.file import File
from hedge.lsm import filenames
from hedge.lsm.cache import BlockCache, counter_value
from hedge.lsm.inline_gate import GATE_WINDOW, InlineGate
from hedge.lsm.table import TableReader
from hedge.lsm.table_io import read_at


class _Handle:
    """One table's file, open or closed, and the reads using it."""

    __slots__ = ("number", "path", "file", "users", "live", "readers", "retired", "used", "__weakref__")

    def __init__(self, number: int, path: str):
        self.number = number
        self.path = path
        self.file: File | None = None
        self.users = 0                  # ring reads and pins holding the file (under the lock)
        self.live = True
        self.readers: list = []         # in-place reads running, one item each (no lock)
        self.retired: list[File] = []   # files evicted while in-place reads ran: the last closes them
        self.used = False               # read in place since eviction last passed (CLOCK's bit)


class TableCache:
    def __init__(self, directory: str, direct_io: bool, block_cache: BlockCache | None, max_open_files: int,
                 inline_reads: bool = False):
        """``inline_reads``: give readers a ``read_now`` (page-cache reads on
        the calling thread; never with ``direct_io``).
        REQUIRES: max_open_files >= 1."""
        self.directory = directory
        self.direct_io = direct_io
        self.inline_reads = inline_reads and not direct_io
        self.block_cache = block_cache
        self.max_open_files = max_open_files
        self._lock = threading.Lock()
        self._live: dict[int, _Handle] = {}
        self._lru: OrderedDict[int, _Handle] = OrderedDict()     # least recently used first
        self._dropped: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._released: deque[tuple[int, File]] = deque()   # appended by finalizers, without the lock
        self._unreleased = 0        # dropped tables not yet handed out by take_released
        self.reopens = 0
        self._inline_reads = itertools.count()       # blocks read from the page cache by read_now
        self._inline_fallbacks = itertools.count()   # read_now found them missing: a ring read follows
        self.inline_gate = InlineGate()              # which reads ask the page cache first

    def path(self, number: int) -> str:
        return filenames.join(self.directory, filenames.table_name(number))

    # -- tables ------------------------------------------------------------------------
    async def open(self, number: int) -> TableReader:
        """Open table ``number`` and read its metadata; return its reader.
        Raises CorruptionError, HedgeIOError."""
        handle = _Handle(number, self.path(number))
        file = await self._open_file(handle.path)
        try:
            size = file.size()
        except BaseException:
            file.close()
            raise
        self._publish(handle, file)
        try:
            return await TableReader.open(self._reader(handle), size, handle.path, number, self.block_cache,
                                          self._reader_now(handle) if self.inline_reads else None)
        except BaseException:
            self.discard(number)
            raise

    async def pin(self, numbers) -> list[_Handle]:
        """Keep the files of tables ``numbers`` open (reopening them when
        needed) until ``unpin``.  Raises HedgeIOError."""
        pinned = []
        try:
            for number in numbers:
                handle = self._live[number]
                if self._acquire(handle) is None:
                    await self._reopen(handle)
                pinned.append(handle)
        except BaseException:
            self.unpin(pinned)
            raise
        return pinned

    def unpin(self, handles: list[_Handle]) -> None:
        for handle in handles:
            self._release(handle)

    def drop(self, number: int) -> None:
        """Table ``number`` left the version: its file leaves the LRU and
        stays open for readers of older super versions (see the module
        docstring).  REQUIRES: pinned by the caller."""
        with self._lock:
            handle = self._live.pop(number, None)
            if handle is None:
                return
            handle.live = False
            self._lru.pop(number, None)
            self._dropped.add(handle)
            self._unreleased += 1
            # The finalizer holds the file: it outlives the handle, open,
            # until take_released hands it out.
            weakref.finalize(handle, self._released.append, (number, handle.file))

    def take_released(self) -> list[tuple[int, File]]:
        """The dropped tables whose readers are all gone since the last call,
        as ``(number, file)`` with the file still open: the caller closes
        it, then unlinks the table."""
        taken = []
        released = self._released
        while released:
            taken.append(released.popleft())
        if taken:
            with self._lock:
                self._unreleased -= len(taken)
        return taken

    @property
    def has_released(self) -> bool:
        """Whether ``take_released`` has something to hand out."""
        return bool(self._released)

    @property
    def unreleased(self) -> int:
        """Dropped tables not yet handed out by ``take_released`` (some
        reader of an older super version may still hold them)."""
        return self._unreleased

    def discard(self, number: int) -> None:
        """Close table ``number`` now (opened, never published)."""
        with self._lock:
            handle = self._live.pop(number, None)
            if handle is None:
                return
            handle.live = False
            self._lru.pop(number, None)
            file, handle.file = handle.file, None
        if file is not None:
            file.close()

    def close(self) -> None:
        """Close every table file, live or dropped."""
        with self._lock:
            handles = list(self._live.values()) + list(self._dropped)
            self._live.clear()
            self._lru.clear()
            files = []
            for handle in handles:
                handle.live = False
                if handle.file is not None:
                    files.append(handle.file)
                    handle.file = None
                files += handle.retired
                handle.retired = []
        for file in files:
            file.close()

    def stats(self) -> dict:
        with self._lock:
            return {"tables": len(self._live), "open_files": len(self._lru), "max_open_files": self.max_open_files,
                    "reopens": self.reopens, "inline_reads": counter_value(self._inline_reads),
                    "inline_fallbacks": counter_value(self._inline_fallbacks),
                    "inline_skip": self.inline_gate.skip}

    # -- reads -------------------------------------------------------------------------
    def _reader(self, handle: _Handle):
        """The ``read(offset, length)`` a TableReader of ``handle`` uses."""
        async def read(offset: int, length: int) -> bytes:
            file = self._acquire(handle)
            if file is None:
                file = await self._reopen(handle)
            try:
                return await read_at(file, offset, length)
            finally:
                self._release(handle)

        return read

    def _reader_now(self, handle: _Handle):
        """The ``read_now(offset, length)`` a TableReader of ``handle``
        uses (``ops.read_now``): the bytes when the page cache holds
        them all, else None: also when the gate has this read skip the
        page cache (hedge/lsm/inline_gate.py), or when the file is closed
        now (the ring read that follows reopens it).  Raises HedgeIOError.

        The misses of gets and scans come here: the read pins the handle
        without the lock (see the module docstring), and the gate's
        ``try_now`` and ``record(True)`` are inlined (each call cost such a
        read about 1 us in place; docs/design.md, "Inline block reads")."""
        done = self._inline_reads
        missed = self._inline_fallbacks
        gate = self.inline_gate
        attempts = gate.attempts
        readers = handle.readers
        ops_read_now = ops.read_now

        def read_cached(offset: int, length: int) -> bytes | None:
            if gate.skip != 1 and not gate.try_now():
                return None
            readers.append(None)
            try:
                file = handle.file
                if file is None:
                    next(missed)
                    return None
                handle.used = True
                data = ops_read_now(file, offset, length)
            finally:
                readers.pop()
                if handle.retired and not readers:
                    self._close_retired(handle)
            if data is None:
                next(missed)
                gate.record(False)
                return None
            next(done)
            if next(attempts) % GATE_WINDOW == 0:
                gate.judge()
            return data

        return read_cached

    def _acquire(self, handle: _Handle) -> File | None:
        """The open file of ``handle`` with one more user, or None when it
        is closed."""
        with self._lock:
            file = handle.file
            if file is not None:
                handle.users += 1
                if handle.live:
                    self._lru.move_to_end(handle.number)
            return file

    async def _reopen(self, handle: _Handle) -> File:
        """Open the file of ``handle`` again; return it with one more user."""
        file = await self._open_file(handle.path)
        with self._lock:
            self.reopens += 1
            spare = None
            if handle.file is None:
                handle.file = file
                if handle.live:
                    self._lru[handle.number] = handle
            else:
                spare = file                    # another reader reopened it meanwhile
            handle.users += 1
            current = handle.file
            victims = self._evict()
        if spare is not None:
            spare.close()
        self._close_evicted(victims)
        return current

    def _release(self, handle: _Handle) -> None:
        with self._lock:
            handle.users -= 1
            victims = self._evict() if len(self._lru) > self.max_open_files else ()
        self._close_evicted(victims)

    def _publish(self, handle: _Handle, file: File) -> None:
        with self._lock:
            old = self._live.get(handle.number)
            if old is not None:
                raise ValueError(f"table {handle.number} is open already")
            handle.file = file
            self._live[handle.number] = handle
            self._lru[handle.number] = handle
            victims = self._evict()
        self._close_evicted(victims)

    def _evict(self) -> list[_Handle]:
        """Take the least recently used idle files beyond the limit out of
        the LRU and their handles (into ``retired``); return those handles
        for ``_close_evicted``.  A file read in place since the last pass
        (``used``) is moved to the back instead, once.  REQUIRES: the lock
        is held."""
        excess = len(self._lru) - self.max_open_files
        victims = []
        for _ in range(2):                  # the second pass finds the used bits cleared
            if excess <= 0:
                break
            for number, handle in list(self._lru.items()):
                if handle.users:
                    continue
                if handle.used:
                    handle.used = False
                    self._lru.move_to_end(number)
                    continue
                del self._lru[number]
                handle.retired.append(handle.file)
                handle.file = None
                victims.append(handle)
                excess -= 1
                if excess == 0:
                    break
        return victims

    def _close_evicted(self, handles: list[_Handle]) -> None:
        """Close the files ``_evict`` retired, but those an in-place read
        may still be using: the last such read closes them.  Without the
        lock (the closes may be slow)."""
        for handle in handles:
            if not handle.readers:
                self._close_retired(handle)

    def _close_retired(self, handle: _Handle) -> None:
        """Close the retired files of ``handle`` (once: whoever takes them
        under the lock closes them)."""
        with self._lock:
            files, handle.retired = handle.retired, []
        for file in files:
            file.close()

    async def _open_file(self, path: str) -> File:
        return await ops.open_file(path, os.O_RDONLY, direct=self.direct_io)
