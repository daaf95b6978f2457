"""CPU per operation inside the LSM data structures (no disk, no executor).

Every figure is microseconds of CPU per operation: the best of many short
timings (a few ms each) in process CPU time, so that neither waiting for a
core nor a neighbour's burst on a shared machine counts.  All data is in
memory:
tables are built with TableBuilder and read through a ``read`` function that
returns bytes without suspending, so each coroutine is driven by hand and
nothing waits for a device.

Rows (16-byte keys, 100-byte values):
  - table get, block cached: ``await TableReader.get`` of a present key whose
    block is in the block cache; ``get_cached`` is the synchronous fast path
    (only where the reader has one);
  - table get, absent key: a key inside the table's range that it lacks;
  - table get, block read: no cache, the block is "read" and verified;
  - lookup across levels: what the engine did below its memtables for a
    get: files_for_key, then each table until one answers, over 4 L0
    tables (300 keys each) and L1-L3 (1,200, 6,000, 60,000 keys), all
    blocks cached; files_for_key alone on the same version; and what it
    does now, SuperVersion.get over the same tables under an empty
    memtable (where the revision has it);
  - memtable get / add: a memtable of 50,000+ entries;
  - put encode+insert: WriteBatch, encode, WAL record framing, memtable add
    (what the commit leader does per single-key put, minus the write);
  - scan per entry: 2,000 entries of the engine's scan merge (visible_merge
    over a memtable cursor, one L0 table and a level of four tables, blocks
    cached), with the keys interleaved (every other key in L1, every fourth
    in L0 and in the memtable) and as after a load (90% of the keys in L1,
    8% in L0, 2% in the memtable);
  - short scan: a seek plus 50 entries over the second layout (per scan);
  - table build per entry: TableBuilder.add .. finish;
  - merge per entry: the compaction runner (``merge_tables``) over 4
    overlapping tables, writing into in-memory tables (per input entry).

    python -m perf.lsm_micro                  # this tree, one run
    python -m perf.lsm_micro --against main   # A/B: REV's hedge/ vs this tree,
                                              # alternated in subprocesses
    python -m perf.lsm_micro --against main --rounds 7 --json out.json
    python -m perf.lsm_micro --only reads,writes   # some groups: GROUPS below

With ``--against`` the named revision's ``hedge/`` is exported to a temporary
directory (its I/O extension built there: the LSM code calls the C kernels
in it) and the two trees run alternately, one subprocess per round each; the
table gives the median of each row over the rounds and the ratio
(this tree / REV: below 1 is faster).
"""
from __future__ import annotations

import argparse
import gc
import glob
import inspect
import itertools
import operator
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

from perf import ab

ROWS = (
    ("get_cached", "table get, block cached (await get)"),
    ("get_cached_sync", "table get_cached, block cached (sync)"),
    ("get_absent", "table get, absent key in range"),
    ("get_read", "table get, block read + verified (no cache)"),
    ("files_for_key", "Version.files_for_key (4 L0 tables, L1-L3)"),
    ("levels_present", "lookup across levels (await get), present key"),
    ("levels_present_sync", "lookup across levels (get_cached), present key"),
    ("levels_absent", "lookup across levels (await get), absent key"),
    ("sv_present", "SuperVersion.get below a memtable, present key"),
    ("sv_absent", "SuperVersion.get below a memtable, absent key"),
    ("mem_get", "memtable get"),
    ("mem_add", "memtable add"),
    ("put", "put encode+insert (batch, WAL record, memtable)"),
    ("scan_entry", "scan per entry, sources interleaved"),
    ("scan_entry_skewed", "scan per entry, 90% of keys in L1"),
    ("short_scan", "short scan: seek + 50 entries, 90% in L1"),
    ("build_entry", "table build per entry"),
    ("merge_entry", "compaction merge per input entry (4 tables)"),
)

VALUE = b"v" * 100
GROUPS = ("reads", "levels", "writes", "scans", "build", "merge")


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


ICOUNT = os.environ.get("HEDGE_MICRO_ICOUNT") == "1"


def best_us(fn, n: int, repeat: int = 60) -> float:
    """Microseconds per operation: the best of ``repeat`` timings of
    ``fn()``, which performs ``n`` operations in a few milliseconds.  Many
    short timings in process CPU time: on a shared 2-core machine some of
    them run undisturbed, and time spent waiting for a core never counts."""
    if ICOUNT:
        # Under callgrind (--instructions): one warm-up call, then one call
        # through operator.call, the only code callgrind counts (each such
        # call is dumped as its own part).  The parent divides by n.
        fn()
        gc.collect()
        gc.disable()            # a collection would land in one row by chance
        try:
            operator.call(fn)
        finally:
            gc.enable()
        return float(n)
    best = float("inf")
    clock = time.process_time
    for _ in range(repeat):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
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
    try:
        from hedge.lsm.amerge import MemtableCursor
    except ImportError:                     # an older revision (--against)
        MemtableCursor = None
    from hedge.lsm.batch import WriteBatch
    from hedge.lsm.cache import BlockCache
    from hedge.lsm.keys import Kind
    from hedge.lsm.memtable import Memtable
    from hedge.lsm.version import Version
    from hedge.lsm.table import TableReader
    from hedge.lsm.version_edit import FileMeta
    from hedge.lsm.wal.format import encode_record

    repeat = 20 if quick else 60
    PUT = Kind.PUT
    out: dict[str, float] = {}
    chunk = 500                      # operations per timing
    krng = random.Random(2)
    skeys = sorted({krng.randbytes(16) for _ in range(60_000)})

    def per_key(op, keys):
        """fn() applying ``op`` to the next ``chunk`` keys, round robin."""
        ring = itertools.cycle(keys)
        islice = itertools.islice

        def fn():
            for k in islice(ring, chunk):
                op(k)
        return fn

    # --- point reads on one table -------------------------------------------------
    if "reads" in groups:
        rng = random.Random(1)
        n_table = 20_000
        data = build_table([(key(i), 5, PUT, VALUE) for i in range(n_table)])
        cache = BlockCache(64 << 20)
        reader = open_reader(data, 1, cache)
        uncached = open_reader(data, 2)
        present = [key(rng.randrange(n_table)) for _ in range(4096)]
        absent = [key(rng.randrange(n_table)) + b"-" for _ in range(4096)]
        for _ in range(2):                      # fill, then first hit (lazy work)
            for k in present:
                assert drive(reader.get(k, 10)) is not None
        out["get_cached"] = best_us(per_key(lambda k: drive(reader.get(k, 10)), present), chunk, repeat)
        if hasattr(reader, "get_cached"):
            out["get_cached_sync"] = best_us(per_key(lambda k: reader.get_cached(k, 10), present), chunk, repeat)
        out["get_absent"] = best_us(per_key(lambda k: drive(reader.get(k, 10)), absent), chunk, repeat)
        out["get_read"] = best_us(per_key(lambda k: drive(uncached.get(k, 10)), present), chunk, repeat)

    # --- a point lookup across levels ---------------------------------------------
    if "levels" in groups:
        rng = random.Random(3)
        n_keys = 60_000
        seq = itertools.count(1)
        # L3 holds every key; L2 a tenth, L1 a fiftieth (newer versions);
        # four L0 tables of 300 keys each span the whole key range.
        runs = {3: range(n_keys), 2: sorted(rng.sample(range(n_keys), n_keys // 10)),
                1: sorted(rng.sample(range(n_keys), n_keys // 50))}
        level_cache = BlockCache(256 << 20)
        tables = {}
        levels = [[] for _ in range(7)]
        number = itertools.count(1000)

        def add_table(level, ids):
            s0 = next(seq)
            entries = [(key(i), s0, PUT, VALUE) for i in ids]
            r = open_reader(build_table(entries), next(number), level_cache)
            tables[r.table_id] = r
            levels[level].append(FileMeta(number=r.table_id, size=r.file_size, smallest_key=r.smallest_key,
                                          largest_key=r.largest_key, smallest_seq=s0, largest_seq=s0,
                                          entries=len(entries), deletes=0))
        for level in (3, 2, 1):
            ids = runs[level]
            for j in range(0, len(ids), 2000):
                add_table(level, ids[j:j + 2000])
        for _ in range(4):
            add_table(0, sorted(rng.sample(range(n_keys), 300)))
        levels[0].reverse()                     # newest first
        version = Version(levels)
        present = [key(rng.randrange(n_keys)) for _ in range(4096)]
        absent = [k + b"-" for k in present]
        out["files_for_key"] = best_us(per_key(version.files_for_key, present), chunk, repeat)

        def lookup(k):
            for _level, meta in version.files_for_key(k):
                found = drive(tables[meta.number].get(k, 10**9))
                if found is not None:
                    return found
            return None

        for _ in range(2):                      # fill the cache, then first hits
            for k in present:
                assert lookup(k) is not None
        out["levels_present"] = best_us(per_key(lookup, present), chunk, repeat)
        out["levels_absent"] = best_us(per_key(lookup, absent), chunk, repeat)
        if hasattr(TableReader, "get_cached"):
            def lookup_cached(k):
                for _level, meta in version.files_for_key(k):
                    found = tables[meta.number].get_cached(k, 10**9)
                    if found is not None:
                        return found
                return None
            out["levels_present_sync"] = best_us(per_key(lookup_cached, present), chunk, repeat)
        try:
            from hedge.lsm.lookup import SuperVersion
        except ImportError:             # a revision before it
            SuperVersion = None
        if SuperVersion is not None:
            sv = SuperVersion(Memtable(), 0, (), version, tables)
            out["sv_present"] = best_us(per_key(lambda k: sv.get(k, 10**9), present), chunk, repeat)
            out["sv_absent"] = best_us(per_key(lambda k: sv.get(k, 10**9), absent), chunk, repeat)

    # --- memtable and the write path -------------------------------------------------
    if "writes" in groups:
        rng = random.Random(4)
        n_mem = 50_000
        mkeys = [rng.randbytes(16) for _ in range(n_mem)]
        mem = Memtable()
        for seq, k in enumerate(mkeys, 1):
            mem.add(k, seq, PUT, VALUE)
        lookups = [mkeys[rng.randrange(n_mem)] for _ in range(4096)]
        out["mem_get"] = best_us(per_key(lambda k: mem.get(k, n_mem), lookups), chunk, repeat)
        # Adds and puts of new keys into a memtable of 50,000+ entries.
        fresh = iter([rng.randbytes(16) for _ in range(2 * repeat * chunk)])
        seqs = itertools.count(n_mem + 1)

        def run_madd():
            add = mem.add
            for k in itertools.islice(fresh, chunk):
                add(k, next(seqs), PUT, VALUE)
        out["mem_add"] = best_us(run_madd, chunk, repeat)

        def run_put():
            for k in itertools.islice(fresh, chunk):
                seq = next(seqs)
                batch = WriteBatch()
                batch.put(k, VALUE)
                payload = batch.encode(seq)
                encode_record(7, payload)
                for e in batch.entries(seq):
                    mem.add(*e)
        out["put"] = best_us(run_put, chunk, repeat)

    # --- scans ------------------------------------------------------------------------
    if "scans" in groups:
        # Merges that hand out chunks take the size of the first one.
        chunked = "want" in inspect.signature(visible_merge).parameters
        rng = random.Random(5)
        scan_cache = BlockCache(256 << 20)
        numbers = itertools.count(100)

        def tree(mem_keys, l0_keys, l1_keys):
            """The engine's scan sources: a memtable, one L0 table and a
            level of four tables, every block cached."""
            l1_entries = [(k, 10, PUT, VALUE) for k in l1_keys]
            l1 = [open_reader(build_table(l1_entries[j * len(l1_entries) // 4:(j + 1) * len(l1_entries) // 4]),
                              next(numbers), scan_cache) for j in range(4)]
            l0r = open_reader(build_table([(k, 20, PUT, VALUE) for k in l0_keys]), next(numbers), scan_cache)
            smem = Memtable()
            for seq, k in enumerate(mem_keys, 30):
                smem.add(k, seq, PUT, VALUE)

            async def scan(start, limit):
                # The engine's memtable source (ListCursor before MemtableCursor).
                mem_source = (MemtableCursor(smem, start, None, 10**9) if MemtableCursor is not None
                              else ListCursor(smem.iter_from(start, None)))
                sources = [mem_source, TableCursor([l0r], start, None), TableCursor(l1, start, None)]
                count = 0
                if not chunked:             # a revision whose merge yields pair by pair
                    async for _ in visible_merge(sources, 10**9):
                        count += 1
                        if count == limit:
                            break
                    return count
                want = limit if 0 < limit <= 256 else 256
                async for chunk in visible_merge(sources, 10**9, want):
                    count += len(chunk)
                    if count >= limit > 0 or len(chunk) < want:
                        break
                return min(count, limit) if limit > 0 else count

            total = len(mem_keys) + len(l0_keys) + len(l1_keys)
            for _ in range(2):                   # fill the cache, then first hits
                assert drive(scan(None, -1)) == total
            return scan

        starts = [skeys[rng.randrange(len(skeys) - 3000)] for _ in range(512)]
        # Interleaved: every other key in L1, every fourth in L0 and in the
        # memtable (the worst case: the merge changes source at every entry).
        scan = tree(skeys[3::4], skeys[1::4], skeys[0::2])
        long_starts = itertools.cycle(starts)
        out["scan_entry"] = best_us(lambda: drive(scan(next(long_starts), 2000)), 2000, repeat)
        # As after a load: 90% of the keys in L1, 8% in L0, 2% in the memtable.
        where = [rng.random() for _ in skeys]
        scan = tree([k for k, w in zip(skeys, where) if w < 0.02], [k for k, w in zip(skeys, where) if 0.02 <= w < 0.1],
                    [k for k, w in zip(skeys, where) if w >= 0.1])
        out["scan_entry_skewed"] = best_us(lambda: drive(scan(next(long_starts), 2000)), 2000, repeat)
        short_starts = itertools.cycle(starts)

        def run_short():
            for _ in range(20):
                drive(scan(next(short_starts), 50))
        out["short_scan"] = best_us(run_short, 20, repeat)

    # --- table build ----------------------------------------------------------------
    if "build" in groups:
        build_entries = [(k, 10, PUT, VALUE) for k in skeys]
        pieces = itertools.cycle([build_entries[i:i + 2000] for i in range(0, len(build_entries) - 2000, 2000)])
        out["build_entry"] = best_us(lambda: build_table(next(pieces)), 2000, repeat)

    # --- compaction merge -------------------------------------------------------------
    if "merge" in groups:
        out["merge_entry"] = merge_per_entry(skeys[:8000], repeat)
    return out


def merge_per_entry(skeys, repeat: int) -> float:
    """``merge_tables`` over 4 overlapping tables (each a third of ``skeys``,
    5% tombstones), outputs built in memory; per input entry."""
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

        def __init__(self, block_bytes, bloom_bits_per_key, compression):
            self._b = TableBuilder(block_bytes=block_bytes, bloom_bits_per_key=bloom_bits_per_key,
                                   compression=compression)
            self.bytes_written = 0
            self.number = 0
            self.add = self._b.add

        @classmethod
        async def create(cls, path, number, block_bytes, bloom_bits_per_key, compression):
            return cls(block_bytes, bloom_bits_per_key, compression)

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
        def run():
            outputs, _ = drive(runner.merge_tables(
                readers, directory="/nonexistent", bottommost=True, oldest_snapshot_seq=10**9,
                max_output_bytes=2 << 20, block_bytes=4096, bloom_bits_per_key=10, compression="none",
                new_number=new_number))
            assert outputs
        return best_us(run, n_in, max(5, repeat // 4))
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


def run_child(tree: str, repo: str, quick: bool, groups, instructions: bool = False) -> dict[str, float]:
    argv = (["--quick"] if quick else []) + list(groups)
    if not instructions:
        return json.loads(ab.run_child("perf.lsm_micro", tree, repo, argv))
    tmp = tempfile.mkdtemp(prefix="hedge-icount-")
    try:
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg", "--toggle-collect=_operator_call",
                    "--dump-after=_operator_call"]
        out = ab.run_child("perf.lsm_micro", tree, repo, argv, env={"HEDGE_MICRO_ICOUNT": "1", "PYTHONHASHSEED": "0"},
                           prefix=valgrind)
        ops = json.loads(out)
        parts = sorted(glob.glob(f"{tmp}/cg.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
        if len(parts) != len(ops):
            raise RuntimeError(f"{len(parts)} callgrind parts for {len(ops)} rows")
        counts = {}
        for (name, n), part in zip(ops.items(), parts):
            with open(part) as f:
                total = next(int(line.split()[1]) for line in f if line.startswith("totals:"))
            counts[name] = total / n
        return counts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", metavar="REV", help="compare with REV's hedge/ (A/B alternated)")
    p.add_argument("--rounds", type=int, default=5, help="A/B rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="fewer timings per row (20 instead of 60), for a fast look")
    p.add_argument("--instructions", action="store_true",
                   help="count instructions per operation under valgrind (callgrind) instead of timing: "
                        "deterministic, slow (minutes); one round is enough")
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
    unit = "instructions" if args.instructions else "us"
    if not args.against:
        if args.instructions:
            res = run_child(repo, repo, args.quick, groups, instructions=True)
        else:
            res = measure(args.quick, groups)
        for name, label in ROWS:
            if name in res:
                print(f"{label:52s} {res[name]:8.{0 if args.instructions else 2}f} {unit}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        return 0
    base_tree = ab.export_tree(args.against, repo)
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
                sink.append(run_child(tree, repo, args.quick, groups, args.instructions))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        shutil.rmtree(base_tree, ignore_errors=True)
    print(f"A = {args.against} ({rev}), B = this tree ({head}{', modified' if dirty else ''}); "
          f"median of {args.rounds} alternated rounds, {unit} per operation")
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
        digits = 0 if args.instructions else 2
        print(f"{label:52s} {am if am is not None else float('nan'):8.{digits}f} "
              f"{bm if bm is not None else float('nan'):8.{digits}f} {ratio}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"against": args.against, "rev": rev, "head": head, "rounds": args.rounds,
                       "A": a, "B": b, "median": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
