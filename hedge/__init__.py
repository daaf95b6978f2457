"""hedge: a persistent key-value store whose every disk access is an io_uring
request issued from a coroutine.  See README.md and docs/."""
from hedge.errors import (
    AlignmentError,
    BackgroundError,
    Cancelled,
    ClosedError,
    CorruptionError,
    ForkError,
    HedgeError,
    HedgeIOError,
    LockError,
    ShortIOError,
    WrongThreadError,
)
from hedge.options import Options

__version__ = "0.1.0"
