"""The ``hedge`` command: look into and operate a database from a shell.

    hedge stats DB             levels, WAL, compaction, cache and I/O counters
    hedge get DB KEY           print the value stored under KEY
    hedge put DB KEY [VALUE]   store VALUE (read from stdin when left out)
    hedge remove DB KEY...     remove keys (one atomic batch)
    hedge scan DB              print key/value pairs in key order
    hedge check DB             verify every checksum without opening the database
    hedge dump FILE            print a table's entries or a WAL's or manifest's records
    hedge compact DB           flush, compact a key range (--start/--end), then until none is due
    hedge checkpoint DB TARGET a copy of DB that opens as a database of its own
    hedge repair DB            rebuild the manifest of a closed database from its tables and WALs
    hedge bench [ARGS...]      the YCSB benchmark (python -m perf.ycsb) from a source checkout

Exit status: 0 on success; 1 on a failure (an error, damage found by check
or dump, a key get did not find); 2 for bad arguments.  Errors are one line
on stderr.  Each command runs on the calling thread and returns when done;
``main`` is the console entry point.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import hedge
from hedge.errors import HedgeError
from hedge.lsm import filenames
from hedge.lsm.compression import codec_name
from hedge.lsm.keys import Kind, prefix_end

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

IO_METHODS = ("auto", "io_uring", "threads", "sync")
INPUTS = ("utf8", "hex")
OUTPUTS = ("text", "hex", "raw")

EPILOG = """\
keys and values: given on the command line as UTF-8 text (--input utf8, the
default) or as hex digits (--input hex, for binary keys).  Printed as text
(--output text, the default: UTF-8 where it decodes and is printable, other
bytes as \\xNN escapes and a backslash as \\\\, so every entry is one line), as
hex (--output hex), or as the stored bytes (--output raw).  -x is
--input hex --output hex.  The empty key is a key: give it as an empty
argument ('' in the shell), e.g. hedge put DB '' VALUE; hedge scan prints
it as an empty field before the tab.

exit status: 0 success; 1 failure (an error, damage found, a key not found);
2 bad arguments.
"""


class CommandError(Exception):
    """A failure the command reports in one line (exit status 1)."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors in the one-line form of the others."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- bytes in and out -------------------------------------------------------------
def parse_bytes(text: str, fmt: str, what: str) -> bytes:
    """``text`` from the command line as bytes: UTF-8 (the exact bytes the
    shell passed) or hex.  Raises CommandError for bad hex."""
    if fmt == "hex":
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise CommandError(f"{what} {text!r} is not hex digits") from None
    return os.fsencode(text)


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape(data: bytes) -> str:
    """``data`` as one line of text: printable UTF-8 as is, other bytes as
    \\xNN (characters as \\uNNNN), a backslash doubled."""
    out = []
    for ch in data.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif not ch.isprintable():
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


class Output:
    """Writes keys and values to stdout in the chosen format."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self._out = sys.stdout.buffer

    def show(self, data: bytes) -> bytes:
        if self.fmt == "raw":
            return data
        text = data.hex() if self.fmt == "hex" else escape(data)
        return text.encode("utf-8", "surrogateescape")

    def line(self, *fields: bytes | str) -> None:
        parts = [f.encode() if isinstance(f, str) else self.show(f) for f in fields]
        self._out.write(b"\t".join(parts) + b"\n")

    def value(self, data: bytes) -> None:
        """One value alone: as a line, or its bytes exactly (raw)."""
        if self.fmt == "raw":
            self._out.write(data)
        else:
            self.line(data)

    def flush(self) -> None:
        self._out.flush()


# -- opening ------------------------------------------------------------------------
# A command is one short job on the calling thread: one foreground thread,
# unpinned (pinning reads the CPU topology, which costs more than most
# commands); compact keeps the default background pool.
COMMAND_OPTIONS = dict(pin=False, foreground_threads=1, background_threads=1)


def open_database(args, create: bool = False, **options):
    """The database at args.db, opened for writing (it takes the LOCK), or
    with read_only=True for the commands that only read (the LOCK shared:
    beside other readers, not beside a writer; nothing written)."""
    return hedge.open(args.db, create=create, io_method=args.io_method, **{**COMMAND_OPTIONS, **options})


# -- commands ---------------------------------------------------------------------------
def _size(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def format_stats(stats: dict) -> str:
    """The interesting part of ``db.stats()`` as a few lines of text."""
    lines = [f"io method    {stats.get('io_method', '?')}; {stats.get('layout', '')}".rstrip("; ")]
    levels = stats.get("levels", [])
    lines.append("level  files  size")
    for i, level in enumerate(levels):
        lines.append(f"L{i:<5} {level.get('files', 0):>5}  {_size(level.get('bytes', 0))}")
    lines.append(f"total  {sum(lv.get('files', 0) for lv in levels):>5}  "
                 f"{_size(sum(lv.get('bytes', 0) for lv in levels))}")
    lines.append(f"memtable     {stats.get('memtable_entries', 0)} entries, {_size(stats.get('memtable_bytes', 0))}; "
                 f"{stats.get('immutable_memtables', 0)} immutable waiting for a flush")
    lines.append(f"last seq     {stats.get('last_seq', 0)}")
    wal = stats.get("wal", {})
    if wal:
        lines.append(f"wal          number {wal.get('number', '?')}; {_size(wal.get('bytes', 0))} written in "
                     f"{wal.get('groups', 0)} group commits, {wal.get('syncs', 0)} syncs")
    comp = stats.get("compaction", {})
    if comp:
        lines.append(f"compaction   {comp.get('flushes', 0)} flushes, {comp.get('count', 0)} compactions "
                     f"({comp.get('trivial_moves', 0)} trivial moves); write amplification "
                     f"{comp.get('write_amplification', 0):.2f}")
    cache = stats.get("cache")
    if cache:
        lookups = cache.get("hits", 0) + cache.get("misses", 0)
        rate = f", hit rate {cache.get('hits', 0) / lookups:.1%}" if lookups else ""
        lines.append(f"cache        {_size(cache.get('bytes', 0))} of {_size(cache.get('capacity', 0))}"
                     f"{rate}")
    error = stats.get("background_error")
    lines.append(f"background   {'error: ' + str(error) if error else 'no error'}")
    return "\n".join(lines)


def cmd_stats(args) -> int:
    with open_database(args, read_only=True) as db:
        stats = db.stats()
    print(json.dumps(stats, indent=2, default=str) if args.json else format_stats(stats))
    return EXIT_OK


def cmd_get(args) -> int:
    key = parse_bytes(args.key, args.input, "key")
    with open_database(args, read_only=True) as db:
        value = db.get(key)
    if value is None:
        raise CommandError(f"not found: {args.key or '(the empty key)'}")
    out = Output(args.output)
    out.value(value)
    out.flush()
    return EXIT_OK


def cmd_put(args) -> int:
    key = parse_bytes(args.key, args.input, "key")
    value = sys.stdin.buffer.read() if args.value is None else parse_bytes(args.value, args.input, "value")
    with open_database(args, create=args.create) as db:
        db.put(key, value, sync=args.sync)
    return EXIT_OK


def cmd_remove(args) -> int:
    batch = hedge.WriteBatch()
    for key in args.keys:
        batch.remove(parse_bytes(key, args.input, "key"))
    with open_database(args) as db:
        db.write(batch, sync=args.sync)
    return EXIT_OK


def cmd_scan(args) -> int:
    start = parse_bytes(args.start, args.input, "--start") if args.start is not None else None
    end = parse_bytes(args.end, args.input, "--end") if args.end is not None else None
    if args.prefix is not None:
        prefix = parse_bytes(args.prefix, args.input, "--prefix")
        if prefix:
            start = prefix if start is None else max(start, prefix)
            bound = prefix_end(prefix)
            end = bound if end is None else (end if bound is None else min(end, bound))
    if args.limit is not None and args.limit < 0:
        raise CommandError("--limit must be >= 0")
    out = Output(args.output)
    with open_database(args, read_only=True) as db:
        pairs = db.scan(start, end, reverse=args.reverse)
        for i, (key, value) in enumerate(pairs):
            if args.limit is not None and i >= args.limit:
                break
            if args.keys_only:
                out.line(key)
            else:
                out.line(key, value)
    out.flush()
    return EXIT_OK


def cmd_check(args) -> int:
    from hedge.offline import check

    report = check(args.db)
    for problem in report.problems:
        print(problem)
    if args.verbose:
        for note in report.notes:
            print(f"note: {note}")
    print(report.summary())
    return EXIT_OK if report.sound else EXIT_FAILURE


def cmd_dump(args) -> int:
    from hedge.offline import TableFile, manifest_edits, wal_batches

    path = args.file
    if os.path.isdir(path):
        raise CommandError(f"{path} is a directory: dump takes one file, a table (NNNNNN.sst), "
                           "a WAL (NNNNNN.wal) or a manifest (MANIFEST-NNNNNN)")
    kind = args.kind or _file_kind(path)
    out = Output(args.output)
    limit = args.limit
    shown = 0
    try:
        if kind == "sst":
            with TableFile(path) as table:
                props = table.properties
                footer = table.reader.footer
                print(f"# table {os.path.basename(path)}: {props.entry_count} entries in {props.block_count} blocks, "
                      f"seq {props.smallest_seq}..{props.largest_seq}, {props.deletes} deletes, "
                      f"{props.file_size} bytes, format {footer.version}, "
                      f"compression {codec_name(footer.compression)}", flush=True)
                for key, seq, entry_kind, value in table.entries():
                    if limit is not None and shown >= limit:
                        break
                    out.line(key, str(seq), Kind(entry_kind).name, value)
                    shown += 1
        elif kind == "wal":
            print(f"# WAL {os.path.basename(path)}: offset, seq, kind, key, value", flush=True)
            for offset, first_seq, ops in wal_batches(path):
                for i, (op_kind, key, value) in enumerate(ops):
                    if limit is not None and shown >= limit:
                        return EXIT_OK
                    out.line(str(offset), str(first_seq + i), Kind(op_kind).name, key,
                             *((value,) if op_kind == Kind.PUT else ()))
                    shown += 1
        else:
            print(f"# manifest {os.path.basename(path)}: one version edit per line", flush=True)
            for offset, edit in manifest_edits(path):
                if limit is not None and shown >= limit:
                    break
                out.line(str(offset), _describe_edit(edit, out))
                shown += 1
    finally:
        out.flush()
    return EXIT_OK


def _file_kind(path: str) -> str:
    parsed = filenames.parse(os.path.basename(path))
    if parsed is None:
        raise CommandError(f"{os.path.basename(path)} is not named like a table, WAL or manifest: "
                           "say which with --kind")
    return parsed[0]


def _describe_edit(edit, out: Output) -> str:
    parts = []
    for name in ("wal_number", "next_file_number", "last_seq"):
        value = getattr(edit, name)
        if value is not None:
            parts.append(f"{name}={value}")
    for level, key in sorted(edit.compact_pointers.items()):
        parts.append(f"compact_pointer[L{level}]={out.show(key).decode('utf-8', 'replace')}")
    for level, number in sorted(edit.deleted_files):
        parts.append(f"delete L{level} {filenames.table_name(number)}")
    for level, meta in edit.added_files:
        parts.append(f"add L{level} {filenames.table_name(meta.number)} ({meta.size} bytes, {meta.entries} entries, "
                     f"keys {out.show(meta.smallest_key).decode('utf-8', 'replace')}.."
                     f"{out.show(meta.largest_key).decode('utf-8', 'replace')}, "
                     f"seq {meta.smallest_seq}..{meta.largest_seq})")
    return "; ".join(parts) or "(empty edit)"


def cmd_compact(args) -> int:
    start = parse_bytes(args.start, args.input, "--start") if args.start is not None else None
    end = parse_bytes(args.end, args.input, "--end") if args.end is not None else None
    with open_database(args, background_threads=None) as db:
        before = [lv["files"] for lv in db.stats()["levels"]]
        db.compact(start, end)
        after = [lv["files"] for lv in db.stats()["levels"]]
    print(f"compacted: files per level {_levels(before)} -> {_levels(after)}")
    return EXIT_OK


def cmd_checkpoint(args) -> int:
    with open_database(args) as db:
        db.checkpoint(args.target)
    print(f"checkpoint written to {args.target}")
    return EXIT_OK


def cmd_repair(args) -> int:
    report = hedge.repair(args.db, io_method=args.io_method, **COMMAND_OPTIONS)
    for name, why in report.tables_moved:
        print(f"moved aside: {name}: {why}")
    for line in report.wal_damage:
        print(f"WAL damage: {line}")
    print(report.summary())
    return EXIT_OK


def _levels(files: list[int]) -> str:
    return " ".join(f"L{i}:{n}" for i, n in enumerate(files) if n) or "none"


# -- bench ------------------------------------------------------------------------------
BENCH_MISSING = ("hedge bench runs the YCSB driver in perf/, which is not part of the installed package: "
                 "get hedge's source and run `make bench` there (or `pip install -e .` in it, then `hedge bench`)")


def load_ycsb():
    """perf.ycsb from the source checkout this hedge was installed from
    (an editable install), else from the import path; None when neither
    has it."""
    root = Path(hedge.__file__).resolve().parent.parent
    if (root / "perf" / "ycsb.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from perf import ycsb
    except ImportError:
        return None
    return ycsb if hasattr(ycsb, "build_parser") and hasattr(ycsb, "main") else None


def cmd_bench(argv: list[str]) -> int:
    ycsb = load_ycsb()
    if ycsb is None:
        raise CommandError(BENCH_MISSING)
    return ycsb.main(argv)


# -- the parser -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="hedge", description="Look into and operate a hedge database.",
                             epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hedge {hedge.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_ArgumentParser)

    def command(name: str, help: str, func, db: bool = True, keys: bool = False, output: bool = False):
        p = sub.add_parser(name, help=help, description=help, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        if db:
            p.add_argument("db", metavar="DB", help="the database directory")
        if keys:
            p.add_argument("--input", choices=INPUTS, default="utf8",
                           help="how keys and values are given (default: utf8)")
        if output:
            p.add_argument("--output", choices=OUTPUTS, default="text",
                           help="how keys and values are printed (default: text)")
        if keys or output:
            p.add_argument("-x", "--hex", action="store_true", help="--input hex and --output hex")
        return p

    def opens(p):
        p.add_argument("--io-method", choices=IO_METHODS, default="auto",
                       help="the I/O method (default: auto, or HEDGE_IO_METHOD)")
        return p

    p = opens(command("stats", "print levels, WAL, compaction, cache and I/O counters", cmd_stats))
    p.add_argument("--json", action="store_true", help="everything db.stats() returns, as JSON")

    p = opens(command("get", "print the value stored under KEY (exit 1 when absent)", cmd_get,
                      keys=True, output=True))
    p.add_argument("key", metavar="KEY")

    p = opens(command("put", "store VALUE under KEY", cmd_put, keys=True))
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE", nargs="?", help="the value (default: read from stdin, as bytes)")
    p.add_argument("--sync", action="store_true", help="return once the write is on stable storage")
    p.add_argument("--create", action="store_true", help="create the database when it does not exist")

    p = opens(command("remove", "remove KEYs, in one atomic batch", cmd_remove, keys=True))
    p.add_argument("keys", metavar="KEY", nargs="+")
    p.add_argument("--sync", action="store_true", help="return once the removal is on stable storage")

    p = opens(command("scan", "print key/value pairs in key order, a tab between key and value", cmd_scan,
                      keys=True, output=True))
    p.add_argument("--start", metavar="KEY", help="first key (inclusive)")
    p.add_argument("--end", metavar="KEY", help="end key (exclusive)")
    p.add_argument("--prefix", metavar="BYTES", help="only keys starting with BYTES (within --start/--end)")
    p.add_argument("--limit", metavar="N", type=int, help="print at most N pairs")
    p.add_argument("--reverse", action="store_true", help="descending key order (streamed, as forward)")
    p.add_argument("--keys-only", action="store_true", help="print keys only")

    p = command("check", "verify the checksums of every table block, the manifest and the WALs, reading the "
                         "files directly (the database must not be open); exit 1 when damaged", cmd_check)
    p.add_argument("-v", "--verbose", action="store_true", help="also list the files the next open removes")

    p = command("dump", "print one file: a table's entries (key, seq, kind, value), a WAL's writes "
                        "(record offset, seq, kind, key, value) or a manifest's version edits", cmd_dump,
                db=False, output=True)
    p.add_argument("file", metavar="FILE", help="NNNNNN.sst, NNNNNN.wal or MANIFEST-NNNNNN")
    p.add_argument("--kind", choices=("sst", "wal", "manifest"), help="the file's kind, when its name does not say")
    p.add_argument("--limit", metavar="N", type=int, help="print at most N entries")

    p = opens(command("compact", "flush the memtables; with --start/--end, merge every table overlapping "
                                 "that key range down to the deepest level holding it; then compact until no "
                                 "compaction is due", cmd_compact, keys=True))
    p.add_argument("--start", metavar="KEY", help="first key of the range (default: unbounded)")
    p.add_argument("--end", metavar="KEY", help="last key of the range (default: unbounded)")

    p = opens(command("checkpoint", "write a consistent copy of DB into TARGET (missing or empty) that opens as "
                                    "a database of its own: tables hard-linked, a fresh manifest", cmd_checkpoint))
    p.add_argument("target", metavar="TARGET", help="the new database's directory")

    opens(command("repair", "rebuild the manifest of a closed database from the tables and WALs present: "
                            "damaged tables are moved into DB/lost/, the rest and the WALs' writes merged "
                            "into new tables", cmd_repair))

    sub.add_parser("bench", help="run the YCSB benchmark (python -m perf.ycsb; needs a source checkout); "
                                 "`hedge bench --help` lists its flags", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); return the
    exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["bench"]:
            return cmd_bench(argv[1:])
        args = build_parser().parse_args(argv)
        if getattr(args, "hex", False):
            if hasattr(args, "input"):
                args.input = "hex"
            if hasattr(args, "output"):
                args.output = "hex"
        return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``hedge scan DB | head``): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except (CommandError, HedgeError, OSError, ValueError, TypeError) as e:
        _error(_describe(e))
        return EXIT_FAILURE
    except Exception as e:  # noqa: BLE001 - the command line shows no traceback
        _error(f"unexpected {type(e).__name__}: {e}")
        return EXIT_FAILURE


def _describe(e: Exception) -> str:
    if isinstance(e, (CommandError, HedgeError)):
        return str(e)
    if isinstance(e, OSError) and e.filename:
        return f"{e.strerror or e}: {e.filename}"
    return str(e) or type(e).__name__


def _error(message: str) -> None:
    sys.stderr.write("hedge: " + " ".join(message.split("\n")) + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
