"""YCSB workload files: Java ``.properties`` text -> a Workload plus the run
settings the file fixes (record count, operation count, value layout, ...).

Parsing follows java.util.Properties: ``#`` or ``!`` starts a comment line; a
key ends at the first unescaped ``=``, ``:`` or white space; a line ending in
an odd number of backslashes continues on the next (its leading white space
dropped); ``\\t \\n \\r \\f \\uXXXX`` and backslash-escaped characters are
unescaped.  Later keys replace earlier ones.

Properties not set take YCSB CoreWorkload's defaults (read 0.95, update 0.05,
uniform requests, scans up to 1000 long, 10 fields of 100 bytes, hashed
insert order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from perf.keys import INSERT_ORDERS
from perf.workload import Workload

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}

# Properties that describe YCSB's Java runtime or options hedge's driver has
# no use for; they are accepted and listed as ignored.
_IGNORED = {
    "workload", "db", "exporter", "exportfile", "table", "readallfields", "writeallfields",
    "measurementtype", "histogram.buckets", "timeseries.granularity", "status.interval",
    "dataintegrity", "fieldnameprefix", "core_workload_insertion_retry_limit",
    "core_workload_insertion_retry_interval",
}


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and i + 6 <= len(text):
            out.append(chr(int(text[i + 2:i + 6], 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _logical_lines(text: str):
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def parse_properties(text: str) -> dict[str, str]:
    """Key -> value of a .properties text."""
    props: dict[str, str] = {}
    for line in _logical_lines(text):
        i, n = 0, len(line)
        while i < n:
            c = line[i]
            if c == "\\":
                i += 2
                continue
            if c in "=: \t\f":
                break
            i += 1
        key = line[:i]
        rest = line[i:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        props[_unescape(key)] = _unescape(rest)
    return props


@dataclass
class WorkloadFile:
    """What a properties file says: the workload and the run settings it
    fixes (None where the file is silent), plus the keys it ignored."""

    workload: Workload
    records: int | None = None
    operations: int | None = None
    fields: int | None = None
    field_length: int | None = None
    insert_order: str | None = None
    clients: int | None = None
    seconds: float | None = None
    ignored: list[str] = field(default_factory=list)


def _int(props: dict[str, str], key: str) -> int | None:
    if key not in props:
        return None
    try:
        return int(props[key])
    except ValueError:
        raise ValueError(f"property {key} must be an integer, not {props[key]!r}") from None


def _float(props: dict[str, str], key: str, default: float) -> float:
    if key not in props:
        return default
    try:
        return float(props[key])
    except ValueError:
        raise ValueError(f"property {key} must be a number, not {props[key]!r}") from None


def workload_from_properties(props: dict[str, str], name: str) -> WorkloadFile:
    """The workload and settings of parsed properties.  Raises ValueError for
    a malformed number, an unsupported distribution or an unknown key.
    Values are read without surrounding white space."""
    props = {k: v.strip() for k, v in props.items()}
    known = {
        "recordcount", "operationcount", "readproportion", "updateproportion", "scanproportion",
        "insertproportion", "readmodifywriteproportion", "requestdistribution", "minscanlength",
        "maxscanlength", "scanlengthdistribution", "fieldcount", "fieldlength", "insertorder",
        "threadcount", "maxexecutiontime", "fieldlengthdistribution",
    }
    unknown = sorted(k for k in props if k not in known and k not in _IGNORED)
    if unknown:
        raise ValueError(f"unknown properties: {', '.join(unknown)}")
    if props.get("fieldlengthdistribution", "constant") != "constant":
        raise ValueError("only fieldlengthdistribution=constant is supported")
    insert_order = props.get("insertorder")
    if insert_order is not None and insert_order not in INSERT_ORDERS:
        raise ValueError(f"insertorder must be one of {INSERT_ORDERS}, not {insert_order!r}")
    workload = Workload(
        name=name,
        read=_float(props, "readproportion", 0.95),
        update=_float(props, "updateproportion", 0.05),
        insert=_float(props, "insertproportion", 0.0),
        scan=_float(props, "scanproportion", 0.0),
        rmw=_float(props, "readmodifywriteproportion", 0.0),
        request_distribution=props.get("requestdistribution", "uniform"),
        min_scan_length=_int(props, "minscanlength") or 1,
        max_scan_length=_int(props, "maxscanlength") or 1000,
        scan_length_distribution=props.get("scanlengthdistribution", "uniform"),
    )
    seconds = _int(props, "maxexecutiontime")
    return WorkloadFile(
        workload=workload,
        records=_int(props, "recordcount"),
        operations=_int(props, "operationcount"),
        fields=_int(props, "fieldcount"),
        field_length=_int(props, "fieldlength"),
        insert_order=insert_order,
        clients=_int(props, "threadcount"),
        seconds=float(seconds) if seconds else None,
        ignored=sorted(k for k in props if k in _IGNORED),
    )


def load_workload_file(path: str | Path) -> WorkloadFile:
    """Parse a YCSB workload file; the workload is named after the file."""
    path = Path(path)
    return workload_from_properties(parse_properties(path.read_text()), path.stem)
