"""Fork generation: lets executors, pools and databases tell that they were
created in a parent process.

After os.fork() only the forking thread exists in the child; the parent's
executor threads and rings are gone or shared with the parent.  Objects
record ``generation()`` when created and raise ForkError when it changed.
"""
import os

_generation = 0


def generation() -> int:
    return _generation


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)
