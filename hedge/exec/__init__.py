"""Executors: per-thread coroutine loops over one ring each, and the pools
that group them.  ``spawn`` and ``gather`` are for code running on an
executor."""
from collections.abc import Awaitable, Coroutine
from typing import Any

from hedge.errors import Cancelled
from hedge.exec.executor import Executor, current_executor, current_executor_or_none
from hedge.exec.task import Task
from hedge.io.traps import reschedule


def spawn(coro: Coroutine[Any, Any, Any], name: str | None = None) -> Task:
    """Start ``coro`` as a new task on the current executor; await the
    returned Task to join it.  REQUIRES: called on an executor thread."""
    return current_executor().spawn(coro, name)


async def checkpoint() -> None:
    """Let the other ready tasks of the current executor run before going
    on, when there are any; free when there are none (or when not on an
    executor).  An operation whose awaits all complete at once never gives
    its executor up, so a task doing such operations in a loop would keep
    every other task of its executor waiting: the database's coroutine
    operations end with a checkpoint."""
    executor = current_executor_or_none()
    if executor is not None and executor.others_ready():
        await reschedule()


async def gather(*coros: Awaitable[Any]) -> list[Any]:
    """Run ``coros`` concurrently on the current executor and return their
    results in order.  If any fails, the others still run to completion and
    the first failure is raised.  If the gathering task is cancelled, the
    children are cancelled and joined before Cancelled propagates."""
    executor = current_executor()
    tasks = [executor.spawn(c) for c in coros]
    results = [None] * len(tasks)
    first_exc = None
    try:
        for i, task in enumerate(tasks):
            try:
                results[i] = await task
            except Cancelled:
                if not task.cancelled():
                    raise
                if first_exc is None:
                    first_exc = task.exception()
            except Exception as e:  # noqa: BLE001 - re-raised below
                if first_exc is None:
                    first_exc = e
    except Cancelled:
        for task in tasks:
            task.cancel()
        for task in tasks:
            if not task.done():
                try:
                    await task
                except BaseException:  # noqa: BLE001 - being cancelled
                    pass
        raise
    if first_exc is not None:
        raise first_exc
    return results


__all__ = ["Executor", "Task", "spawn", "gather", "checkpoint", "current_executor", "current_executor_or_none"]
