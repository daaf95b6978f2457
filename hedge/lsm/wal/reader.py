"""WalReader: replay the records of one WAL (or manifest) file image.

The reader walks the bytes of a whole file, already read into memory by the
caller, and yields its records in order.  Where the valid records end it
decides, by the recovery mode, whether what follows is a clean end of log,
a damaged tail to drop, or corruption to refuse.  The rules are in
docs/format/wal.md ("End of log" and "Recovery modes"); in short:

- end of data, or nothing but zero bytes to the end of the file: clean end;
- an intact record carrying another file number: stale data from a reused
  or preallocated file, clean end;
- anything else (a torn header, a record running past the end of the file, a
  checksum mismatch) is *damage* at that offset.  ``absolute`` raises;
  ``tolerate_tail`` drops it when no intact record of this file follows and
  raises when one does; ``point_in_time`` stops there either way.

A record with an intact checksum but an unknown type or non-zero reserved
bytes was written by a newer format and always raises.

Pure code, no I/O; one reader belongs to the thread iterating it.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from enum import Enum, StrEnum
from typing import NamedTuple

from hedge.errors import CorruptionError
from hedge.lsm.wal.format import HEADER, HEADER_BYTES, RecordType, checksum_of, record_type_of, reserved_is_zero

_FILE_NUMBER = struct.Struct("<Q")


class Recovery(StrEnum):
    """What a damaged WAL does on open (``Options.wal_recovery``)."""

    TOLERATE_TAIL = "tolerate_tail"   # drop damage only when nothing intact follows it
    ABSOLUTE = "absolute"             # any damage, even a torn final record, raises
    POINT_IN_TIME = "point_in_time"   # stop at the first damage, keep the prefix


class EndReason(Enum):
    """Why the reader stopped."""

    END_OF_DATA = "end of data"            # the last record ends at the end of the file
    ZERO_FILL = "zero fill"                # only zero bytes follow the last record
    STALE_RECORD = "stale record"          # an intact record of another file follows
    DAMAGED_TAIL = "damaged tail"          # damage, and no intact record of this file after it
    DAMAGED = "damaged"                    # point_in_time: damage with intact records after it


class Record(NamedTuple):
    offset: int                 # where the record's header starts in the file
    record_type: RecordType
    payload: bytes


class WalReader:
    """Iterate the records of file number ``file_number`` in ``data``.

    ``data`` is the whole file (bytes or bytearray); ``file_name`` names it in
    errors; ``mode`` is a Recovery or its string value (ValueError when
    unknown).  Iterating yields ``Record``s and may raise
    CorruptionError(file_name, offset) as the mode says.  After an iteration
    has run to its end these attributes describe the end of log:

    - ``end_offset``: where the last record yielded ends; the engine may
      truncate the file there or append after it;
    - ``end_reason``: an EndReason;
    - ``dropped_tail_bytes``: bytes from ``end_offset`` to the end of the file
      that were dropped as damage (0 for a clean end);
    - ``damage``: the CorruptionError describing the dropped damage, or None;
    - ``damaged_record_end``: when that damage is one whole record (it fits
      in the file but fails its checksum), where the record ends; None when
      the damage is cut short by the end of the file, or there is none.  The
      manifest tells a torn append from a damaged record with it.

    Iterating again starts over from offset 0.
    """

    def __init__(self, data, file_number: int, file_name: str | None, mode: Recovery | str = Recovery.TOLERATE_TAIL):
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"data must be bytes or bytearray, not {type(data).__name__}")
        self.mode = Recovery(mode)
        self.file_number = file_number
        self.file_name = file_name
        self._data = data
        self.end_offset = 0
        self.end_reason: EndReason | None = None
        self.dropped_tail_bytes = 0
        self.damage: CorruptionError | None = None
        self.damaged_record_end: int | None = None

    def read_all(self) -> list[Record]:
        """Every record, as a list (raises like iteration)."""
        return list(self)

    def __iter__(self) -> Iterator[Record]:
        data = self._data
        view = memoryview(data)
        n = len(data)
        ours = self.file_number
        unpack = HEADER.unpack_from
        self.end_reason = None
        self.dropped_tail_bytes = 0
        self.damage = None
        self.damaged_record_end = None
        pos = 0
        while True:
            self.end_offset = pos
            if pos == n:
                self.end_reason = EndReason.END_OF_DATA
                return
            if n - pos < HEADER_BYTES:
                self._stop(pos, f"truncated record header ({n - pos} bytes)")
                return
            checksum, file_number, length, type_byte = unpack(data, pos)
            end = pos + HEADER_BYTES + length
            if end > n:
                self._stop(pos, f"record of {length} bytes runs {end - n} bytes past the end of the file")
                return
            if checksum_of(data, pos, end) != checksum:
                self._stop(pos, "checksum mismatch", whole_record_end=end)
                return
            if file_number != ours:
                self._stop(pos, f"intact record of file {file_number}", stale=True)
                return
            rtype = record_type_of(type_byte)
            if rtype is None:
                raise CorruptionError(self.file_name, pos, f"unknown record type {type_byte} (written by a newer format?)")
            if not reserved_is_zero(data, pos):
                raise CorruptionError(self.file_name, pos, "reserved header bytes are set (written by a newer format?)")
            yield Record(pos, rtype, bytes(view[pos + HEADER_BYTES:end]))
            pos = end

    def _stop(self, pos: int, detail: str, stale: bool = False, whole_record_end: int | None = None) -> None:
        """Classify what starts at ``pos`` (not a record of this file); set
        the end attributes or raise as the mode says.  ``whole_record_end``:
        the damage is a record that fits in the file, ending there."""
        data = self._data
        n = len(data)
        if stale:
            later = self._next_intact(pos + 1)
            if later is None:
                self.end_reason = EndReason.STALE_RECORD
                return
            detail += f" between records of file {self.file_number}"
        elif data.count(0, pos) == n - pos:
            self.end_reason = EndReason.ZERO_FILL
            return
        elif self.mode is Recovery.ABSOLUTE:
            raise CorruptionError(self.file_name, pos, detail)
        else:
            later = self._next_intact(pos + 1)
        if later is not None:
            if self.mode is not Recovery.POINT_IN_TIME:
                raise CorruptionError(self.file_name, pos, f"{detail}; an intact record follows at offset {later}")
            self.end_reason = EndReason.DAMAGED
        else:
            self.end_reason = EndReason.DAMAGED_TAIL
        self.damage = CorruptionError(self.file_name, pos, detail)
        self.damaged_record_end = whole_record_end
        self.dropped_tail_bytes = n - pos

    def _next_intact(self, start: int) -> int | None:
        """Offset >= start of the first intact record of this file, or None.

        Candidates are found by searching for the file number, which sits at
        offset 8 of every header, so the scan runs at memory speed.
        """
        data = self._data
        n = len(data)
        needle = _FILE_NUMBER.pack(self.file_number)
        i = start + 8
        while True:
            j = data.find(needle, i)
            if j < 0:
                return None
            p = j - 8
            i = j + 1
            if n - p < HEADER_BYTES:
                return None
            checksum, _, length, type_byte = HEADER.unpack_from(data, p)
            end = p + HEADER_BYTES + length
            if (end <= n and record_type_of(type_byte) is not None
                    and reserved_is_zero(data, p)
                    and checksum_of(data, p, end) == checksum):
                return p
