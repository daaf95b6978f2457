"""TableCache: the open tables of one database.

``open(number)`` opens a table file and reads its metadata (footer, index,
bloom filter) into a TableReader; the cache keeps the file so that it can
close it at ``close``.  A table leaves through ``drop`` once the version no
longer holds it: a reader still holding an older super version may go on
reading it (its file is unlinked, not closed), and the descriptor is closed
when the last reference to the reader goes.  ``discard`` closes a table
that was opened but never published (a failed install).

Threads: any executor thread may call ``open`` (the block cache it hands to
readers is thread-safe); ``drop``/``discard``/``close`` run under the GIL
without awaiting, from the thread that installs versions or closes the
database.
"""
from __future__ import annotations

from hedge.io.file import File
from hedge.lsm import filenames
from hedge.lsm.cache import BlockCache
from hedge.lsm.table import TableReader
from hedge.lsm.table_io import open_table


class TableCache:
    def __init__(self, directory: str, direct_io: bool, block_cache: BlockCache | None):
        self.directory = directory
        self.direct_io = direct_io
        self.block_cache = block_cache
        self._files: dict[int, File] = {}

    def path(self, number: int) -> str:
        return filenames.join(self.directory, filenames.table_name(number))

    async def open(self, number: int) -> TableReader:
        """Open table ``number``; return its reader.  Raises
        CorruptionError, HedgeIOError."""
        reader, file = await open_table(self.path(number), number, self.direct_io, self.block_cache)
        old = self._files.pop(number, None)
        if old is not None:
            old.close()
        self._files[number] = file
        return reader

    def drop(self, number: int) -> None:
        """Forget table ``number`` (no longer in the version); readers of
        older super versions keep its file until they let go of it."""
        self._files.pop(number, None)

    def discard(self, number: int) -> None:
        """Close table ``number`` now (opened, never published)."""
        file = self._files.pop(number, None)
        if file is not None:
            file.close()

    def __len__(self) -> int:
        return len(self._files)

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()
