"""Group commit: concurrent writers share one WAL write and one fdatasync.

Writers queue up from any thread: a caller's thread running the blocking
API, an asyncio loop thread, a foreground executor.  A writer that finds no
leader and an empty queue leads at once, without parking.  Otherwise the
first writer to find no leader becomes the leader: it takes every queued writer (itself first) as a
group, hands the group to ``commit_group`` (one WAL record, one fdatasync if
any writer asked for sync, memtable inserts), then resumes each follower
with its outcome and passes leadership to the first writer still queued.
A writer is acknowledged only after its group is written (and synced when
asked); a failure of the group fails every writer in it.

A follower parks its task; the leader wakes it with ``Task.wake``: a
follower on another thread sleeps in its own ring until the wake-up (an
eventfd write the ring polls, or a call into its asyncio loop), one on the
leader's executor is simply made ready.

Gathering: writers that are coroutines of one executor never overlap on
their own (a write that does not wait runs from start to end before the
next task runs), so each would lead a group of one and pay one WAL write.
A writer that could lead at once but sees other tasks ready on its
executor therefore takes the lead, queues itself first and yields once:
the ready tasks run up to their own writes, queue behind it, and the group
commits them all with one WAL write.  The latency this adds is the one
turn of the other tasks that every coroutine operation gives anyway (its
closing checkpoint).

Invariants: at most one leader at a time, so ``commit_group`` never runs
concurrently with itself; a writer is in exactly one group; a group holds
at most MAX_GROUP_BYTES of batches beyond its first writer.
"""
from __future__ import annotations

import threading
from collections import deque

from hedge.errors import Cancelled, HedgeError
from hedge.exec.executor import current_executor_or_none
from hedge.io.traps import reschedule, suspend

_LEAD = "lead"
_DONE = "done"

# A leader stops taking followers into its group past this many bytes.
MAX_GROUP_BYTES = 4 << 20


class Writer:
    __slots__ = ("batch", "sync", "rotate", "task", "role", "error", "first_seq")

    def __init__(self, batch, sync: bool, rotate: bool = False):
        self.batch = batch
        self.sync = sync
        self.rotate = rotate      # ask for a memtable switch (flush request)
        self.task = None
        self.role = None          # _LEAD or _DONE once decided (under the queue lock)
        self.error: BaseException | None = None
        self.first_seq = 0


class CommitQueue:
    def __init__(self, commit_group, on_idle=None):
        self._commit_group = commit_group
        self._on_idle = on_idle     # called, outside the lock, each time the queue goes idle
        self._lock = threading.Lock()
        self._queue: deque[Writer] = deque()
        self._leader_busy = False
        self.groups = 0
        self.writers = 0

    @property
    def busy(self) -> bool:
        return self._leader_busy or bool(self._queue)

    def _enqueue(self, task, writer: Writer) -> None:
        # Runs inside the trap, on the writer's executor, before it parks.
        with self._lock:
            writer.task = task
            self._queue.append(writer)
            if not self._leader_busy:
                self._leader_busy = True
                writer.role = _LEAD
        if writer.role is not None:
            task.wake()

    def _park(self, task, writer: Writer) -> None:
        with self._lock:
            writer.task = task
            decided = writer.role is not None
        if decided:
            task.wake()

    def _decide(self, writer: Writer, role: str) -> None:
        with self._lock:
            writer.role = role
            task = writer.task
        task.wake()

    async def submit(self, writer: Writer) -> None:
        """Commit ``writer``; return when its group is durable as asked, or
        raise the group's error.  A queued write cannot be withdrawn: a
        writer cancelled while queued waits for its outcome, then raises
        Cancelled."""
        cancelled = None
        if self.try_lead():
            executor = current_executor_or_none()
            if executor is None or not executor.others_ready():
                # Nobody else is writing or about to: lead a group of one,
                # without parking and without the queue; its error is the
                # caller's own.
                try:
                    await self._commit_group((writer,))
                finally:
                    self.release_lead()
                return
            # Other tasks of this executor are ready: let them queue behind
            # this leader before the group is taken (module docstring).
            with self._lock:
                writer.role = _LEAD
                self._queue.appendleft(writer)
            try:
                await reschedule()
            except Cancelled as e:
                cancelled = e       # the lead is taken: the group is still committed
        else:
            try:
                await suspend(lambda task: self._enqueue(task, writer))
            except Cancelled as e:
                cancelled = e
        while writer.role is None:
            try:
                await suspend(lambda task: self._park(task, writer))
            except Cancelled as e:
                cancelled = e
        if writer.role == _LEAD:
            await self._lead(writer)
        if cancelled is not None:
            raise cancelled
        if writer.error is not None:
            raise writer.error

    async def _lead(self, me: Writer) -> None:
        with self._lock:
            group = [self._queue.popleft()]
            size = group[0].batch.byte_size()
            while self._queue and size < MAX_GROUP_BYTES:
                nxt = self._queue.popleft()
                size += nxt.batch.byte_size()
                group.append(nxt)
        assert group[0] is me
        try:
            await self._commit_group(group)
        except BaseException as e:  # noqa: BLE001 - every writer of the group gets it
            me.error = e
            if isinstance(e, Cancelled):
                # The leader was cancelled mid-commit; the group's outcome is
                # unknown (like a crash), which the followers must be told.
                e = HedgeError("the group commit was interrupted (its leader was cancelled); "
                               "the write may or may not have been applied")
            for w in group[1:]:
                if w.error is None:
                    w.error = e
        finally:
            self.groups += 1
            self.writers += len(group)
            if len(group) > 1:
                # One lock for the whole group; every follower was queued
                # (its task set) before the group was taken.
                with self._lock:
                    for w in group[1:]:
                        w.role = _DONE
                for w in group[1:]:
                    w.task.wake()
            self._hand_over()

    def try_lead(self) -> bool:
        """Become the leader of a group of one at once, when nobody leads and
        nobody waits; then ``release_lead`` must follow.  For a writer that
        commits without awaiting (Engine.write_now)."""
        with self._lock:
            if self._leader_busy or self._queue:
                return False
            self._leader_busy = True
            return True

    def release_lead(self) -> None:
        """End a ``try_lead`` group of one."""
        self.groups += 1
        self.writers += 1
        self._hand_over()

    def _hand_over(self) -> None:
        """The leader is done: the first queued writer leads next, or
        nobody does."""
        with self._lock:
            nxt = self._queue[0] if self._queue else None
            if nxt is None:
                self._leader_busy = False
        if nxt is not None:
            self._decide(nxt, _LEAD)
        elif self._on_idle is not None:
            self._on_idle()
