"""SubmitCounters: submission statistics every backend keeps, in the spirit
of PostgreSQL's pg_stat_aio.  Updated and read by the owning executor
thread (read elsewhere they are approximate, never torn)."""
from __future__ import annotations


class SubmitCounters:
    def __init__(self):
        self.stats_submitted = 0       # requests handed to the kernel (or the workers)
        self.stats_submit_batches = 0  # submit calls that carried at least one request
        self.stats_max_batch = 0
        self.stats_enter_calls = 0     # loop steps that entered the backend
        self.stats_wait_ns = 0         # time blocked waiting for completions or a wake-up
        self.stats_waits = 0

    def count_batch(self, n: int) -> None:
        if n:
            self.stats_submitted += n
            self.stats_submit_batches += 1
            if n > self.stats_max_batch:
                self.stats_max_batch = n

    def counters(self) -> dict:
        return {
            "sqes_submitted": self.stats_submitted,
            "submit_calls": self.stats_submit_batches,
            "enter_calls": self.stats_enter_calls,
            "max_batch": self.stats_max_batch,
            "wait_ns": self.stats_wait_ns,
            "waits": self.stats_waits,
        }
