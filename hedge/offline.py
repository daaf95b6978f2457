"""Reading a database's files directly, without opening the database: the
records of a WAL or a manifest, the entries of a table, and ``check``, which
verifies every checksum of every live file.

Everything here reads with plain blocking calls (os.pread) on the calling
thread and writes nothing; no executor, ring or engine is involved.  The
readers are the engine's own (hedge/lsm/wal/reader.py, the table reader,
version edits), so what passes here passes on open.  The table reader's
``read`` callable is a coroutine that never suspends, so its coroutines are
run to completion with one ``send``.

``check`` takes the LOCK shared: it runs beside other checks, and fails with
LockError while a process has the database open (its files change under a
writer).  Byte layouts: docs/format/.
"""
from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from hedge.directory import database_files
from hedge.errors import CorruptionError, HedgeError, HedgeIOError, LockError
from hedge.lsm import filenames
from hedge.lsm.batch import Op, decode_many
from hedge.lsm.keys import Kind
from hedge.lsm.table.reader import TableReader
from hedge.lsm.version import VersionSetState
from hedge.lsm.version_edit import FileMeta, VersionEdit
from hedge.lsm.wal.format import HEADER_BYTES, RecordType
from hedge.lsm.wal.reader import Recovery, WalReader


def _run(coro):
    """Run a coroutine that never suspends; return its result."""
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError(f"an offline read suspended on {yielded!r}")


def _io_error(e: OSError, op: str, path: str) -> HedgeIOError:
    return HedgeIOError(e.errno or errno.EIO, op, path)


def read_whole(path: str) -> bytes:
    """The content of ``path``.  Raises HedgeIOError."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise _io_error(e, "read", path) from None


def file_number(path: str, data: bytes) -> int:
    """The file number of a WAL or manifest: from its name, else (a renamed
    copy) from its first record's header."""
    parsed = filenames.parse(os.path.basename(path))
    if parsed is not None:
        return parsed[1]
    if len(data) >= HEADER_BYTES:
        number = int.from_bytes(data[8:16], "little")
        if number:
            return number
    raise CorruptionError(path, 0, "no file number: neither the name nor a first record gives one")


# -- records of one file ----------------------------------------------------------
class LogFile:
    """The records of one WAL or manifest file, read as recovery reads them
    (mode tolerate_tail).  Iterating raises CorruptionError for damage with
    intact records after it; afterwards ``tail_damage`` is the
    CorruptionError of a dropped damaged tail, or None."""

    def __init__(self, path: str, record_type: RecordType):
        self.path = path
        self.record_type = record_type
        data = read_whole(path)
        self._reader = WalReader(data, file_number(path, data), path, Recovery.TOLERATE_TAIL)
        self.tail_damage: CorruptionError | None = None

    def __iter__(self) -> Iterator:
        for record in self._reader:
            if record.record_type != self.record_type:
                raise CorruptionError(self.path, record.offset,
                                      f"record of type {record.record_type.name} where {self.record_type.name} belongs")
            yield record
        self.tail_damage = self._reader.damage


def wal_batches(path: str) -> Iterator[tuple[int, int, list[Op]]]:
    """``(record offset, first_seq, ops)`` of every write batch of a WAL, in
    order; operation i has sequence number first_seq + i.  Raises
    CorruptionError, also for a damaged tail (after the batches before it)."""
    log = LogFile(path, RecordType.BATCHES)
    for record in log:
        for first_seq, ops in decode_many(record.payload, file=path, offset=record.offset + HEADER_BYTES):
            yield record.offset, first_seq, ops
    if log.tail_damage is not None:
        raise log.tail_damage


def manifest_edits(path: str) -> Iterator[tuple[int, VersionEdit]]:
    """``(record offset, edit)`` of every version edit of a manifest.  Raises
    CorruptionError, also for a damaged tail (after the edits before it)."""
    log = LogFile(path, RecordType.VERSION_EDIT)
    for record in log:
        yield record.offset, VersionEdit.decode(record.payload, path, record.offset + HEADER_BYTES)
    if log.tail_damage is not None:
        raise log.tail_damage


# -- tables -------------------------------------------------------------------------
class TableFile:
    """One table file opened for reading: footer, index, bloom filter and
    properties verified on construction (CorruptionError), HedgeIOError when
    it cannot be read.  A context manager; ``close`` releases the file."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise _io_error(e, "open", path) from None
        try:
            self.size = os.fstat(self._fd).st_size
            parsed = filenames.parse(os.path.basename(path))
            number = parsed[1] if parsed is not None else 0
            self.reader = _run(TableReader.open(self._read, self.size, path, number))
        except BaseException:
            os.close(self._fd)
            raise

    async def _read(self, offset: int, length: int) -> bytes:
        try:
            return os.pread(self._fd, length, offset)
        except OSError as e:
            raise _io_error(e, "pread", self.path) from None

    @property
    def properties(self):
        return self.reader.properties

    def block_ranges(self) -> list[tuple[int, int]]:
        return self.reader.block_ranges()

    def block_entries(self, offset: int, length: int) -> Iterator[tuple[bytes, int, Kind, bytes]]:
        """The entries ``(user_key, seq, kind, value)`` of the block at
        ``(offset, length)``, its checksum verified first (CorruptionError)."""
        block = _run(self.reader.read_block(offset, length, fill_cache=False))
        return block.iter_from()

    def entries(self) -> Iterator[tuple[bytes, int, Kind, bytes]]:
        """Every entry of the table in entry order (all versions)."""
        for offset, length in self.block_ranges():
            yield from self.block_entries(offset, length)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "TableFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- check ----------------------------------------------------------------------------
@dataclass
class Problem:
    """One piece of damage: where, and what."""

    file: str
    offset: int | None
    detail: str

    def __str__(self) -> str:
        where = os.path.basename(self.file)
        if self.offset is not None:
            where += f" at offset {self.offset}"
        return f"{where}: {self.detail}"


@dataclass
class CheckReport:
    """What ``check`` verified and found.  ``sound`` when no problem."""

    directory: str
    manifest: str | None = None
    edits: int = 0
    tables: int = 0
    blocks: int = 0
    entries: int = 0
    wals: int = 0
    records: int = 0
    writes: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.problems

    def problem(self, error: CorruptionError | HedgeIOError, file: str, hint: str = "") -> None:
        if isinstance(error, CorruptionError):
            self.problems.append(Problem(error.file or file, error.offset, error.detail + hint))
        else:
            self.problems.append(Problem(file, None, str(error) + hint))

    def summary(self) -> str:
        """One line: the verdict and what was read."""
        verdict = "sound" if self.sound else f"DAMAGED ({len(self.problems)} problem{'s' * (len(self.problems) != 1)})"
        return (f"{verdict}: {self.manifest or 'no manifest'} ({self.edits} edits), "
                f"{self.tables} tables ({self.blocks} blocks, {self.entries} entries), "
                f"{self.wals} WALs ({self.records} records, {self.writes} writes)")


_TORN_HINT = " (a torn final record: open drops it, as a crash mid-write leaves one)"


def _shared_lock(directory: str) -> int | None:
    """Hold the LOCK shared, or None when there is no LOCK to hold and none
    can be made (a read-only copy).  Raises LockError while the database is
    open."""
    path = filenames.join(directory, filenames.LOCK)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockError(f"the database at {directory} is open; check reads it only while no process has it open") from None
    except OSError as e:
        os.close(fd)
        raise _io_error(e, "flock", path) from None
    return fd


def _read_current(directory: str, report: CheckReport) -> str | None:
    path = filenames.join(directory, filenames.CURRENT)
    text = read_whole(path).decode("utf-8", "replace")
    name = text.strip()
    parsed = filenames.parse(name)
    if not text.endswith("\n") or parsed is None or parsed[0] != "manifest":
        report.problems.append(Problem(path, 0, f"CURRENT does not name a manifest: {text[:80]!r}"))
        return None
    return name


def _check_manifest(directory: str, name: str, report: CheckReport) -> VersionSetState | None:
    path = filenames.join(directory, name)
    report.manifest = name
    if not os.path.exists(path):
        report.problems.append(Problem(path, None, "CURRENT names a manifest that does not exist"))
        return None
    edits = []
    try:
        log = LogFile(path, RecordType.VERSION_EDIT)
        for record in log:
            edits.append(VersionEdit.decode(record.payload, path, record.offset + HEADER_BYTES))
    except (CorruptionError, HedgeIOError) as e:
        report.edits = len(edits)
        report.problem(e, path)
        return None
    report.edits = len(edits)
    if log.tail_damage is not None:
        report.problem(log.tail_damage, path, _TORN_HINT)
    if not edits:
        report.problems.append(Problem(path, 0, "the manifest holds no version edit"))
        return None
    try:
        return VersionSetState.fold(edits, file=path)
    except CorruptionError as e:
        report.problem(e, path)
        return None


def _check_table(path: str, meta: FileMeta | None, report: CheckReport) -> None:
    report.tables += 1
    if meta is not None and not os.path.exists(path):
        report.problems.append(Problem(path, None, "a table the manifest lists is missing"))
        return
    try:
        table = TableFile(path)
    except (CorruptionError, HedgeIOError) as e:
        report.problem(e, path)
        return
    with table:
        props = table.properties
        if meta is not None and (table.size != meta.size or props.smallest_key != meta.smallest_key
                                 or props.largest_key != meta.largest_key or props.entry_count != meta.entries):
            report.problems.append(Problem(path, None, "the table disagrees with its manifest entry "
                                                       "(size, key range or entry count)"))
        count = 0
        previous = None
        for offset, length in table.block_ranges():
            report.blocks += 1
            try:
                for entry in table.block_entries(offset, length):
                    order = (entry[0], -entry[1])
                    if previous is not None and order <= previous:
                        raise CorruptionError(path, offset, "entries out of order")
                    previous = order
                    count += 1
            except (CorruptionError, HedgeIOError) as e:
                report.problem(e, path)
                previous = None
        report.entries += count
        if count != props.entry_count and all(p.file != path for p in report.problems):
            report.problems.append(Problem(path, None, f"the table holds {count} entries, its properties say "
                                                       f"{props.entry_count}"))


def _check_wal(path: str, report: CheckReport) -> None:
    report.wals += 1
    try:
        log = LogFile(path, RecordType.BATCHES)
        for record in log:
            report.records += 1
            for _, ops in decode_many(record.payload, file=path, offset=record.offset + HEADER_BYTES):
                report.writes += len(ops)
    except (CorruptionError, HedgeIOError) as e:
        report.problem(e, path)
        return
    if log.tail_damage is not None:
        report.problem(log.tail_damage, path, _TORN_HINT)


def check(path) -> CheckReport:
    """Verify the database in directory ``path`` without opening it: CURRENT,
    every record of the manifest and of each live WAL, and the footer,
    metadata and every block of each table the manifest lists (plus, when
    the manifest cannot be read, every table and WAL present).  Damage is
    reported in the CheckReport, never raised.

    Raises HedgeError when ``path`` holds no database, LockError while the
    database is open, HedgeIOError when the directory cannot be read.
    """
    directory = os.fspath(path)
    names = database_files(directory)
    parsed = {name: filenames.parse(name) for name in names}
    if filenames.CURRENT not in names and not any(parsed.values()):
        raise HedgeError(f"no hedge database at {directory}")
    report = CheckReport(directory)
    lock_fd = _shared_lock(directory)
    try:
        state = None
        if filenames.CURRENT not in names:
            report.problems.append(Problem(filenames.join(directory, filenames.CURRENT), None,
                                           "the directory holds database files but no CURRENT file"))
        else:
            manifest = _read_current(directory, report)
            if manifest is not None:
                state = _check_manifest(directory, manifest, report)
        present = {p[1]: name for name, p in parsed.items() if p is not None and p[0] == "sst"}
        if state is not None:
            live = state.version.all_file_numbers()
            for _, meta in state.version.files():
                _check_table(filenames.join(directory, filenames.table_name(meta.number)), meta, report)
            wal_floor = state.wal_number
            others = [n for n in names if (p := parsed[n]) is not None and (
                (p[0] == "sst" and p[1] not in live) or (p[0] == "wal" and p[1] < wal_floor)
                or (p[0] == "manifest" and n != report.manifest))]
            others += [n for n in names if n.endswith(".tmp")]
            if others:
                report.notes.append(f"{len(others)} files the next open removes, not checked: {', '.join(others)}")
        else:
            for number in sorted(present):
                _check_table(filenames.join(directory, present[number]), None, report)
            wal_floor = 0
        for name in names:
            p = parsed[name]
            if p is not None and p[0] == "wal" and p[1] >= wal_floor:
                _check_wal(filenames.join(directory, name), report)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    return report
