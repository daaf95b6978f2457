"""Read verification: did a read return the value last written to its key?

With concurrent clients "last written" is a set: a read that overlaps writes
of its key may see any of them, and writes that overlap each other may land
in either order.  The verifier keeps, per key, the versions that may be the
stored one (its candidates):

- a write of version v starts: v becomes a candidate (it may be visible as
  soon as it is issued); the candidates whose writes had already completed
  are remembered;
- that write completes: the remembered ones are dropped, since v was written
  after they were acknowledged.  A write still in flight when v started is
  not dropped: it may land after v.
- a read is correct when the version it returned was a candidate when the
  read started, or was issued while it ran.  Anything else (an older version,
  a missing key, bytes that are no value of this key) is a mismatch.

Keys of the load phase start with the single candidate 0 (the loader writes
version 0 and nothing else writes during the load).

Thread safety: every method locks; one verifier is shared by the clients of
one store.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from perf.values import ValueFactory

_EXAMPLES = 5


@dataclass
class ReadCheck:
    """What a read may return: the candidates when it started and the first
    version number not yet issued then."""

    candidates: frozenset[int]
    next_version: int


@dataclass
class WriteTicket:
    """A write in flight: its version and the candidates it supersedes."""

    version: int
    supersedes: tuple[int, ...]


@dataclass
class VerifyReport:
    reads_checked: int = 0
    mismatches: int = 0
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"reads_checked": self.reads_checked, "mismatches": self.mismatches,
                "examples": list(self.examples)}


class Verifier:
    def __init__(self, values: ValueFactory):
        self._values = values
        self._lock = threading.Lock()
        # key -> {version: completed?}; a key absent here has {0: True}.
        self._candidates: dict[bytes, dict[int, bool]] = {}
        self._next_version: dict[bytes, int] = {}
        self.report = VerifyReport()

    def begin_insert(self, key: bytes) -> WriteTicket:
        """A key's first write (load or insert): version 0."""
        with self._lock:
            self._candidates[key] = {0: False}
            self._next_version[key] = 1
        return WriteTicket(0, ())

    def begin_write(self, key: bytes) -> WriteTicket:
        """An update of an existing key: the next version of that key."""
        with self._lock:
            version = self._next_version.get(key, 1)
            self._next_version[key] = version + 1
            candidates = self._candidates.setdefault(key, {0: True})
            done = tuple(v for v, completed in candidates.items() if completed)
            candidates[version] = False
        return WriteTicket(version, done)

    def end_write(self, key: bytes, ticket: WriteTicket) -> None:
        """The write of ``ticket`` was acknowledged by the store."""
        with self._lock:
            candidates = self._candidates[key]
            for v in ticket.supersedes:
                candidates.pop(v, None)
            candidates[ticket.version] = True

    def begin_read(self, key: bytes) -> ReadCheck:
        with self._lock:
            candidates = self._candidates.get(key)
            return ReadCheck(frozenset(candidates) if candidates is not None else frozenset((0,)),
                             self._next_version.get(key, 1))

    def end_read(self, key: bytes, check: ReadCheck, value: bytes | None) -> bool:
        """Check what a read of ``key`` returned; False (and a mismatch
        recorded) when it cannot be the last value written."""
        if value is None:
            problem = "missing"
        else:
            version = self._values.version_of(key, value)
            if version is None:
                problem = f"not a value of this key ({len(value)} bytes)"
            else:
                with self._lock:
                    issued = self._next_version.get(key, 1)
                if version in check.candidates or check.next_version <= version < issued:
                    problem = None
                else:
                    problem = f"stale version {version}, expected one of {sorted(check.candidates)}"
        with self._lock:
            self.report.reads_checked += 1
            if problem is None:
                return True
            self.report.mismatches += 1
            if len(self.report.examples) < _EXAMPLES:
                self.report.examples.append(f"{key!r}: {problem}")
            return False

    def check_scan(self, start: bytes, items: list[tuple[bytes, bytes]], limit: int) -> bool:
        """A scan's items: keys ascending from ``start``, at most ``limit``,
        every value one this driver wrote for its key.  (A scan is not checked
        for staleness: that would need the candidates of every key in range.)"""
        problem = None
        if len(items) > limit:
            problem = f"scan from {start!r} returned {len(items)} items, limit {limit}"
        previous = None
        for key, value in items:
            if problem is not None:
                break
            if key < start or (previous is not None and key <= previous):
                problem = f"scan from {start!r}: key {key!r} out of order"
            elif self._values.version_of(key, value) is None:
                problem = f"scan from {start!r}: {key!r} holds bytes that are no value of it"
            previous = key
        with self._lock:
            self.report.reads_checked += len(items)
            if problem is None:
                return True
            self.report.mismatches += 1
            if len(self.report.examples) < _EXAMPLES:
                self.report.examples.append(problem)
            return False
