"""A workload: the mix of operations of a run phase and how they pick records.

The standard workloads are YCSB's core workloads A-F:

    A  50% read, 50% update                     zipfian
    B  95% read,  5% update                     zipfian
    C 100% read                                 zipfian
    D  95% read,  5% insert                     latest
    E  95% scan (length uniform 1..100), 5% insert   zipfian
    F  50% read, 50% read-modify-write          zipfian

A record is one value (YCSB's fields stored together), so an update rewrites
the whole record (YCSB's writeallfields=true) and a read returns all of it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from perf.generators import REQUEST_DISTRIBUTIONS, SCAN_LENGTH_DISTRIBUTIONS

# Operation names, as they appear in reports and JSON.
READ, UPDATE, INSERT, SCAN, RMW = "read", "update", "insert", "scan", "rmw"
OPERATIONS = (READ, UPDATE, INSERT, SCAN, RMW)


@dataclass(frozen=True)
class Workload:
    name: str
    read: float = 0.0
    update: float = 0.0
    insert: float = 0.0
    scan: float = 0.0
    rmw: float = 0.0
    request_distribution: str = "zipfian"
    min_scan_length: int = 1
    max_scan_length: int = 100
    scan_length_distribution: str = "uniform"

    def __post_init__(self) -> None:
        weights = self.proportions().values()
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"workload {self.name}: proportions must be >= 0 with a positive sum")
        if self.request_distribution not in REQUEST_DISTRIBUTIONS:
            raise ValueError(f"workload {self.name}: request distribution must be one of "
                             f"{REQUEST_DISTRIBUTIONS}, not {self.request_distribution!r}")
        if self.scan_length_distribution not in SCAN_LENGTH_DISTRIBUTIONS:
            raise ValueError(f"workload {self.name}: scan length distribution must be one of "
                             f"{SCAN_LENGTH_DISTRIBUTIONS}, not {self.scan_length_distribution!r}")
        if not 1 <= self.min_scan_length <= self.max_scan_length:
            raise ValueError(f"workload {self.name}: need 1 <= min scan length <= max scan length")

    def proportions(self) -> dict[str, float]:
        """Operation name -> proportion, every operation listed."""
        return {READ: self.read, UPDATE: self.update, INSERT: self.insert, SCAN: self.scan, RMW: self.rmw}

    def replace(self, **changes) -> "Workload":
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line: the mix and the distributions, e.g. 'read 50% update 50%, zipfian'."""
        mix = " ".join(f"{op} {w * 100:g}%" for op, w in self.proportions().items() if w > 0)
        text = f"{mix}, {self.request_distribution}"
        if self.scan > 0:
            text += (f", scan length {self.scan_length_distribution} "
                     f"{self.min_scan_length}..{self.max_scan_length}")
        return text

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


STANDARD: dict[str, Workload] = {
    "A": Workload("A", read=0.5, update=0.5),
    "B": Workload("B", read=0.95, update=0.05),
    "C": Workload("C", read=1.0),
    "D": Workload("D", read=0.95, insert=0.05, request_distribution="latest"),
    "E": Workload("E", scan=0.95, insert=0.05),
    "F": Workload("F", read=0.5, rmw=0.5),
}


def standard(names: str) -> list[Workload]:
    """Workloads from a comma-separated list of letters ("A,B,C" or "all").
    Raises ValueError for an unknown letter."""
    if names.strip().lower() == "all":
        return list(STANDARD.values())
    chosen = []
    for part in names.split(","):
        letter = part.strip().upper()
        if letter.startswith("WORKLOAD"):
            letter = letter[len("WORKLOAD"):]
        if letter not in STANDARD:
            raise ValueError(f"unknown workload {part.strip()!r}; choose among {', '.join(STANDARD)} or 'all'")
        chosen.append(STANDARD[letter])
    return chosen
