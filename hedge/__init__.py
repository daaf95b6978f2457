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
    ReadOnlyError,
    ShortIOError,
    WrongThreadError,
)
from hedge.options import Options

__version__ = "0.1.0"
from hedge.cursor import AsyncCursor, Cursor  # noqa: E402
from hedge.db import DB, AsyncDB, AsyncScan, ScanIterator, Snapshot, open  # noqa: E402,A004
from hedge.directory import destroy  # noqa: E402
from hedge.exec import gather, spawn  # noqa: E402
from hedge.lsm.batch import WriteBatch  # noqa: E402
from hedge.repair import RepairReport, repair  # noqa: E402

__all__ = [
    "open", "destroy", "repair", "RepairReport", "DB", "AsyncDB", "Snapshot", "ScanIterator", "AsyncScan", "Cursor",
    "AsyncCursor", "WriteBatch", "Options", "spawn", "gather",
    "HedgeError", "HedgeIOError", "ShortIOError", "AlignmentError", "CorruptionError", "LockError",
    "ReadOnlyError", "ClosedError", "ForkError", "BackgroundError", "WrongThreadError", "Cancelled",
]
