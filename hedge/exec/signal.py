"""Signal: "something changed", announced from any thread, awaited by tasks
on any executor.

A Signal carries a generation number.  A task that wants to wait for a
condition reads the generation, checks the condition, and if it does not
hold awaits ``wait(generation)``, which returns as soon as the generation has
moved on (at once if it already has).  ``notify()`` bumps the generation and
resumes every waiter on its own executor.  No wake-up can be lost between
the check and the wait.

    while True:
        gen = signal.generation
        if condition():
            break
        await signal.wait(gen)
"""
from __future__ import annotations

import threading

from hedge.io.traps import suspend


class Signal:
    __slots__ = ("_lock", "generation", "_waiters")

    def __init__(self):
        self._lock = threading.Lock()
        self.generation = 0
        self._waiters: list = []

    def notify(self) -> None:
        """Any thread: bump the generation and wake every waiter."""
        with self._lock:
            self.generation += 1
            waiters, self._waiters = self._waiters, []
        for task in waiters:
            task.wake()

    async def wait(self, generation: int) -> None:
        """Return once ``self.generation != generation``."""
        if self.generation != generation:
            return

        def register(task) -> None:
            with self._lock:
                if self.generation == generation:
                    self._waiters.append(task)
                    return
            task.wake()

        await suspend(register)

    async def wait_for(self, predicate) -> None:
        """Wait until ``predicate()`` is true (checked after every notify)."""
        while True:
            gen = self.generation
            if predicate():
                return
            await self.wait(gen)
