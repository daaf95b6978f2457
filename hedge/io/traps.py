"""Traps: the only place that uses @types.coroutine.

A trap is the one point where a coroutine talks to the loop that drives it
(the executor, hedge/exec/executor.py): it yields a tuple whose first item
says what it wants, and the executor sends back the answer.  Everything else
awaitable in hedge is ordinary ``async def`` code built on these traps.

Protocol (the executor implements every case):
  (TRAP_IO, op, file, fd, obj, start, length, offset, flags)
      Stage one I/O request; resume with its raw result (>= 0, or -errno).
      ``file`` (a File or None) and ``obj`` (buffer/path/iovec source) are
      owned by the request until its completion arrives, even if the task is
      cancelled meanwhile.
  (TRAP_SUSPEND, register)
      Call ``register(task)`` and park the task until someone calls
      ``task.wake(value, exc)`` (from any thread).
  (TRAP_YIELD,)
      Let every other ready task run once, then continue.
Anything else a coroutine yields is not hedge's: the executor throws a
TypeError naming it back into the coroutine.
"""
import types

TRAP_IO = 0
TRAP_SUSPEND = 1
TRAP_YIELD = 2


@types.coroutine
def io_request(op, file, fd, obj, start, length, offset, flags):
    """Issue one request; return its raw result (negative is -errno)."""
    return (yield (TRAP_IO, op, file, fd, obj, start, length, offset, flags))


@types.coroutine
def suspend(register):
    """Park the current task after handing it to ``register``; return the
    value it is resumed with (or raise the exception it is resumed with)."""
    return (yield (TRAP_SUSPEND, register))


@types.coroutine
def reschedule():
    """Yield to the other ready tasks of this executor."""
    yield (TRAP_YIELD,)

