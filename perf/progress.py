"""Progress of a phase on stderr: a live bar with the current ops/s when
stderr is a terminal (or when forced), and one summary line per phase always,
so CI logs stay readable.

A ``Progress`` polls a callable that returns the operations done so far from a
daemon thread of its own; the clients only bump plain counters.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

MODES = ("auto", "always", "never")
_INTERVAL = 0.25
_WIDTH = 30


def live_wanted(mode: str, stream: TextIO) -> bool:
    """Whether a live bar should be drawn on ``stream`` under ``mode``."""
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}")
    if mode == "auto":
        return stream.isatty()
    return mode == "always"


class Progress:
    """One phase's progress.  Use as a context manager around the phase."""

    def __init__(self, label: str, total: int, done: Callable[[], int], live: bool,
                 stream: TextIO = sys.stderr):
        self.label = label
        self.total = max(total, 1)
        self._done = done
        self._live = live
        self._stream = stream
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> "Progress":
        self._started = time.perf_counter()
        if self._live:
            self._thread = threading.Thread(target=self._draw_loop, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._stream.write("\r\033[K")
            self._stream.flush()

    def _draw_loop(self) -> None:
        last_done, last_time = 0, self._started
        while not self._stop.wait(_INTERVAL):
            now, done = time.perf_counter(), self._done()
            rate = (done - last_done) / max(now - last_time, 1e-9)
            last_done, last_time = done, now
            fraction = min(done / self.total, 1.0)
            filled = int(fraction * _WIDTH)
            bar = "=" * filled + (">" if filled < _WIDTH else "") + " " * (_WIDTH - filled - 1)
            self._stream.write(f"\r\033[K{self.label:<18} [{bar}] {fraction * 100:5.1f}% "
                               f"{done:>10,} ops {rate:>10,.0f} ops/s {now - self._started:6.1f} s")
            self._stream.flush()

    def summary(self, operations: int, elapsed: float, extra: str = "") -> None:
        """The phase's one line: operations, time, throughput."""
        rate = operations / elapsed if elapsed > 0 else 0.0
        self._stream.write(f"{self.label:<18} {operations:>10,} ops in {elapsed:7.2f} s "
                           f"{rate:>10,.0f} ops/s{extra}\n")
        self._stream.flush()
