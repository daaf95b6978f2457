"""TableReader: an open table, answering point lookups and ordered scans.

Opening reads the file's tail (the footer page, plus the pages holding the
index, bloom filter and properties when they reach further back), verifies
every checksum and keeps those three sections in memory.  After that a point
lookup is a bisect over the in-memory index and at most one block: from the
block cache, or, unless the bloom filter rules the key out, one page-aligned
read of whole pages (O_DIRECT-friendly).  Layout: docs/format/table.md.

A compressed table (format version 2) stores its blocks back to back: a
block's ``(offset, length)`` in the index is then where its stored bytes
are, and the read covers the whole pages that hold them.  The block is
checked, decompressed and verified once, when it is read; the cache holds
the decoded block, so a hit costs no decompression.

``get_cached`` is the synchronous part of ``get``: it answers from memory
(key range, bloom filter, index, cached block) or returns ``NOT_CACHED``
when the answer needs a block read; ``get`` awaits only in that case.  A block found
in the cache for a scan is replaced there, on that first hit, by its
decoded copy (``Block.decoded``), so later scans take its entries as they
are and lookups in it search with ``bisect``.  A point lookup never decodes
a block: the decoding costs more than it saves a lookup, and a decoded
block takes more of the cache (hedge/lsm/block.py).

The reader does no I/O of its own: it is given ``read(offset, length)``, an
async callable returning ``length`` bytes at ``offset`` (the engine passes one
that goes through the ring).  Every offset and length it asks for is a
multiple of 4096.  A reader is immutable after ``open`` and may be used by
several executor threads at once (each call awaits only its own ``read``;
the cache is thread-safe).
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from hedge.errors import CorruptionError
from hedge.lsm import compression
from hedge.lsm.block import Block
from hedge.lsm.bloom import BloomFilter
from hedge.lsm.cache import FILL, GET_FILL, TABLE_SHIFT, BlockCache, cache_key
from hedge.lsm.keys import MAX_SEQ, Kind
from hedge.lsm.table.format import (
    FOOTER_BYTES,
    PAGE,
    Footer,
    Section,
    TableProperties,
    decode_index,
    xxh3_64,
)

ReadFn = Callable[[int, int], Awaitable[bytes]]
# ``(offset, length) -> bytes | None``: the bytes when they can be had
# without waiting for the device (the page cache holds them), else None.
ReadNowFn = Callable[[int, int], "bytes | None"]


class _NotCached:
    """The type of ``NOT_CACHED``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_CACHED"


# What get_cached returns when the answer needs a block that is not cached.
NOT_CACHED = _NotCached()


class TableReader:
    """One open table.  Build it with ``await TableReader.open(...)``."""

    __slots__ = ("_read", "_read_now", "file_name", "table_id", "file_size", "_cache", "_keys", "_seqs",
                 "_offsets", "_lengths", "_key_base", "_cache_keys", "_bloom", "_may_contain", "_smallest", "_largest",
                 "properties", "footer", "_packed")

    def __init__(self, read: ReadFn, file_name: str, table_id: int, file_size: int, cache: BlockCache | None,
                 index: tuple[list[bytes], list[int], list[int], list[int]], bloom: BloomFilter,
                 properties: TableProperties, footer: Footer, read_now: ReadNowFn | None = None):
        """Private: use ``open``."""
        self._read = read
        self._read_now = read_now
        self.file_name = file_name
        self.table_id = table_id
        self.file_size = file_size
        self._cache = cache if cache is not None and cache.capacity > 0 else None
        self._keys, self._seqs, self._offsets, self._lengths = index
        # The block cache's key of each block, built once (a lookup makes none).
        self._key_base = cache_key(table_id, 0)
        self._cache_keys = [self._key_base | offset for offset in self._offsets] if self._cache is not None else []
        self._bloom = bloom
        self._may_contain = bloom.may_contain
        self.properties = properties
        self._smallest = properties.smallest_key
        self._largest = properties.largest_key
        # Format version and compression codec (Footer.packed: stored blocks).
        self.footer = footer
        self._packed = footer.packed        # read per block: an attribute, not the property

    @staticmethod
    def footer_read_range(file_size: int) -> tuple[int, int]:
        """The page-aligned ``(offset, length)`` holding the footer: the last
        page.  Raises CorruptionError (no file name) when file_size cannot be
        a table's size (not a positive multiple of 4096, or over 1 TiB: the
        block cache keeps offsets in TABLE_SHIFT bits)."""
        if file_size < PAGE or file_size % PAGE:
            raise CorruptionError(None, file_size, f"table size {file_size} is not a positive multiple of {PAGE}: truncated?")
        if file_size > 1 << TABLE_SHIFT:
            raise CorruptionError(None, file_size, f"table size {file_size} is over the {1 << TABLE_SHIFT} bytes a table may hold")
        return file_size - PAGE, PAGE

    @classmethod
    async def open(cls, read: ReadFn, file_size: int, file_name: str, table_id: int,
                   cache: BlockCache | None = None, read_now: ReadNowFn | None = None) -> "TableReader":
        """Read and verify the footer, index, bloom filter and properties.

        Raises CorruptionError(file_name, offset, ...) for a truncated file,
        bad magic, unknown format version, any checksum mismatch or an
        inconsistent section; HedgeIOError from ``read`` passes through.
        """
        try:
            tail_off, tail_len = cls.footer_read_range(file_size)
        except CorruptionError as e:
            raise CorruptionError(file_name, e.offset, e.detail) from None
        tail = _exact(await read(tail_off, tail_len), tail_off, tail_len, file_name)
        footer_off = file_size - FOOTER_BYTES
        footer = Footer.decode(memoryview(tail)[PAGE - FOOTER_BYTES:], file_name, footer_off)
        sections = (footer.index, footer.bloom, footer.properties)
        meta_start = footer.index.offset
        for s in sections:
            if s.offset < meta_start or s.length <= 0 or s.offset + s.length > footer_off:
                raise CorruptionError(file_name, footer_off, f"footer names section ({s.offset}, {s.length}) outside the table's metadata")
        if meta_start % PAGE:
            raise CorruptionError(file_name, footer_off, f"index offset {meta_start} is not page-aligned")
        if meta_start < tail_off:
            meta_len = tail_off - meta_start
            meta = _exact(await read(meta_start, meta_len), meta_start, meta_len, file_name) + tail
        else:
            meta = tail
        view = memoryview(meta)
        base = min(meta_start, tail_off)

        def section(s: Section, name: str) -> memoryview:
            data = view[s.offset - base : s.offset - base + s.length]
            actual = xxh3_64(data)
            if actual != s.checksum:
                raise CorruptionError(file_name, s.offset, f"{name} checksum mismatch (stored {s.checksum:#018x}, computed {actual:#018x})")
            return data

        index = decode_index(bytes(section(footer.index, "index")), file_name, footer.index.offset, meta_start,
                             footer.packed)
        bloom = BloomFilter(section(footer.bloom, "bloom filter"), file_name, footer.bloom.offset)
        props = TableProperties.decode(section(footer.properties, "properties"), file_name, footer.properties.offset)
        keys = index[0]
        if (props.file_size != file_size or props.block_count != len(keys) or not keys
                or props.data_bytes != meta_start
                or props.largest_key != keys[-1] or props.smallest_key > props.largest_key):
            raise CorruptionError(file_name, footer.properties.offset, "properties disagree with the index or the file size")
        return cls(read, file_name, table_id, file_size, cache, index, bloom, props, footer, read_now)

    @property
    def smallest_key(self) -> bytes:
        return self._smallest

    @property
    def largest_key(self) -> bytes:
        return self._largest

    @property
    def block_count(self) -> int:
        return len(self._keys)

    def approximate_bytes(self, start_key: bytes | None, end_key: bytes | None) -> int:
        """The bytes of the file that keys in [start_key, end_key) take,
        from the in-memory index (no I/O): whole blocks, from the first
        block that may hold start_key to the first that may hold end_key;
        the whole file (metadata included) when the range covers the table.
        LevelDB's ApproximateOffsetOf, per table."""
        keys, offsets = self._keys, self._offsets
        data_end = self.properties.data_bytes
        if start_key is None or start_key <= self._smallest:
            low = 0
        else:
            i = bisect_left(keys, start_key)
            low = offsets[i] if i < len(keys) else data_end
        if end_key is None or end_key > self._largest:
            high = self.file_size if low == 0 else data_end
        else:
            i = bisect_left(keys, end_key)
            high = offsets[i] if i < len(keys) else data_end
        return max(high - low, 0)

    def may_contain(self, key: bytes) -> bool:
        """False when the table certainly holds no version of ``key`` (out of
        its key range or rejected by the bloom filter)."""
        return self._smallest <= key <= self._largest and self._may_contain(key)

    def _block_index(self, key: bytes, snapshot_seq: int) -> int:
        """Index of the first block whose last entry is at or after
        ``(key, snapshot_seq)`` in entry order; len(blocks) when none."""
        keys = self._keys
        seqs = self._seqs
        i = bisect_left(keys, key)
        n = len(keys)
        # Versions of one key may span blocks: skip blocks that end with a
        # version of key newer than the snapshot.
        while i < n and seqs[i] > snapshot_seq and keys[i] == key:
            i += 1
        return i

    def block_range_for(self, key: bytes, snapshot_seq: int = MAX_SEQ) -> tuple[int, int] | None:
        """The ``(offset, length)`` (page-aligned unless compressed) of the
        one block a ``get`` of
        ``key`` at ``snapshot_seq`` would read, or None when the table
        certainly lacks the key (``may_contain`` is False) or holds no
        version old enough."""
        if not self.may_contain(key):
            return None
        i = self._block_index(key, snapshot_seq)
        if i == len(self._keys):
            return None
        return self._offsets[i], self._lengths[i]

    def block_ranges(self, start_key: bytes | None = None, end_key: bytes | None = None) -> list[tuple[int, int]]:
        """The ``(offset, length)`` of every block ``iter_from(start_key,
        end_key)`` reads, in file order (for read-ahead)."""
        first, last = self._block_span(start_key, end_key)
        return [(self._offsets[i], self._lengths[i]) for i in range(first, last)]

    def iter_block_ranges(self, start_key: bytes | None = None,
                          end_key: bytes | None = None) -> Iterator[tuple[int, int]]:
        """Like ``block_ranges``, lazily: a short scan of a large table does
        not build the list of every block to its end."""
        first, last = self._block_span(start_key, end_key)
        offsets, lengths = self._offsets, self._lengths
        for i in range(first, last):
            yield offsets[i], lengths[i]

    def iter_block_ranges_reverse(self, start_key: bytes | None = None,
                                  end_key: bytes | None = None) -> Iterator[tuple[int, int]]:
        """The ranges of ``iter_block_ranges``, last block first (reverse
        scans)."""
        first, last = self._block_span(start_key, end_key)
        offsets, lengths = self._offsets, self._lengths
        for i in range(last - 1, first - 1, -1):
            yield offsets[i], lengths[i]

    def _block_span(self, start_key: bytes | None, end_key: bytes | None) -> tuple[int, int]:
        keys = self._keys
        first = 0 if start_key is None else bisect_left(keys, start_key)
        if end_key is None:
            return first, len(keys)
        # Block i holds keys after keys[i-1]; it is needed while keys[i-1] < end_key.
        last = bisect_left(keys, end_key) + 1
        return first, min(last, len(keys))

    def get_cached(self, key: bytes, snapshot_seq: int) -> tuple[int, Kind, bytes] | None | _NotCached:
        """``get``'s answer when it needs no ring read (the key's block is
        in the block cache, or the page cache holds it and the reader has a
        ``read_now``), else NOT_CACHED: the block must be read through the
        ring (``await get_uncached``).  Never suspends; safe on any thread.
        Raises CorruptionError and HedgeIOError from a block read in place.

        The bloom filter is asked only when the key's block is not cached:
        a cached block answers for certain, at about the cost of one absent
        key's probes and a fraction of a present key's (all seven)."""
        if not (self._smallest <= key <= self._largest):
            return None
        keys = self._keys
        i = bisect_left(keys, key)
        # Inlined _block_index (this is the hot path).  i < len(keys): key
        # is at most the largest key, the last block's last key.
        if keys[i] == key:
            n = len(keys)
            seqs = self._seqs
            while seqs[i] > snapshot_seq:
                i += 1
                if i == n or keys[i] != key:
                    break
            if i == n:
                return None
        cache = self._cache
        if cache is not None:
            ckey = self._cache_keys[i]
            block = cache.get(ckey)
            if block is not None:
                return block.get(key, snapshot_seq)
        if not self._may_contain(key):
            return None
        if self._read_now is not None:
            block = self._load_now(self._offsets[i], self._lengths[i], GET_FILL)
            if block is not None:
                return block.get(key, snapshot_seq)
        return NOT_CACHED

    async def get(self, key: bytes, snapshot_seq: int) -> tuple[int, Kind, bytes] | None:
        """The newest version of ``key`` with seq <= snapshot_seq as ``(seq,
        kind, value)``, or None when the table has none.  A DELETE result
        means the key is deleted as of that version.  Reads at most one
        block, and awaits nothing when the answer is in memory.  Raises
        CorruptionError for a damaged block."""
        found = self.get_cached(key, snapshot_seq)
        if found is not NOT_CACHED:
            return found
        return await self.get_uncached(key, snapshot_seq)

    async def get_uncached(self, key: bytes, snapshot_seq: int) -> tuple[int, Kind, bytes] | None:
        """``get``'s answer read from the file: what follows a ``get_cached``
        that returned NOT_CACHED (the key's block is read, verified and
        offered to the cache's get admission, even if another lookup cached
        it meanwhile).  REQUIRES:
        ``may_contain(key)``.  Raises CorruptionError for a damaged block."""
        i = self._block_index(key, snapshot_seq)
        block = await self._load(self._offsets[i], self._lengths[i], GET_FILL, False)
        return block.get(key, snapshot_seq)

    def _decode_cached(self, ckey: int, block: Block) -> Block:
        """On a block's first cache hit by a scan: its decoded copy, put in
        the cache in its place."""
        decoded = block.decoded()
        self._cache.replace(ckey, block, decoded)
        return decoded

    def _load_now(self, offset: int, length: int, fill_cache: int) -> Block | None:
        """The block at ``(offset, length)`` read, verified and offered to
        the cache like ``_load``'s, when the page cache holds it (the
        reader's ``read_now``), else None.  Never suspends.
        REQUIRES: the reader has a ``read_now``."""
        # A packed table's block is read in the whole pages holding it.
        start, span = page_span(offset, length) if self._packed else (offset, length)
        data = self._read_now(start, span)
        if data is None:
            return None
        if span != length:
            data = data[offset - start : offset - start + length]
        return self.decode_block(offset, data, fill_cache)

    async def _load(self, offset: int, length: int, fill_cache: int, now: bool = True) -> Block:
        """The block at ``(offset, length)`` read and verified (``decode_block``):
        in place when ``now`` and the page cache holds it, else through the
        ring.  Raises CorruptionError, HedgeIOError."""
        if now and self._read_now is not None:
            block = self._load_now(offset, length, fill_cache)
            if block is not None:
                return block
        start, span = page_span(offset, length) if self._packed else (offset, length)
        data = _exact(await self._read(start, span), start, span, self.file_name)
        if span != length:
            data = data[offset - start : offset - start + length]
        return self.decode_block(offset, data, fill_cache)

    def decode_block(self, offset: int, data: bytes, fill_cache: int = True) -> Block:
        """Verify the block read at ``offset`` (``data``: its ``length``
        bytes from the index; in a compressed table its stored bytes, which
        are checked and decompressed here) and put the decoded block in the
        cache as ``fill_cache`` says: NO_FILL (False), FILL (True), or
        SCAN_FILL or GET_FILL, when that admission of the cache takes it
        (hedge/lsm/cache.py).  Raises CorruptionError."""
        if self._packed:
            data = compression.load(data, self.file_name, offset)
        block = Block(data, self.file_name, offset)
        cache = self._cache
        if fill_cache and cache is not None and (fill_cache == FILL or cache.admissions[fill_cache].admit()):
            cache.insert(self._key_base | offset, block, fill_cache)
        return block

    async def read_block(self, offset: int, length: int, fill_cache: int = True) -> Block:
        """The block at ``(offset, length)`` (one of ``block_ranges``), from
        the cache or read and verified."""
        cache = self._cache
        if cache is not None:
            ckey = self._key_base | offset
            block = cache.get(ckey)
            if block is not None:
                if not block.is_decoded:
                    block = self._decode_cached(ckey, block)
                return block
        return await self._load(offset, length, fill_cache)

    def read_blocks_now(self, ranges: list[tuple[int, int]], fill_cache: int = True) -> list[Block] | None:
        """The blocks at ``ranges`` (consecutive entries of
        ``block_ranges``, in file order), each from the cache or read in
        place when the page cache holds it (the reader's ``read_now``):
        the blocks missing from the cache that follow each other in the
        file are read with one ``read_now`` covering their pages
        (read-ahead for scans).  None, when one is in neither: the caller
        then reads them through the ring with ``read_blocks`` (which finds
        in the cache those admitted meanwhile).  Never suspends."""
        blocks, missing = self._cached_blocks(ranges)
        if missing:
            if self._read_now is None:
                return None
            for run in _adjacent_runs(missing):
                if not self._load_run_now(ranges, run, blocks, fill_cache):
                    return None
        return blocks

    async def read_blocks(self, ranges: list[tuple[int, int]], fill_cache: int = True) -> list[Block]:
        """``read_blocks_now``'s blocks, those missing from the cache read
        through the ring, never in place (what follows a
        ``read_blocks_now`` that returned None)."""
        blocks, missing = self._cached_blocks(ranges)
        for run in _adjacent_runs(missing):
            await self._load_run(ranges, run, blocks, fill_cache)
        return blocks

    def _cached_blocks(self, ranges: list[tuple[int, int]]) -> tuple[list, list[int]]:
        """The blocks at ``ranges`` that the cache holds (None for the
        others, in a list as long as ``ranges``), and the indexes of the
        others.  A block a scan finds undecoded is decoded, and cached so
        (``_decode_cached``)."""
        cache = self._cache
        blocks: list = [None] * len(ranges)
        if cache is None:
            return blocks, list(range(len(ranges)))
        missing: list[int] = []
        key_base = self._key_base
        for i, (offset, _length) in enumerate(ranges):
            ckey = key_base | offset
            block = cache.get(ckey)
            if block is not None:
                blocks[i] = block if block.is_decoded else self._decode_cached(ckey, block)
            else:
                missing.append(i)
        return blocks, missing

    def _load_run_now(self, ranges: list[tuple[int, int]], run: list[int], blocks: list, fill_cache: int) -> bool:
        """Read the blocks ``ranges[i] for i in run`` (adjacent in the
        file) in place into ``blocks``, with one ``read_now`` of the pages
        covering them; whether the page cache held them all.
        REQUIRES: the reader has a ``read_now``."""
        if len(run) == 1:
            offset, length = ranges[run[0]]
            block = self._load_now(offset, length, fill_cache)
            if block is None:
                return False
            blocks[run[0]] = block
            return True
        start, span = _run_span(ranges, run)
        data = self._read_now(start, span)
        if data is None:
            return False
        self._split_run(ranges, run, blocks, start, data, fill_cache)
        return True

    async def _load_run(self, ranges: list[tuple[int, int]], run: list[int], blocks: list, fill_cache: int) -> None:
        """Read the blocks ``ranges[i] for i in run`` (adjacent in the file)
        through the ring into ``blocks``, with one read of the pages
        covering them."""
        if len(run) == 1:
            offset, length = ranges[run[0]]
            blocks[run[0]] = await self._load(offset, length, fill_cache, False)
            return
        start, span = _run_span(ranges, run)
        data = _exact(await self._read(start, span), start, span, self.file_name)
        self._split_run(ranges, run, blocks, start, data, fill_cache)

    def _split_run(self, ranges: list[tuple[int, int]], run: list[int], blocks: list, start: int, data: bytes,
                   fill_cache: int) -> None:
        """The blocks of ``run`` verified out of ``data``, the bytes read at
        ``start``, into ``blocks``."""
        view = memoryview(data)
        for i in run:
            offset, length = ranges[i]
            blocks[i] = self.decode_block(offset, bytes(view[offset - start:offset - start + length]), fill_cache)

    async def iter_from(self, start_key: bytes | None = None, end_key: bytes | None = None,
                        fill_cache: int = True) -> AsyncIterator[tuple[bytes, int, Kind, bytes]]:
        """Yield every entry ``(user_key, seq, kind, value)`` with
        start_key <= user_key < end_key (None: unbounded) in entry order,
        all versions included; blocks are read one at a time.  A compaction
        passes fill_cache=False to keep its blocks out of the cache."""
        first, last = self._block_span(start_key, end_key)
        for i in range(first, last):
            block = await self.read_block(self._offsets[i], self._lengths[i], fill_cache)
            for entry in block.iter_from(start_key if i == first else None):
                if end_key is not None and entry[0] >= end_key:
                    return
                yield entry

    def evict(self) -> None:
        """Drop this table's blocks from the cache (when the table is deleted)."""
        if self._cache is not None:
            self._cache.erase_tables((self.table_id,))


def _adjacent_runs(indexes: list[int]) -> list[list[int]]:
    """``indexes`` (ascending) cut into runs of consecutive ones."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _run_span(ranges: list[tuple[int, int]], run: list[int]) -> tuple[int, int]:
    """The page-aligned ``(offset, length)`` covering the blocks
    ``ranges[i] for i in run`` (adjacent in the file)."""
    first_offset = ranges[run[0]][0]
    last_offset, last_length = ranges[run[-1]]
    return page_span(first_offset, last_offset + last_length - first_offset)


def page_span(offset: int, length: int) -> tuple[int, int]:
    """The page-aligned ``(offset, length)`` of the whole pages holding the
    bytes ``[offset, offset + length)``."""
    start = offset - offset % PAGE
    return start, -(-(offset + length - start) // PAGE) * PAGE


def _exact(data: bytes, offset: int, length: int, file_name: str) -> bytes:
    """``data``, read at ``offset``, when it is ``length`` bytes; else
    CorruptionError (a plain function, so a block read awaits one
    coroutine less)."""
    if len(data) != length:
        raise CorruptionError(file_name, offset, f"read {len(data)} of {length} bytes: table truncated?")
    return data
