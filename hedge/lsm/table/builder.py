"""TableBuilder: turns entries, given in entry order, into the bytes of one
table file, without doing any I/O.

The caller adds entries and, as it goes, takes the finished page-aligned
chunks ``(file_offset, data)`` with ``take_ready`` and writes them; so a big
table is written incrementally and the builder holds at most one unfinished
data block (and, compressing, the part of a page its stored blocks do
not fill yet) plus the index and the bloom filter's key hashes.  ``finish``
returns the last chunks (the last data block, then index, bloom filter,
properties and footer in one chunk) and the table's properties.  Layout:
docs/format/table.md.

With compression "none" the table is format version 1: each block padded
to whole pages.  With a codec it is version 2: each block compressed (or
kept raw when that saves too little, hedge/lsm/compression.py) and stored
right after the previous one, except that a block which would cross a page
boundary it need not cross starts on the next page when that costs at most
PAD_LIMIT bytes of padding (a lookup then reads one page, not two).

Owned by one thread (the flush or compaction job building the table).
"""
from __future__ import annotations

from hedge.lsm.block import TRAILER_BYTES as BLOCK_TRAILER_BYTES
from hedge.lsm.block import BlockBuilder, entry_bytes
from hedge.lsm.bloom import BloomBuilder
from hedge.lsm.compression import CODECS, store
from hedge.lsm.compression import TRAILER_BYTES as STORED_TRAILER_BYTES
from hedge.lsm.keys import DELETE, MAX_KEY_BYTES, MAX_SEQ, MAX_VALUE_BYTES, PUT
from hedge.lsm.table.format import (
    COMPRESSED_FORMAT_VERSION,
    FOOTER_BYTES,
    FORMAT_VERSION,
    PAGE,
    Footer,
    Section,
    TableProperties,
    encode_index,
    encode_index_entry,
    round_up,
    xxh3_64,
)

_PROPS_FIXED_BYTES = len(TableProperties(0, 0, b"", b"", 0, 0, 0, 0, 0, 0, 0).encode())
# Padding a compressed table spends at most, per block, to keep a block from
# crossing a page boundary it need not cross.
PAD_LIMIT = PAGE // 8
# A block of large entries grows past block_bytes until it holds about
# MIN_BLOCK_ENTRIES entries of the average size so far, up to
# MAX_BLOCK_GROWTH times block_bytes (in whole pages when not compressed, so
# no page is padded): what a block costs to read, verify, cache and decode
# is mostly per block, not per byte.  Blocks of small entries keep
# block_bytes, so a point lookup still reads one small block.
MIN_BLOCK_ENTRIES = 16
MAX_BLOCK_GROWTH = 4


class TableBuilder:
    """Builds one table.  REQUIRES: entries in entry order (user key
    ascending, seq descending; see hedge/lsm/keys.py)."""

    def __init__(self, block_bytes: int = 4096, bloom_bits_per_key: int = 10, compression: str = "none"):
        """``compression``: "none" or a codec of hedge/lsm/compression.py
        CODECS ("zstd"); raises ValueError for any other value."""
        if compression == "none":
            self._codec = None
            self._block = BlockBuilder(block_bytes)
        elif compression in CODECS:
            self._codec = CODECS[compression]
            # A block kept raw still fits block_bytes with its trailer.
            self._block = BlockBuilder(max(block_bytes - STORED_TRAILER_BYTES, 1))
        else:
            raise ValueError(f"compression must be 'none' or one of {tuple(CODECS)}, not {compression!r}")
        self._base_target = self._block.target_bytes
        self._max_target = self._base_target + (MAX_BLOCK_GROWTH - 1) * block_bytes
        self._tail = bytearray()      # compressing: stored bytes from _tail_start, not yet a whole page
        self._tail_start = 0
        self._bloom = BloomBuilder(bloom_bits_per_key)
        self._bloom_add = self._bloom.add
        self._ready: list[tuple[int, bytes]] = []
        self._offset = 0  # file offset of the next data block
        self._index = bytearray()
        self._block_count = 0
        self._last_key: bytes | None = None
        self._last_seq = 0
        self._first_key: bytes | None = None
        self._entries = 0
        self._deletes = 0
        self._min_seq = MAX_SEQ
        self._max_seq = 0
        self._raw_key_bytes = 0
        self._raw_value_bytes = 0
        self._finished = False

    def add(self, key: bytes, seq: int, kind: int, value: bytes) -> None:
        """Append one entry.

        Raises ValueError when the entry is not after the previous one in
        entry order (same key and seq included), for an oversize key
        or value, a seq out of 0..MAX_SEQ, an unknown kind, or a DELETE with a
        non-empty value; TypeError for non-bytes key or value; ValueError
        after finish().  Nothing is added when it raises.
        """
        if self._finished:
            raise ValueError("add() after finish()")
        if type(key) is not bytes or type(value) is not bytes:
            if not isinstance(key, (bytes, bytearray, memoryview)) or not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError("key and value must be bytes-like")
            key = bytes(key)
            value = bytes(value)
        klen = len(key)
        vlen = len(value)
        if klen > MAX_KEY_BYTES:
            raise ValueError(f"key length {klen} is not in 0..{MAX_KEY_BYTES}")
        if vlen > MAX_VALUE_BYTES:
            raise ValueError(f"value length {vlen} exceeds {MAX_VALUE_BYTES}")
        if not 0 <= seq <= MAX_SEQ:
            raise ValueError(f"seq {seq} is not in 0..{MAX_SEQ}")
        if kind != PUT:
            if kind != DELETE:
                raise ValueError(f"unknown entry kind {kind!r}")
            if vlen:
                raise ValueError("a DELETE entry carries no value")
        last = self._last_key
        if last is not None and (key < last or (key == last and seq >= self._last_seq)):
            raise ValueError(
                f"entries out of order: ({key[:32]!r}..., seq {seq}) after ({last[:32]!r}..., seq {self._last_seq})"
            )
        if not self._block.try_add(key, seq, kind, value):
            self._finish_block()
            self._block.add(key, seq, kind, value)
        if key != last:
            self._bloom_add(key)
            if last is None:
                self._first_key = key
        self._last_key = key
        self._last_seq = seq
        self._entries += 1
        if kind == DELETE:
            self._deletes += 1
        if seq < self._min_seq:
            self._min_seq = seq
        if seq > self._max_seq:
            self._max_seq = seq
        self._raw_key_bytes += klen
        self._raw_value_bytes += vlen

    def _finish_block(self) -> None:
        if self._codec is None:
            data = self._block.finish(pad_to=PAGE)
            offset = self._offset
            self._ready.append((offset, data))
        else:
            data = store(self._block.finish(), self._codec)
            offset = self._place(len(data))
            tail = self._tail
            tail += data
            whole = len(tail) - len(tail) % PAGE
            if whole:
                self._ready.append((self._tail_start, bytes(tail[:whole])))
                del tail[:whole]
                self._tail_start += whole
        self._index += encode_index_entry(self._last_key, self._last_seq, offset, len(data))
        self._block_count += 1
        self._offset = offset + len(data)
        self._block.target_bytes = self._next_block_target()

    def _next_block_target(self) -> int:
        """The target size of the next block: block_bytes, or room for
        MIN_BLOCK_ENTRIES entries of the average size so far when that is
        more (rounded up to whole pages without compression), at most
        MAX_BLOCK_GROWTH times block_bytes."""
        entries = self._entries
        base = self._base_target
        if not entries:
            return base
        average = (self._raw_key_bytes + self._raw_value_bytes) / entries + entry_bytes(b"", b"")
        want = int(MIN_BLOCK_ENTRIES * average) + BLOCK_TRAILER_BYTES
        if want <= base:
            return base
        if self._codec is None:
            want = round_up(want)
        else:           # a block stored raw then fills whole pages with its trailer
            want = round_up(want + STORED_TRAILER_BYTES) - STORED_TRAILER_BYTES
        return min(want, self._max_target)

    def _place(self, length: int) -> int:
        """Where a stored block of ``length`` bytes goes (compressing): right
        after the previous one, or at the next page boundary (the gap padded
        with zeros) when it would otherwise cross a boundary it need not and
        the gap is at most PAD_LIMIT bytes."""
        offset = self._offset
        gap = -offset % PAGE
        if 0 < gap <= PAD_LIMIT:
            spanned = (offset + length - 1) // PAGE - offset // PAGE + 1
            if spanned > -(-length // PAGE):
                self._tail += bytes(gap)
                return offset + gap
        return offset

    def take_ready(self) -> list[tuple[int, bytes]]:
        """Hand over the finished data blocks as ``(file_offset, data)``;
        offsets and lengths are multiples of PAGE, in file order, and each
        chunk is returned once."""
        ready, self._ready = self._ready, []
        return ready

    @property
    def entry_count(self) -> int:
        return self._entries

    def estimated_file_size(self) -> int:
        """The file size if the table were finished now (within a page or so);
        callers split outputs when it reaches their table size."""
        block = self._block.estimated_size() if not self._block.empty() else 0
        meta = (len(self._index) + 4 + entry_bytes(self._last_key or b"", b"") + self._bloom.estimated_size()
                + _PROPS_FIXED_BYTES + 2 * len(self._last_key or b"") + FOOTER_BYTES)
        return self._offset + round_up(block) + round_up(meta)

    def finish(self) -> tuple[list[tuple[int, bytes]], TableProperties]:
        """Return the remaining chunks (last data block, then one chunk with
        index, bloom filter, properties and footer that ends the file) and the
        table's properties.  REQUIRES: at least one entry was added; raises
        ValueError otherwise or when called twice."""
        if self._finished:
            raise ValueError("finish() called twice")
        if self._first_key is None:
            raise ValueError("a table needs at least one entry")
        self._finished = True
        if not self._block.empty():
            self._finish_block()
        if self._codec is not None and self._tail:
            self._tail += bytes(-len(self._tail) % PAGE)
            self._ready.append((self._tail_start, bytes(self._tail)))
            self._tail_start += len(self._tail)
            self._tail = bytearray()
        meta_start = round_up(self._offset)
        index = encode_index(self._block_count, self._index)
        bloom = self._bloom.finish()
        props_len = _PROPS_FIXED_BYTES + len(self._first_key) + len(self._last_key)
        meta_len = len(index) + len(bloom) + props_len
        file_size = round_up(meta_start + meta_len + FOOTER_BYTES)
        props = TableProperties(
            file_size=file_size,
            entry_count=self._entries,
            smallest_key=self._first_key,
            largest_key=self._last_key,
            smallest_seq=self._min_seq,
            largest_seq=self._max_seq,
            deletes=self._deletes,
            raw_key_bytes=self._raw_key_bytes,
            raw_value_bytes=self._raw_value_bytes,
            data_bytes=meta_start,
            block_count=self._block_count,
        )
        props_bytes = props.encode()
        assert len(props_bytes) == props_len
        index_off = meta_start
        bloom_off = index_off + len(index)
        props_off = bloom_off + len(bloom)
        footer = Footer(
            Section(index_off, len(index), xxh3_64(index)),
            Section(bloom_off, len(bloom), xxh3_64(bloom)),
            Section(props_off, len(props_bytes), xxh3_64(props_bytes)),
            version=FORMAT_VERSION if self._codec is None else COMPRESSED_FORMAT_VERSION,
            compression=self._codec or 0,
        ).encode()
        padding = file_size - FOOTER_BYTES - (meta_start + meta_len)
        tail = b"".join((index, bloom, props_bytes, bytes(padding), footer))
        chunks = self.take_ready()
        chunks.append((meta_start, tail))
        self._index = bytearray()
        return chunks, props
