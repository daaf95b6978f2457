"""Group commit: concurrent writers share one WAL write and one fdatasync.

Writers queue up (from any foreground thread).  The first writer to find no
leader becomes the leader: it takes every queued writer (itself first) as a
group, hands the group to ``commit_group`` (one WAL record, one fdatasync if
any writer asked for sync, memtable inserts), then resumes each follower
with its outcome and passes leadership to the first writer still queued.
A writer is acknowledged only after its group is written (and synced when
asked); a failure of the group fails every writer in it.

Invariants: at most one leader at a time, so ``commit_group`` never runs
concurrently with itself; a writer is in exactly one group.
"""
from __future__ import annotations

import threading
from collections import deque

from hedge.errors import Cancelled, HedgeError
from hedge.io.traps import suspend

_LEAD = "lead"
_DONE = "done"


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
    def __init__(self, commit_group, max_group_bytes: int = 4 << 20):
        self._commit_group = commit_group
        self._max_group_bytes = max_group_bytes
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
            task._executor.resume(task)

    def _park(self, task, writer: Writer) -> None:
        with self._lock:
            writer.task = task
            decided = writer.role is not None
        if decided:
            task._executor.resume(task)

    def _decide(self, writer: Writer, role: str) -> None:
        with self._lock:
            writer.role = role
            task = writer.task
        task._executor.resume_threadsafe(task)

    async def submit(self, writer: Writer) -> None:
        """Commit ``writer``; return when its group is durable as asked, or
        raise the group's error.  A queued write cannot be withdrawn: a
        writer cancelled while queued waits for its outcome, then raises
        Cancelled."""
        cancelled = None
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
            while self._queue and size < self._max_group_bytes:
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
            for w in group[1:]:
                self._decide(w, _DONE)
            with self._lock:
                nxt = self._queue[0] if self._queue else None
                if nxt is None:
                    self._leader_busy = False
            if nxt is not None:
                self._decide(nxt, _LEAD)
