"""UringBackend: one io_uring ring, owned by one executor thread.

Requests are staged by packing them into a byte array laid out as an array
of ``hedge_req`` (hedge/io/_build.py); one ``hedge_enter`` call per loop step
turns the staged batch into SQEs, submits, optionally waits, and reaps every
available CQE.  When the staging array fills (the SQ size) it is flushed at
once without waiting.

Invariants:
  - Created on, and used only by, its owning thread (the ring is set up with
    IORING_SETUP_SINGLE_ISSUER / DEFER_TASKRUN when the kernel has them).
    ``wake()`` is the exception: any thread may call it.
  - At most ``capacity`` requests in flight (the executor enforces it); the
    completion queue holds capacity + 1 entries, the extra one for the
    wake-up poll on the eventfd (user_data 0), so a CQE is never dropped.
  - cffi objects made for a request (iovec arrays, path strings, timespecs,
    pointers into Python buffers) are kept in ``_keep`` until its CQE.
"""
from __future__ import annotations

import os
import select
import struct
import threading
import time

from hedge.errors import HedgeIOError, WrongThreadError
from hedge.io import opcodes as O
from hedge.io._uring import ffi, lib
from hedge.io.backend import SUBMIT_MIN
from hedge.io.buffer import Buffer
from hedge.io.counters import SubmitCounters

REQ = struct.Struct("=QQQiIIB3x")
CQE = struct.Struct("=QiI")
assert REQ.size == ffi.sizeof("hedge_req") and CQE.size == ffi.sizeof("hedge_cqe")

WAKE_UD = 0                 # the wake-up poll on the eventfd
CANCEL_UD = (1 << 64) - 1   # cancel requests; their own completions are dropped
BATCH_WAIT_NS = 200_000    # longest wait for a batch of completions beyond the first
_EFD_FLAGS = os.EFD_NONBLOCK | os.EFD_CLOEXEC
_WANT_FLAGS = lib.HEDGE_SETUP_SINGLE_ISSUER | lib.HEDGE_SETUP_DEFER_TASKRUN


class UringBackend(SubmitCounters):
    name = "io_uring"

    def __init__(self, entries: int, submit_min: int = SUBMIT_MIN):
        """``submit_min``: submit without waiting once this many requests
        are staged and at least half of the requests in the kernel;
        0 submits only when the SQ is full or no task is ready."""
        super().__init__()
        got = ffi.new("unsigned *")
        sq = ffi.new("unsigned *")
        cq = ffi.new("unsigned *")
        err = ffi.new("int *")
        ring = lib.hedge_ring_create(entries, _WANT_FLAGS, got, sq, cq, err)
        if ring == ffi.NULL:
            raise HedgeIOError(err[0], "io_uring_setup")
        self._ring = ring
        self._owner = threading.get_ident()
        self.setup_flags = got[0]
        self.sq_entries = sq[0]
        self.cq_entries = cq[0]
        # One CQE is kept for the wake-up poll and some for cancel requests.
        self._cancel_reserve = max(1, self.cq_entries // 16)
        self._cancels_in_flight = 0
        self.capacity = self.cq_entries - 1 - self._cancel_reserve
        self._reqbuf = bytearray(REQ.size * self.sq_entries)
        self._reqs = ffi.from_buffer("hedge_req[]", self._reqbuf)
        self._cqebuf = bytearray(CQE.size * self.cq_entries)
        self._cqes = ffi.from_buffer("hedge_cqe[]", self._cqebuf)
        self._cqeview = memoryview(self._cqebuf)
        self._n_prepped = ffi.new("unsigned *")
        self._err = ffi.new("int *")
        self._n = 0
        self.submit_min = submit_min
        self._submit_at = submit_min or self.sq_entries
        self._at_kernel = 0       # submitted requests whose CQE is not reaped yet (wake poll included)
        self._keep: dict[int, object] = {}
        # Requests that need not complete on their own (polls, timeouts): a
        # wait never counts on them.
        self._indefinite: set[int] = set()
        self._backlog: list = []
        self._efd = os.eventfd(0, _EFD_FLAGS)
        self._wake_armed = False
        self._cq_efd = -1         # registered with the ring by completion_fd()
        self._closed = False

    # -- staging -----------------------------------------------------------
    def stage(self, ud, op, fd, obj, start, length, offset, flags) -> None:
        if type(obj) is Buffer:
            addr = obj.address + start
        elif obj is None and op != O.TIMEOUT:
            addr = 0
        else:
            addr, offset, length = self._address_of(ud, op, obj, start, length, offset)
        if op == O.POLL or op == O.TIMEOUT:
            self._indefinite.add(ud)
        REQ.pack_into(self._reqbuf, self._n * 40, addr, offset, ud, fd, length, flags, op)
        n = self._n = self._n + 1
        if n >= self._submit_at or n == self.sq_entries:
            self._backlog.extend(self._enter(0, -1))

    def _address_of(self, ud, op, obj, start, length, offset):
        """Make the C-side argument for a request whose object is not a
        Buffer; keep what it points into alive until the completion."""
        if op == O.READ or op == O.WRITE:
            cdata = ffi.from_buffer(obj, require_writable=(op == O.READ))
            self._keep[ud] = cdata
            return int(ffi.cast("uintptr_t", cdata)) + start, offset, length
        if op == O.READV or op == O.WRITEV:
            bufs = [b.view if type(b) is Buffer else b for b in obj]
            iov = ffi.new("struct iovec[]", len(bufs))
            holders = []
            for i, b in enumerate(bufs):
                cdata = ffi.from_buffer(b, require_writable=(op == O.READV))
                holders.append(cdata)
                iov[i].iov_base = cdata
                iov[i].iov_len = len(cdata)
            self._keep[ud] = (iov, holders)
            return int(ffi.cast("uintptr_t", iov)), offset, len(bufs)
        if op == O.TIMEOUT:
            ts = ffi.new("struct __kernel_timespec *")
            ts.tv_sec, ts.tv_nsec = divmod(offset, 1_000_000_000)
            self._keep[ud] = ts
            return int(ffi.cast("uintptr_t", ts)), 0, 0
        if op == O.OPENAT or op == O.UNLINKAT:
            path = ffi.new("char[]", obj)
            self._keep[ud] = path
            return int(ffi.cast("uintptr_t", path)), offset, length
        if op == O.RENAMEAT:
            old = ffi.new("char[]", obj[0])
            new = ffi.new("char[]", obj[1])
            self._keep[ud] = (old, new)
            return int(ffi.cast("uintptr_t", old)), int(ffi.cast("uintptr_t", new)), 0
        raise ValueError(f"op {op} takes no object")

    # -- submit and reap ---------------------------------------------------
    def _enter(self, wait_nr: int, timeout_ns: int) -> list:
        if threading.get_ident() != self._owner:
            raise WrongThreadError("an io_uring ring was used from a thread other than its owner")
        n = self._n
        self.stats_enter_calls += 1
        count = lib.hedge_enter(self._ring, self._reqs, n, self._n_prepped, wait_nr, timeout_ns,
                                self._cqes, self.cq_entries, self._err)
        prepped = self._n_prepped[0]
        if prepped:
            self._at_kernel += prepped
            self.count_batch(prepped)
        if prepped < n:
            # The SQ was full of requests the kernel has not consumed yet;
            # keep the rest staged for the next call.
            self._reqbuf[0:(n - prepped) * 40] = self._reqbuf[prepped * 40:n * 40]
        self._n = n - prepped
        if self._err[0]:
            raise HedgeIOError(self._err[0], "io_uring_enter")
        self._at_kernel -= count
        # Early submission: once the staged requests reach half of what the
        # kernel already holds (at least submit_min), submit them without
        # waiting for the ready queue to drain.  A lightly loaded device gets
        # its requests at once; a deep queue gets them in batches, with the
        # next wait (which reaps a batch too: see enter).
        self._submit_at = max(self.submit_min, self._at_kernel >> 1) if self.submit_min else self.sq_entries
        if not count:
            return []
        out = []
        keep = self._keep
        indefinite = self._indefinite
        for ud, res, _flags in CQE.iter_unpack(self._cqeview[:count * 16]):
            if ud == CANCEL_UD:
                self._cancels_in_flight -= 1
                continue
            if ud == WAKE_UD:
                self._wake_armed = False
                try:
                    os.eventfd_read(self._efd)
                except BlockingIOError:
                    pass
                continue
            if keep:
                keep.pop(ud, None)
            if indefinite:
                indefinite.discard(ud)
            out.append((ud, res))
        return out

    def enter(self, wait: bool, timeout_ns: int = -1) -> list:
        backlog = self._backlog
        if backlog:
            self._backlog = []
            if wait:
                wait = False  # completions are already here
        if wait:
            if self._n >= self.sq_entries:
                self._backlog.extend(self._enter(0, -1))
                if self._backlog:
                    out, self._backlog = self._backlog, []
                    return out
            if not self._wake_armed:
                self._wake_armed = True
                REQ.pack_into(self._reqbuf, self._n * 40, 0, 0, WAKE_UD, self._efd, select.POLLIN, 0, O.POLL)
                self._n += 1
            # Wait for a quarter of the requests that complete on their own
            # (reads, writes, syncs: not polls, timeouts or the wake-up poll),
            # so a deep queue is reaped in batches, one enter per several
            # completions; a short one still returns at the first.  The
            # batch wait is bounded by BATCH_WAIT_NS.
            wait_nr = self.wait_target()
            if wait_nr > 1 and (timeout_ns < 0 or timeout_ns > BATCH_WAIT_NS):
                timeout_ns = BATCH_WAIT_NS
            t0 = time.perf_counter_ns()
            out = self._enter(wait_nr, timeout_ns)
            self.stats_wait_ns += time.perf_counter_ns() - t0
            self.stats_waits += 1
        else:
            out = self._enter(0, -1)
        if backlog:
            backlog.extend(out)
            return backlog
        return out

    def wait_target(self) -> int:
        """How many completions a wait asks for: a quarter of the requests
        (staged or in the kernel) that complete on their own, or 1 when
        fewer than 8 are."""
        finite = self._at_kernel + self._n - len(self._indefinite) - self._wake_armed - self._cancels_in_flight
        return finite >> 2 if finite >= 8 else 1

    def cancel(self, ud: int) -> None:
        """Ask the kernel to cancel request ``ud`` (best effort); its own
        completion then arrives with -ECANCELED (or its normal result if it
        finished first).  Skipped when the CQEs kept for cancels are all in
        use: the request then simply runs to its end."""
        if self._cancels_in_flight >= self._cancel_reserve:
            return
        self._cancels_in_flight += 1
        if self._n >= self.sq_entries:
            self._backlog.extend(self._enter(0, -1))
        REQ.pack_into(self._reqbuf, self._n * 40, 0, ud, CANCEL_UD, -1, 0, 0, O.CANCEL)
        self._n += 1

    def wake(self) -> None:
        try:
            os.eventfd_write(self._efd, 1)
        except OSError:
            pass

    def completion_fd(self) -> int:
        """An eventfd the kernel signals whenever it posts a completion
        (io_uring_register_eventfd); registered on first call."""
        if self._cq_efd < 0:
            fd = os.eventfd(0, _EFD_FLAGS)
            ret = lib.io_uring_register_eventfd(self._ring, fd)
            if ret < 0:
                os.close(fd)
                raise HedgeIOError(-ret, "io_uring_register_eventfd")
            self._cq_efd = fd
        return self._cq_efd

    def ack_completion_fd(self) -> None:
        try:
            os.eventfd_read(self._cq_efd)
        except BlockingIOError:
            pass

    def set_submit_min(self, n: int) -> None:
        self.submit_min = n
        self._submit_at = max(n, self._at_kernel >> 1) if n else self.sq_entries

    def next_deadline(self) -> float | None:
        return None     # timeouts are kernel requests

    def info(self) -> dict:
        flags = []
        if self.setup_flags & lib.HEDGE_SETUP_SINGLE_ISSUER:
            flags.append("SINGLE_ISSUER")
        if self.setup_flags & lib.HEDGE_SETUP_DEFER_TASKRUN:
            flags.append("DEFER_TASKRUN")
        return {"method": self.name, "capacity": self.capacity, "sq_entries": self.sq_entries,
                "cq_entries": self.cq_entries, "setup_flags": flags}

    def close(self) -> None:
        """REQUIRES: nothing in flight but the wake-up poll."""
        if self._closed:
            return
        self._closed = True
        lib.hedge_ring_destroy(self._ring)
        self._ring = ffi.NULL
        os.close(self._efd)
        if self._cq_efd >= 0:
            os.close(self._cq_efd)
        self._keep.clear()
