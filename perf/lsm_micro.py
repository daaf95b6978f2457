"""CPU per operation inside the LSM data structures (no disk, no executor).

Every figure is microseconds of CPU per operation (the best of a few
timings, in process CPU time so that waiting for a core on a shared machine
does not count), on in-memory data:
tables are built with TableBuilder and read through a ``read`` function that
returns bytes without suspending, so each coroutine is driven by hand and
nothing waits for a device.

Rows (16-byte keys, 100-byte values):
  - table get, block cached: ``await TableReader.get`` of a present key whose
    block is in the block cache; ``get_cached`` is the synchronous fast path
    (only where the reader has one);
  - table get, absent key: a key inside the table's range that it lacks;
  - table get, block read: no cache, the block is "read" and verified;
  - files_for_key: the tables a point lookup probes (4 L0 tables, 3 levels);
  - memtable get / add: 100,000 entries;
  - put encode+insert: WriteBatch, encode, WAL record framing, memtable add
    (what the commit leader does per single-key put, minus the write);
  - scan per entry: the engine's scan merge (visible_merge over a memtable
    cursor, one L0 table and one level of tables), blocks cached;
  - short scan: a seek plus 50 entries over the same sources (per scan);
  - table build per entry: TableBuilder.add .. finish;
  - merge per entry: the compaction runner (``merge_tables``) over 4
    overlapping tables, writing into in-memory tables (per input entry).

    python -m perf.lsm_micro                  # this tree, one run
    python -m perf.lsm_micro --against main   # A/B: REV's hedge/ vs this tree,
                                              # alternated in subprocesses
    python -m perf.lsm_micro --against main --rounds 7 --json out.json
    python -m perf.lsm_micro --only reads,writes   # some groups: GROUPS below

With ``--against`` the named revision's ``hedge/`` is exported to a temporary
directory (plus this tree's built I/O extension, which the LSM code does not
use) and the two trees run alternately, one subprocess per round each; the
table gives the median of each row over the rounds and the ratio
(this tree / REV: below 1 is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROWS = (
    ("get_cached", "table get, block cached (await get)"),
    ("get_cached_sync", "table get_cached, block cached (sync)"),
    ("get_absent", "table get, absent key in range"),
    ("get_read", "table get, block read + verified (no cache)"),
    ("files_for_key", "Version.files_for_key"),
    ("mem_get", "memtable get"),
    ("mem_add", "memtable add"),
    ("put", "put encode+insert (batch, WAL record, memtable)"),
    ("scan_entry", "scan per entry (memtable + L0 + L1)"),
    ("short_scan", "short scan: seek + 50 entries (per scan)"),
    ("build_entry", "table build per entry"),
    ("merge_entry", "compaction merge per input entry (4 tables)"),
)

VALUE = b"v" * 100
GROUPS = ("reads", "version", "writes", "scans", "build", "merge")


def key(i: int) -> bytes:
    return b"user%012d" % i


def drive(coro):
    """Run a coroutine that never suspends (everything is in memory)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("coroutine suspended")


def best_us(fn, n: int, repeat: int = 5) -> float:
    """Best of ``repeat`` timings of ``fn(n)`` (which performs n operations),
    in CPU time of this process: on a shared machine the time spent waiting
    for a core is not counted."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn(n)
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


def build_table(entries, block_bytes: int = 4096):
    from hedge.lsm.table import TableBuilder
    b = TableBuilder(block_bytes=block_bytes)
    for e in entries:
        b.add(*e)
    chunks, props = b.finish()
    return b"".join(d for _, d in chunks)


def open_reader(data: bytes, table_id: int, cache=None):
    from hedge.lsm.table import TableReader

    async def read(offset: int, length: int) -> bytes:
        return data[offset:offset + length]

    return drive(TableReader.open(read, len(data), f"t{table_id}.sst", table_id, cache))


def measure(quick: bool = False, groups=GROUPS) -> dict[str, float]:
    from hedge.lsm.amerge import ListCursor, TableCursor, visible_merge
    from hedge.lsm.batch import WriteBatch
    from hedge.lsm.cache import BlockCache
    from hedge.lsm.keys import Kind
    from hedge.lsm.memtable import Memtable
    from hedge.lsm.version import Version
    from hedge.lsm.version_edit import FileMeta
    from hedge.lsm.wal.format import encode_record

    scale = 4 if quick else 1
    PUT = Kind.PUT
    out: dict[str, float] = {}
    ops_n = 20_000 // scale
    krng = random.Random(2)
    skeys = sorted({krng.randbytes(16) for _ in range(60_000 // scale)})

    # --- point reads on one table -------------------------------------------------
    if "reads" in groups:
        rng = random.Random(1)
        n_table = 20_000 // scale
        data = build_table([(key(i), 5, PUT, VALUE) for i in range(n_table)])
        cache = BlockCache(64 << 20)
        reader = open_reader(data, 1, cache)
        uncached = open_reader(data, 2)
        present = [key(rng.randrange(n_table)) for _ in range(4096)]
        absent = [key(rng.randrange(n_table)) + b"-" for _ in range(4096)]
        for _ in range(2):                      # fill, then first hit (lazy work)
            for k in present:
                assert drive(reader.get(k, 10)) is not None

        def loop_get(r, keys):
            def run(n):
                g = r.get
                for i in range(n):
                    drive(g(keys[i & 4095], 10))
            return run

        out["get_cached"] = best_us(loop_get(reader, present), ops_n)
        if hasattr(reader, "get_cached"):
            def run_sync(n):
                g = reader.get_cached
                for i in range(n):
                    g(present[i & 4095], 10)
            out["get_cached_sync"] = best_us(run_sync, ops_n)
        out["get_absent"] = best_us(loop_get(reader, absent), ops_n)
        out["get_read"] = best_us(loop_get(uncached, present), ops_n // 2)

    # --- files_for_key --------------------------------------------------------------
    if "version" in groups:
        rng = random.Random(3)
        def meta(number, lo, hi, seq):
            return FileMeta(number=number, size=1 << 20, smallest_key=key(lo), largest_key=key(hi),
                            smallest_seq=seq, largest_seq=seq, entries=10, deletes=0)
        l0 = [meta(10**7 + j, 0, 10**6, 10**6 - j) for j in range(4)]
        levels = [l0]
        number = 1
        for level, count in ((1, 10), (2, 100), (3, 1000)):
            width = 10**6 // count
            files = []
            for j in range(count):
                files.append(meta(number, j * width, j * width + width - 1, 5))
                number += 1
            levels.append(files)
        levels += [[]] * (7 - len(levels))
        version = Version(levels)
        probe = [key(rng.randrange(10**6)) for _ in range(4096)]

        def run_ffk(n):
            f = version.files_for_key
            for i in range(n):
                f(probe[i & 4095])
        out["files_for_key"] = best_us(run_ffk, ops_n)

    # --- memtable -------------------------------------------------------------------
    if "writes" in groups:
        rng = random.Random(4)
        n_mem = 100_000 // scale
        mkeys = [rng.randbytes(16) for _ in range(n_mem)]
        mem = Memtable()
        for seq, k in enumerate(mkeys, 1):
            mem.add(k, seq, PUT, VALUE)
        lookups = [mkeys[rng.randrange(n_mem)] for _ in range(4096)]

        def run_mget(n):
            g = mem.get
            for i in range(n):
                g(lookups[i & 4095], n_mem)
        out["mem_get"] = best_us(run_mget, ops_n)

        def run_madd(n):
            m = Memtable()
            for seq in range(n):
                m.add(mkeys[seq], seq + 1, PUT, VALUE)
        out["mem_add"] = best_us(run_madd, n_mem // 2, repeat=3)

        def run_put(n):
            m = Memtable()
            for seq in range(1, n + 1):
                batch = WriteBatch()
                batch.put(mkeys[seq], VALUE)
                payload = batch.encode(seq)
                encode_record(7, payload)
                for k, s, kind, v in batch.entries(seq):
                    m.add(k, s, kind, v)
        out["put"] = best_us(run_put, n_mem // 2, repeat=3)

    # --- scans ------------------------------------------------------------------------
    if "scans" in groups:
        rng = random.Random(5)
        l1_entries = [(k, 10, PUT, VALUE) for k in skeys[0::2]]
        l0_entries = [(k, 20, PUT, VALUE) for k in skeys[1::4]]
        mem_keys = skeys[3::4]
        scan_cache = BlockCache(256 << 20)
        l1 = []
        for j in range(4):
            part = l1_entries[j * len(l1_entries) // 4:(j + 1) * len(l1_entries) // 4]
            l1.append(open_reader(build_table(part), 100 + j, scan_cache))
        l0r = open_reader(build_table(l0_entries), 200, scan_cache)
        smem = Memtable()
        for seq, k in enumerate(mem_keys, 30):
            smem.add(k, seq, PUT, VALUE)
        total = len(l1_entries) + len(l0_entries) + len(mem_keys)

        async def scan(start, end, limit):
            sources = [ListCursor(smem.iter_from(start, end)), TableCursor([l0r], start, end),
                       TableCursor(l1, start, end)]
            count = 0
            async for _ in visible_merge(sources, 10**9):
                count += 1
                if count == limit:
                    break
            return count

        assert drive(scan(None, None, -1)) == total      # warms the cache

        def run_scan(n):
            for _ in range(n):
                drive(scan(None, None, -1))
        out["scan_entry"] = best_us(run_scan, 1, repeat=3) / total
        starts = [skeys[rng.randrange(len(skeys) - 200)] for _ in range(512)]

        def run_short(n):
            for i in range(n):
                drive(scan(starts[i & 511], None, 50))
        out["short_scan"] = best_us(run_short, 2000 // scale)

    # --- table build ----------------------------------------------------------------
    if "build" in groups:
        build_entries = [(k, 10, PUT, VALUE) for k in skeys]

        def run_build(n):
            build_table(build_entries[:n])
        out["build_entry"] = best_us(run_build, len(build_entries), repeat=3)

    # --- compaction merge -------------------------------------------------------------
    if "merge" in groups:
        out["merge_entry"] = merge_per_entry(skeys, scale)
    return out


def merge_per_entry(skeys, scale: int) -> float:
    """``merge_tables`` over 4 overlapping tables, outputs built in memory."""
    from hedge.lsm.compaction import runner
    from hedge.lsm.keys import Kind
    from hedge.lsm.table import TableBuilder

    rng = random.Random(5)
    inputs = []
    seq = 1
    for j in range(4):
        picked = sorted(rng.sample(skeys, len(skeys) // 3))
        entries = []
        for k in picked:
            if rng.random() < 0.95:
                entries.append((k, seq, Kind.PUT, VALUE))
            else:
                entries.append((k, seq, Kind.DELETE, b""))
            seq += 1
        inputs.append(build_table(entries))
    readers = [open_reader(d, 300 + j) for j, d in enumerate(inputs)]
    n_in = sum(r.properties.entry_count for r in readers)

    class MemoryWriter:
        """TableWriter's interface over an in-memory TableBuilder."""

        def __init__(self, block_bytes, bloom_bits_per_key):
            self._b = TableBuilder(block_bytes=block_bytes, bloom_bits_per_key=bloom_bits_per_key)
            self.bytes_written = 0
            self.number = 0
            self.add = self._b.add

        @classmethod
        async def create(cls, path, number, block_bytes, bloom_bits_per_key):
            return cls(block_bytes, bloom_bits_per_key)

        def estimated_file_size(self):
            return self._b.estimated_file_size()

        @property
        def entry_count(self):
            return self._b.entry_count

        async def write_ready(self):
            self.bytes_written += sum(len(d) for _, d in self._b.take_ready())

        async def finish(self):
            chunks, props = self._b.finish()
            self.bytes_written += sum(len(d) for _, d in chunks)
            return props

        async def abandon(self):
            pass

    numbers = iter(range(10**6))

    async def new_number():
        return next(numbers)

    saved = runner.TableWriter
    runner.TableWriter = MemoryWriter
    try:
        def run(n):
            outputs, _ = drive(runner.merge_tables(
                readers, directory="/nonexistent", bottommost=True, oldest_snapshot_seq=10**9,
                max_output_bytes=2 << 20, block_bytes=4096, bloom_bits_per_key=10, new_number=new_number))
            assert outputs
        return best_us(run, 1, repeat=3) / n_in
    finally:
        runner.TableWriter = saved


def environment() -> str:
    from perf.environment import cpu_model
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"python {platform.python_version()} on {platform.machine()}, {cpu_model()}, {cpus} cpus allowed, "
            f"kernel {platform.release()}, load average {load:.2f}; no disk I/O, no executor, not pinned")


def child(argv) -> int:
    """One measurement in this process; JSON on stdout.  argv: [--quick]
    GROUP..."""
    quick = "--quick" in argv
    groups = [a for a in argv if a in GROUPS] or GROUPS
    json.dump(measure(quick, groups), sys.stdout)
    return 0


def export_tree(rev: str, repo: str) -> str:
    """``hedge/`` of ``rev`` in a temporary directory, with this tree's built
    I/O extension copied in (the LSM code never calls it; importing hedge
    loads it)."""
    tmp = tempfile.mkdtemp(prefix="hedge-ab-")
    archive = subprocess.run(["git", "-C", repo, "archive", rev, "hedge"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    io_dir = os.path.join(repo, "hedge", "io")
    for name in os.listdir(io_dir):
        if name.startswith("_uring") and name.endswith(".so"):
            shutil.copy(os.path.join(io_dir, name), os.path.join(tmp, "hedge", "io", name))
    return tmp


def run_child(tree: str, repo: str, quick: bool, groups) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([tree, repo])
    cmd = [sys.executable, "-c", "import sys; from perf.lsm_micro import child; sys.exit(child(sys.argv[1:]))"]
    if quick:
        cmd.append("--quick")
    cmd += list(groups)
    out = subprocess.run(cmd, env=env, cwd=tree, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", metavar="REV", help="compare with REV's hedge/ (A/B alternated)")
    p.add_argument("--rounds", type=int, default=5, help="A/B rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="smaller data (a quarter), for a fast look")
    p.add_argument("--only", metavar="GROUPS", default=",".join(GROUPS),
                   help=f"comma-separated subset of {','.join(GROUPS)} (default: all)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = p.parse_args(argv)
    groups = [g for g in args.only.split(",") if g]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        p.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(environment())
    if not args.against:
        res = measure(args.quick, groups)
        for name, label in ROWS:
            if name in res:
                print(f"{label:52s} {res[name]:8.2f} us")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        return 0
    base_tree = export_tree(args.against, repo)
    rev = subprocess.run(["git", "-C", repo, "rev-parse", "--short", args.against],
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "hedge"], capture_output=True, text=True).stdout
    try:
        a: list[dict] = []
        b: list[dict] = []
        for r in range(args.rounds):
            order = [(base_tree, a), (repo, b)] if r % 2 == 0 else [(repo, b), (base_tree, a)]
            for tree, sink in order:
                sink.append(run_child(tree, repo, args.quick, groups))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        shutil.rmtree(base_tree, ignore_errors=True)
    print(f"A = {args.against} ({rev}), B = this tree ({head}{', modified' if dirty else ''}); "
          f"median of {args.rounds} alternated rounds, us per operation")
    print(f"{'':52s} {'A':>8s} {'B':>8s} {'B/A':>6s}")
    table = {}
    for name, label in ROWS:
        if not any(name in x for x in a + b):
            continue
        av = [x[name] for x in a if name in x]
        bv = [x[name] for x in b if name in x]
        am = statistics.median(av) if av else None
        bm = statistics.median(bv) if bv else None
        table[name] = {"A": am, "B": bm}
        ratio = f"{bm / am:6.2f}" if am and bm else "     -"
        print(f"{label:52s} {am if am is not None else float('nan'):8.2f} {bm if bm is not None else float('nan'):8.2f} {ratio}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"against": args.against, "rev": rev, "head": head, "rounds": args.rounds,
                       "A": a, "B": b, "median": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
