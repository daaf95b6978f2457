"""Operation codes shared by the traps, the backends and the C helper.
The one definition: hedge/io/_build.py generates the C enum from ``Op``.
On-the-wire between Python and C: never renumber."""
from enum import IntEnum


class Op(IntEnum):
    NOP = 0
    READ = 1
    WRITE = 2
    READV = 3
    WRITEV = 4
    FSYNC = 5
    FDATASYNC = 6
    TIMEOUT = 7
    POLL = 8
    OPENAT = 9
    CLOSE = 10
    RENAMEAT = 11
    UNLINKAT = 12
    CANCEL = 13


OP_NAMES = {op.value: op.name.lower() for op in Op}

# Plain ints for the hot path (IntEnum attribute access is slower).
(NOP, READ, WRITE, READV, WRITEV, FSYNC, FDATASYNC, TIMEOUT, POLL, OPENAT, CLOSE, RENAMEAT, UNLINKAT,
 CANCEL) = (op.value for op in Op)

# Requests that may wait forever; cancelling their task cancels them in the kernel.
OPEN_ENDED = (TIMEOUT, POLL)

AT_FDCWD = -100
AT_REMOVEDIR = 0x200
