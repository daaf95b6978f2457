"""``python -m perf.ycsb``: the YCSB-style benchmark of hedge and its peers.

Loads the same records into every store, runs the same workloads (the same
client operation streams) against each, prints the environment, each store's
durability and cache settings and a table of throughput and latency
percentiles, and writes results.json plus PNG plots to a results folder.

Exit status: 0 when every store that ran finished (and, with --verify, every
read returned the last value written); 1 otherwise; 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from perf import environment, plots, report, stores
from perf.driver import RunConfig, StoreBenchmark, StoreResult
from perf.generators import REQUEST_DISTRIBUTIONS
from perf.keys import INSERT_ORDERS, KeySpace
from perf.progress import MODES as PROGRESS_MODES
from perf.properties import load_workload_file
from perf.stores.base import StoreConfig
from perf.values import HEADER_BYTES, ValueFactory
from perf.workload import Workload, standard

DEFAULT_STORES = "hedge,hedge-threads,rocksdict,plyvel,lmdb,sqlite"
DEFAULT_WORKLOADS = "A,B,C,E,F"
DEFAULT_RECORDS = 200_000
DEFAULT_OPERATIONS = 100_000
DEFAULT_CLIENTS = 64
DEFAULT_FIELDS = 10
DEFAULT_FIELD_LENGTH = 100
DEFAULT_CACHE = 64 << 20

EPILOG = """\
workloads (YCSB core workloads; a record is one value of --fields x --field-length bytes):
  A  50% read / 50% update, zipfian        D  95% read / 5% insert, latest
  B  95% read / 5% update, zipfian         E  95% scan (length uniform 1..100) / 5% insert, zipfian
  C  100% read, zipfian                    F  50% read / 50% read-modify-write, zipfian

request distributions: uniform; zipfian (constant 0.99, scrambled over the key space by
FNV hashing as YCSB's ScrambledZipfianGenerator does); latest (recent inserts favoured).
Keys are "user" + FNV-1a 64 hash of the record number (insert order hashed) or
"user" + the zero-padded record number (--insert-order ordered).

phases: load (records inserted by the clients, no per-write fsync, store closed and
reopened), then each workload for --operations operations (or --seconds). Latency is
measured around each store call; percentiles come from log-linear histograms (< 0.8%
error). Concurrency: hedge runs --clients coroutines on its foreground executor; peers
whose binding releases the GIL (plyvel, lmdb, sqlite3) run a thread per client; rocksdict,
which holds the GIL, runs the same client streams round-robin on one thread.

durability: by default no store fsyncs its writes; --sync makes every write durable
before it is acknowledged (hedge sync=True with group commit, rocksdict WriteOptions.sync,
plyvel sync=True, lmdb sync, sqlite synchronous=FULL).
cold mode (--cold): cache --cache-bytes (default: data size / 8), hedge direct_io=True,
rocksdict use_direct_reads; the page cache is dropped before each workload (needs root);
stores that cannot bypass the page cache are marked so in the report.

A YCSB workload file (--properties) replaces --workloads; its recordcount,
operationcount, fieldcount, fieldlength, insertorder, threadcount and maxexecutiontime
apply unless given as flags.
"""


def _size(text: str) -> int:
    """Bytes from '64M', '1G', '4096', '512k'."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 4096, 64M, 1G)")
    shift = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[match.group(2).lower()]
    return int(match.group(1)) << shift


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m perf.ycsb", description=__doc__.split("\n\n")[1],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to run")
    g.add_argument("--stores", default=DEFAULT_STORES,
                   help=f"comma-separated stores (default: {DEFAULT_STORES}); one not installed is skipped")
    g.add_argument("--workloads", default=None,
                   help=f"comma-separated workloads A-F or 'all' (default: {DEFAULT_WORKLOADS})")
    g.add_argument("--properties", metavar="FILE",
                   help="a YCSB workload file (recordcount, operationcount, readproportion, updateproportion, "
                        "scanproportion, insertproportion, readmodifywriteproportion, requestdistribution, "
                        "minscanlength, maxscanlength, scanlengthdistribution, fieldcount, fieldlength, "
                        "insertorder, threadcount, maxexecutiontime); run instead of --workloads")
    g = p.add_argument_group("data and operations")
    g.add_argument("--records", type=_positive, help=f"records loaded (default: {DEFAULT_RECORDS:,})")
    g.add_argument("--operations", type=_positive,
                   help=f"operations per workload, split over the clients (default: {DEFAULT_OPERATIONS:,})")
    g.add_argument("--seconds", type=float, help="stop a workload after this many seconds (default: no limit)")
    g.add_argument("--fields", type=_positive, help=f"fields per record (default: {DEFAULT_FIELDS})")
    g.add_argument("--field-length", type=_positive,
                   help=f"bytes per field (default: {DEFAULT_FIELD_LENGTH}); a record is stored as one value")
    g.add_argument("--value-size", type=_positive,
                   help="bytes per value, overriding fields x field length (e.g. --value-size 100 for "
                        f"100-byte values; at least {HEADER_BYTES})")
    g.add_argument("--distribution", choices=REQUEST_DISTRIBUTIONS,
                   help="request distribution for every workload (default: each workload's own)")
    g.add_argument("--insert-order", choices=INSERT_ORDERS, help="key naming (default: hashed)")
    g.add_argument("--clients", type=_positive,
                   help=f"concurrent clients per store (default: {DEFAULT_CLIENTS})")
    g.add_argument("--threads", type=_positive,
                   help="threads for peers whose binding releases the GIL (plyvel, lmdb, sqlite), each "
                        "running its share of the clients round-robin (default: one per client)")
    g.add_argument("--seed", type=int, default=1, help="seed of the client operation streams (default: 1)")
    g = p.add_argument_group("store settings")
    g.add_argument("--sync", action="store_true",
                   help="every write durable (fsync/fdatasync) before it is acknowledged")
    g.add_argument("--cold", action="store_true",
                   help="data several times the cache, direct reads where possible, page cache dropped "
                        "before each workload")
    g.add_argument("--cache-bytes", type=_size,
                   help="block cache per store, e.g. 64M (default: 64M; with --cold: data size / 8)")
    g.add_argument("--io-method", default="auto", choices=("auto", "io_uring", "threads", "sync"),
                   help="hedge's I/O method (default: auto)")
    g = p.add_argument_group("output")
    g.add_argument("--db-dir", help="where the stores live (default: a temporary directory removed at the "
                                    "end); one subdirectory per store, which must not exist yet; kept")
    g.add_argument("--results", help="results folder (default: results/<timestamp>/)")
    g.add_argument("--verify", action="store_true",
                   help="check that every read returns the value last written (reports mismatches)")
    g.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                   help="live progress bar on stderr: auto (when a terminal), always, never")
    g.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    return p


@dataclasses.dataclass
class Plan:
    config: RunConfig
    workloads: list[Workload]
    stores: list[str]
    notes: list[str]


def make_plan(args: argparse.Namespace) -> Plan:
    """Flags over the properties file over the defaults.  Raises ValueError."""
    notes: list[str] = []
    file = None
    if args.properties:
        file = load_workload_file(args.properties)
        if file.ignored:
            notes.append(f"{args.properties}: ignored {', '.join(file.ignored)}")
        if args.workloads:
            raise ValueError("give either --workloads or --properties, not both")
        workloads = [file.workload]
    else:
        workloads = standard(args.workloads or DEFAULT_WORKLOADS)
    if args.distribution:
        workloads = [w.replace(request_distribution=args.distribution) for w in workloads]

    def pick(flag, from_file, default):
        if flag is not None:
            return flag
        return from_file if from_file is not None else default

    records = pick(args.records, file and file.records, DEFAULT_RECORDS)
    operations = pick(args.operations, file and file.operations, DEFAULT_OPERATIONS)
    fields = pick(args.fields, file and file.fields, DEFAULT_FIELDS)
    field_length = pick(args.field_length, file and file.field_length, DEFAULT_FIELD_LENGTH)
    value_size = args.value_size if args.value_size is not None else fields * field_length
    if value_size < HEADER_BYTES:
        raise ValueError(f"values must be at least {HEADER_BYTES} bytes")
    clients = pick(args.clients, file and file.clients, DEFAULT_CLIENTS)
    seconds = pick(args.seconds, file and file.seconds, None)
    if seconds is not None and seconds <= 0:
        raise ValueError("--seconds must be > 0")
    insert_order = pick(args.insert_order, file and file.insert_order, "hashed")
    data = data_bytes(records, value_size, insert_order)
    cache = args.cache_bytes
    if cache is None:
        cache = max(1 << 20, data // 8) if args.cold else DEFAULT_CACHE
    if args.cold and data < 3 * cache:
        notes.append(f"cold mode: the data ({data:,} B) is only {data / cache:.1f}x the cache; "
                     "use more --records or a smaller --cache-bytes for reads to reach the device")
    names = [s.strip() for s in args.stores.split(",") if s.strip()]
    for name in names:
        if name not in stores.ADAPTERS:
            raise ValueError(f"unknown store {name!r}; known: {', '.join(stores.ADAPTERS)}")
    store_config = StoreConfig(sync=args.sync, cold=args.cold, cache_bytes=cache, clients=clients,
                               threads=args.threads,
                               io_method=args.io_method, expected_bytes=2 * data + (64 << 20))
    config = RunConfig(records=records, operations=operations, seconds=seconds, value_size=value_size,
                       insert_order=insert_order, seed=args.seed, verify=args.verify,
                       progress=args.progress, store=store_config)
    return Plan(config, workloads, names, notes)


def data_bytes(records: int, value_size: int, insert_order: str) -> int:
    """Logical bytes of the loaded records (keys and values)."""
    keys = KeySpace(insert_order)
    sample = min(records, 1000)
    key_bytes = sum(len(keys.name(i)) for i in range(sample)) / max(sample, 1)
    return int(records * (key_bytes + value_size))


def _log(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        plan = make_plan(args)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    config = plan.config

    started = time.time()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = Path(args.results or os.path.join("results", stamp))
    temporary = args.db_dir is None
    db_dir = tempfile.mkdtemp(prefix="hedge-ycsb-") if temporary else os.path.abspath(args.db_dir)
    if not temporary:
        os.makedirs(db_dir, exist_ok=True)
        taken = [n for n in plan.stores if os.path.exists(os.path.join(db_dir, n))]
        if taken:
            parser.error(f"--db-dir {db_dir} already holds {', '.join(taken)}; remove them or choose another")

    env = environment.collect(db_dir)
    data = data_bytes(config.records, config.value_size, config.insert_order)
    print(report.format_header(env, config.as_dict(), data, [w.name for w in plan.workloads]))
    for w in plan.workloads:
        print(f"  workload {w.name:<4} {w.describe()}")
    for note in plan.notes:
        print(f"  note: {note}")
    print(flush=True)

    keys = KeySpace(config.insert_order)
    values = ValueFactory(config.value_size)
    results: list[StoreResult] = []
    try:
        for name in plan.stores:
            adapter = stores.load(name)
            reason = adapter.unavailable()
            if reason:
                _log(f"skipping {name}: {reason}")
                results.append(StoreResult(name, "skipped", reason))
                continue
            bench = StoreBenchmark(adapter, config, keys, values, _log)
            results.append(bench.run(os.path.join(db_dir, name), plan.workloads))
    finally:
        if temporary:
            shutil.rmtree(db_dir, ignore_errors=True)

    print()
    print(report.format_settings(results))
    print()
    print(report.format_table(results))

    results_dir.mkdir(parents=True, exist_ok=True)
    title = (f"{config.records:,} records x {config.value_size} B, {config.store.clients} clients, "
             f"{'sync' if config.store.sync else 'no fsync'}{', cold' if config.store.cold else ''}")
    written: list[str] = []
    if not args.no_plots:
        missing = plots.matplotlib_missing()
        if missing:
            print(f"no plots: {missing}")
        else:
            written = plots.write_plots(results, results_dir, title)
    finished = time.time()
    report.write_json(results_dir / "results.json", {
        "started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "finished": datetime.datetime.fromtimestamp(finished).isoformat(timespec="seconds"),
        "duration_s": round(finished - started, 2),
        "command": [sys.executable, "-m", "perf.ycsb", *(sys.argv[1:] if argv is None else argv)],
        "config": config.as_dict(),
        "workloads": [w.as_dict() for w in plan.workloads],
        "notes": plan.notes,
        "environment": env,
        "data_bytes": data,
        "cache_bytes": config.store.cache_bytes,
        "stores": [r.as_dict() for r in results],
        "plots": written,
    })
    print(f"results: {results_dir / 'results.json'}"
          + (f"; plots: {', '.join(str(results_dir / w) for w in written)}" if written else ""))
    print(f"total time {finished - started:.1f} s")

    failed = [r for r in results if r.status == "failed"]
    mismatched = sum(p.verify["mismatches"] for r in results for p in r.phases if p.verify)
    if mismatched:
        print(f"verification: {mismatched} reads did not return the last value written")
    return 1 if failed or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
