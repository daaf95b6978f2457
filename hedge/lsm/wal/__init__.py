"""The write-ahead log: framed, checksummed records, each tagged with the
number of the file it belongs to.  ``format`` lays out one record,
``reader`` replays a file image under a recovery mode.  The same framing
carries the manifest's version edits.  Byte layout: docs/format/wal.md.
"""
from hedge.lsm.wal.format import (
    HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    RecordType,
    encode_record,
    record_bytes,
)
from hedge.lsm.wal.reader import EndReason, Record, Recovery, WalReader

__all__ = [
    "HEADER_BYTES",
    "MAX_PAYLOAD_BYTES",
    "EndReason",
    "Record",
    "RecordType",
    "Recovery",
    "WalReader",
    "encode_record",
    "record_bytes",
]
