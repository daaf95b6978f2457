"""Version edits: one change of the set of live tables, as logged to the manifest.

A ``VersionEdit`` says which tables were added to and deleted from which
level, and carries the bookkeeping numbers recovery needs (the oldest WAL that
still has to be replayed, the next file number, the last sequence number, the
round-robin compaction pointers).  Every field is optional: an edit written
after a flush or compaction holds only what changed; the first edit of a
manifest (``snapshot_edit`` in ``hedge.lsm.version``) holds everything.

A ``FileMeta`` describes one table: its file number, size, user-key range,
sequence range and entry counts.  It is immutable and shared between versions.

The encoded form of an edit is a sequence of tagged fields, laid out in
docs/format/manifest.md; the manifest frames each encoded edit as one record
(the framing is not this module's business).  Edits are plain values with no
thread affinity; a ``VersionEdit`` is mutable while it is being built and must
not be changed once it is handed to the manifest writer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from hedge.errors import CorruptionError
from hedge.lsm.keys import MAX_KEY_BYTES, MAX_SEQ

# Number of levels of the tree: L0 (overlapping tables, newest first) and
# L1..L6 (each a sorted run of non-overlapping tables).  Level numbers are
# stored in edits, so this is part of the format.
NUM_LEVELS = 7

# Largest value a varint field may hold (unsigned 64-bit).
_MAX_U64 = (1 << 64) - 1


class Tag(IntEnum):
    """Field tags of an encoded edit.  On disk: never renumber, never reuse."""

    WAL_NUMBER = 1
    NEXT_FILE_NUMBER = 2
    LAST_SEQ = 3
    COMPACT_POINTER = 4
    DELETED_FILE = 5
    ADDED_FILE = 6


@dataclass(frozen=True)
class FileMeta:
    """One table: what a version needs to know about it without opening it.

    Invariants (checked at construction, ValueError otherwise): ``number`` >= 1;
    ``size``, ``entries``, ``deletes`` >= 0 and ``deletes`` <= ``entries``;
    keys are 0..MAX_KEY_BYTES bytes with ``smallest_key`` <= ``largest_key``;
    0 <= ``smallest_seq`` <= ``largest_seq`` <= MAX_SEQ.
    """

    number: int
    size: int
    smallest_key: bytes
    largest_key: bytes
    smallest_seq: int
    largest_seq: int
    entries: int
    deletes: int

    def __post_init__(self) -> None:
        if self.number < 1:
            raise ValueError(f"file number must be >= 1, not {self.number}")
        if self.size < 0 or self.entries < 0 or self.deletes < 0:
            raise ValueError("size, entries and deletes must be >= 0")
        if self.deletes > self.entries:
            raise ValueError(f"deletes ({self.deletes}) exceed entries ({self.entries})")
        for key in (self.smallest_key, self.largest_key):
            if not isinstance(key, bytes):
                raise ValueError(f"keys must be bytes, not {type(key).__name__}")
            if len(key) > MAX_KEY_BYTES:
                raise ValueError(f"key length {len(key)} outside 0..{MAX_KEY_BYTES}")
        if self.smallest_key > self.largest_key:
            raise ValueError("smallest_key > largest_key")
        if not 0 <= self.smallest_seq <= self.largest_seq <= MAX_SEQ:
            raise ValueError(f"bad sequence range {self.smallest_seq}..{self.largest_seq}")

    def overlaps(self, start: bytes | None, end: bytes | None) -> bool:
        """True when the table's key range meets [start, end] (both inclusive;
        None means unbounded on that side)."""
        if start is not None and self.largest_key < start:
            return False
        if end is not None and self.smallest_key > end:
            return False
        return True


@dataclass
class VersionEdit:
    """A change to the version set.  ``None`` / empty means "unchanged".

    - ``wal_number``: WALs with a smaller number are fully flushed into tables
      and need not be replayed.
    - ``next_file_number``: the next number the engine may give a new file.
    - ``last_seq``: the last sequence number whose write is in a table or a
      WAL at least ``wal_number``.
    - ``compact_pointers``: level -> the largest key of the last compaction
      started from that level (where the next round-robin pick resumes).
    - ``deleted_files``: (level, file number) pairs leaving the version.
    - ``added_files``: (level, FileMeta) pairs entering the version.

    Within one edit, deletions apply before additions, so a table can move
    between levels in one edit (delete at n, add at n + 1).
    """

    wal_number: int | None = None
    next_file_number: int | None = None
    last_seq: int | None = None
    compact_pointers: dict[int, bytes] = field(default_factory=dict)
    deleted_files: set[tuple[int, int]] = field(default_factory=set)
    added_files: list[tuple[int, FileMeta]] = field(default_factory=list)

    def add_file(self, level: int, meta: FileMeta) -> None:
        """REQUIRES: 0 <= level < NUM_LEVELS."""
        _check_level(level)
        self.added_files.append((level, meta))

    def delete_file(self, level: int, number: int) -> None:
        """REQUIRES: 0 <= level < NUM_LEVELS."""
        _check_level(level)
        self.deleted_files.add((level, number))

    def set_compact_pointer(self, level: int, key: bytes) -> None:
        """REQUIRES: 0 <= level < NUM_LEVELS."""
        _check_level(level)
        self.compact_pointers[level] = key

    def encode(self) -> bytes:
        """The edit as the bytes of one manifest record (docs/format/manifest.md).

        Fields are written in a canonical order: scalars, compact pointers by
        level, deleted files sorted, added files in insertion order.  Raises
        ValueError when a number does not fit an unsigned 64-bit varint or a
        level is out of range.
        """
        out = bytearray()
        for tag, value in ((Tag.WAL_NUMBER, self.wal_number),
                           (Tag.NEXT_FILE_NUMBER, self.next_file_number),
                           (Tag.LAST_SEQ, self.last_seq)):
            if value is not None:
                _put_varint(out, tag)
                _put_varint(out, value)
        for level in sorted(self.compact_pointers):
            _check_level(level)
            _put_varint(out, Tag.COMPACT_POINTER)
            _put_varint(out, level)
            _put_bytes(out, self.compact_pointers[level])
        for level, number in sorted(self.deleted_files):
            _check_level(level)
            _put_varint(out, Tag.DELETED_FILE)
            _put_varint(out, level)
            _put_varint(out, number)
        for level, meta in self.added_files:
            _check_level(level)
            _put_varint(out, Tag.ADDED_FILE)
            _put_varint(out, level)
            _put_varint(out, meta.number)
            _put_varint(out, meta.size)
            _put_bytes(out, meta.smallest_key)
            _put_bytes(out, meta.largest_key)
            _put_varint(out, meta.smallest_seq)
            _put_varint(out, meta.largest_seq)
            _put_varint(out, meta.entries)
            _put_varint(out, meta.deletes)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, file: str | None = None,
               offset: int | None = None) -> "VersionEdit":
        """Parse one encoded edit.

        ``file`` and ``offset`` (the payload's position in the manifest) only
        locate errors.  Raises CorruptionError for an unknown tag, a truncated
        or overlong field, a level out of range, a scalar or compact pointer
        given twice, a file added twice, or a FileMeta that breaks its
        invariants.  The reported offset is ``offset`` plus the position of
        the bad field in ``data`` (or None when ``offset`` is None; the detail
        always names the position in the payload).
        """
        reader = _Reader(bytes(data), file, offset)
        edit = cls()
        added_numbers: set[int] = set()
        while not reader.at_end():
            start = reader.pos
            raw_tag = reader.varint("tag")
            try:
                tag = Tag(raw_tag)
            except ValueError:
                raise reader.error(start, f"unknown tag {raw_tag}") from None
            if tag in (Tag.WAL_NUMBER, Tag.NEXT_FILE_NUMBER, Tag.LAST_SEQ):
                name = tag.name.lower()
                if getattr(edit, name) is not None:
                    raise reader.error(start, f"{name} given twice")
                setattr(edit, name, reader.varint(name))
            elif tag is Tag.COMPACT_POINTER:
                level = reader.level()
                if level in edit.compact_pointers:
                    raise reader.error(start, f"compact pointer of level {level} given twice")
                edit.compact_pointers[level] = reader.bytes_field("compact pointer key")
            elif tag is Tag.DELETED_FILE:
                level = reader.level()
                edit.deleted_files.add((level, reader.varint("deleted file number")))
            else:  # Tag.ADDED_FILE
                level = reader.level()
                values = (reader.varint("file number"), reader.varint("file size"),
                          reader.bytes_field("smallest key"), reader.bytes_field("largest key"),
                          reader.varint("smallest seq"), reader.varint("largest seq"),
                          reader.varint("entries"), reader.varint("deletes"))
                try:
                    meta = FileMeta(*values)
                except ValueError as exc:
                    raise reader.error(start, f"bad added file: {exc}") from None
                if meta.number in added_numbers:
                    raise reader.error(start, f"file {meta.number} added twice")
                added_numbers.add(meta.number)
                edit.added_files.append((level, meta))
        return edit


def _check_level(level: int) -> None:
    if not 0 <= level < NUM_LEVELS:
        raise ValueError(f"level {level} outside 0..{NUM_LEVELS - 1}")


def _put_varint(out: bytearray, value: int) -> None:
    if not 0 <= value <= _MAX_U64:
        raise ValueError(f"{value} does not fit an unsigned 64-bit varint")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_bytes(out: bytearray, data: bytes) -> None:
    _put_varint(out, len(data))
    out += data


class _Reader:
    """Cursor over one encoded edit; every failure is a CorruptionError."""

    def __init__(self, data: bytes, file: str | None, offset: int | None):
        self.data = data
        self.pos = 0
        self.file = file
        self.offset = offset

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def error(self, pos: int, detail: str) -> CorruptionError:
        where = None if self.offset is None else self.offset + pos
        return CorruptionError(self.file, where, f"version edit byte {pos}: {detail}")

    def varint(self, what: str) -> int:
        start = self.pos
        result = 0
        shift = 0
        data = self.data
        while True:
            if self.pos >= len(data):
                raise self.error(start, f"truncated varint ({what})")
            byte = data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift >= 70:
                raise self.error(start, f"varint longer than 10 bytes ({what})")
        if result > _MAX_U64:
            raise self.error(start, f"varint exceeds 64 bits ({what})")
        return result

    def level(self) -> int:
        start = self.pos
        level = self.varint("level")
        if level >= NUM_LEVELS:
            raise self.error(start, f"level {level} outside 0..{NUM_LEVELS - 1}")
        return level

    def bytes_field(self, what: str) -> bytes:
        start = self.pos
        length = self.varint(f"length of {what}")
        if length > MAX_KEY_BYTES:
            raise self.error(start, f"{what} is {length} bytes; the limit is {MAX_KEY_BYTES}")
        end = self.pos + length
        if end > len(self.data):
            raise self.error(start, f"truncated {what}: needs {length} bytes, "
                                    f"{len(self.data) - self.pos} left")
        value = self.data[self.pos:end]
        self.pos = end
        return value
