"""Raw ring benchmark: 4 KiB O_DIRECT random reads through hedge's I/O layer,
side by side with fio's io_uring engine on the same file.

What it measures: one executor (one Python thread, one ring) runs N reader
coroutines, each looping ``await ops.read(file, buf, offset)`` on its own
4 KiB Buffer at pre-generated random 4096-aligned offsets, for a fixed time,
at N = 1, 8, 32, 64 in flight, for every I/O method (io_uring, threads,
sync).  Where fio is installed, the same pattern runs through fio
(``--ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=N``) on the
same file, interleaved with hedge's points so both see the same machine
noise; every point may be repeated (``--repeat``) and the median is kept.

Output: the environment, a table (IOPS, MiB/s, mean latency per request, the
executor's mean batch per submit and submit calls), a JSON file, and as the
very last line ``qd32 io_uring/fio = X.XX`` (or ``= n/a (why)``).

Mean latency for hedge is Little's law (in flight / IOPS): every reader keeps
exactly one request outstanding for the whole run.  For fio it is fio's own
mean completion latency (``lat_ns``).

Entry point: ``python -m perf.ring_bench [--quick] [--help]``; ``main(argv)``
returns the exit status.  Runs on the calling thread (plus the executors it
starts); not meant to be imported by hedge itself.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from hedge.errors import HedgeError
from hedge.exec import Executor, current_executor, gather
from hedge.io import ops
from hedge.io.backend import available_methods, create_backend, uring_status
from hedge.io.buffer import Buffer
from hedge.io.file import File
from perf.environment import cpu_model, liburing_version

BLOCK = 4096
MiB = 1 << 20
DEFAULT_QDS = (1, 8, 32, 64)
RATIO_QD = 32
# Offsets are drawn once into a list of this many entries (a power of two, so
# the hot loop wraps with a mask) and shared by the readers, each starting at
# its own place in it.
OFFSET_SLOTS = 1 << 18
# Reads checked against the expected bytes in each method's verification pass.
VERIFY_READS = 512
VERIFY_QD = 8


# -- the data file ------------------------------------------------------------

def block_pattern(index: int) -> bytes:
    """The 4 KiB that block ``index`` of the data file holds: a 16-byte unit
    (the index and a mix of it, never all zero) repeated.  A read that lands
    at the wrong offset or returns stale memory does not match."""
    return struct.pack("<QQ", index, (index * 0x9E3779B97F4A7C15 + 1) & 0xFFFF_FFFF_FFFF_FFFF) * (BLOCK // 16)


def _file_matches(path: str, size: int) -> bool:
    try:
        if os.stat(path).st_size != size:
            return False
        with open(path, "rb") as f:
            for index in (0, size // BLOCK // 2, size // BLOCK - 1):
                f.seek(index * BLOCK)
                if f.read(BLOCK) != block_pattern(index):
                    return False
    except OSError:
        return False
    return True


def prepare_file(path: str, size: int) -> bool:
    """Make ``path`` a ``size``-byte file of block patterns, reusing it when
    it already is one.  Returns True when it was (re)written.  REQUIRES size
    a positive multiple of 4096."""
    if _file_matches(path, size):
        return False
    chunk_blocks = 256
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        nblocks = size // BLOCK
        for first in range(0, nblocks, chunk_blocks):
            data = b"".join(block_pattern(i) for i in range(first, min(first + chunk_blocks, nblocks)))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True


def make_offsets(size: int, seed: int, count: int = OFFSET_SLOTS) -> list[int]:
    """``count`` uniformly random 4096-aligned offsets inside a ``size``-byte
    file, from random.Random(seed)."""
    rng = random.Random(seed)
    nblocks = size // BLOCK
    return [rng.randrange(nblocks) * BLOCK for _ in range(count)]


# -- hedge points ---------------------------------------------------------------

async def _reader(file: File, offsets: list[int], first: int, stop: list) -> int:
    """The hot loop: one request in flight until ``stop[0]`` is set; returns
    the number of completed reads."""
    buf = Buffer(BLOCK)
    read = ops.read
    mask = len(offsets) - 1
    i = first
    while not stop[0]:
        if await read(file, buf, offsets[i & mask]) != BLOCK:
            raise HedgeError(f"short read at offset {offsets[i & mask]}")
        i += 1
    return i - first


async def _timed_run(file: File, offsets: list[int], qd: int, seconds: float) -> tuple[int, float, dict, dict]:
    """Run ``qd`` readers for ``seconds``; return (reads, elapsed, executor
    counters before, after).  The counters are read on the executor thread,
    so the idle wait before the point is not counted in it."""
    executor = current_executor()
    stop = [False]

    async def timer() -> None:
        await ops.sleep(seconds)
        stop[0] = True

    spacing = len(offsets) // qd
    before = executor.stats()
    t0 = time.perf_counter()
    counts = await gather(timer(), *(_reader(file, offsets, k * spacing, stop) for k in range(qd)))
    elapsed = time.perf_counter() - t0
    return sum(counts[1:]), elapsed, before, executor.stats()


_STAT_KEYS = ("sqes_submitted", "submit_calls", "enter_calls", "waits", "wait_seconds", "task_steps")


def run_hedge_point(executor: Executor, file: File, offsets: list[int], qd: int, seconds: float) -> dict:
    """One timed point on ``executor``: IOPS, MiB/s, mean latency and the
    executor counters accumulated during the point."""
    cpu0 = os.times()
    reads, elapsed, before, after = executor.run_sync(_timed_run(file, offsets, qd, seconds))
    cpu1 = os.times()
    delta = {k: after[k] - before[k] for k in _STAT_KEYS}
    iops = reads / elapsed
    submits = delta["submit_calls"]
    return {
        "reads": reads,
        "seconds": elapsed,
        "iops": iops,
        "mib_s": iops * BLOCK / MiB,
        "lat_us": qd / iops * 1e6 if iops else None,
        "mean_batch": delta["sqes_submitted"] / submits if submits else 0.0,
        "submit_calls": submits,
        "enter_calls": delta["enter_calls"],
        "waits": delta["waits"],
        "wait_seconds": delta["wait_seconds"],
        "max_in_flight": after["max_in_flight"],
        # Process-wide (executor, worker threads; the caller only waits).
        "cpu_us_per_read": ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / reads * 1e6 if reads else None,
        "sys_us_per_read": (cpu1.system - cpu0.system) / reads * 1e6 if reads else None,
    }


async def _verify(file: File, path: str, offsets: list[int], reads: int, qd: int) -> dict:
    """Read ``reads`` sampled offsets through the executor, ``qd`` at a time,
    and compare every buffer with the block pattern and with what a plain
    pread of the file returns."""
    step = max(1, len(offsets) // reads)
    sample = offsets[::step][:reads]
    mismatches: list[int] = []
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    async def check(part: list[int]) -> int:
        buf = Buffer(BLOCK)
        for offset in part:
            buf[:] = b"\0" * BLOCK
            n = await ops.read(file, buf, offset)
            got = bytes(buf.view[:n])
            if got != block_pattern(offset // BLOCK) or got != os.pread(fd, BLOCK, offset):
                mismatches.append(offset)
        return len(part)

    try:
        done = await gather(*(check(sample[k::qd]) for k in range(qd)))
    finally:
        os.close(fd)
    return {"reads": sum(done), "mismatches": len(mismatches), "bad_offsets": mismatches[:8]}


# -- fio points -------------------------------------------------------------------

def fio_command(fio: str, path: str, size: int, qd: int, seconds: float) -> list[str]:
    return [fio, "--name=hedge-ring-bench", f"--filename={path}", f"--size={size}",
            "--ioengine=io_uring", "--direct=1", "--rw=randread", f"--bs={BLOCK}", f"--iodepth={qd}",
            "--norandommap", "--readonly", "--time_based", f"--runtime={max(1, round(seconds * 1000))}ms",
            "--output-format=json"]


def run_fio_point(fio: str, path: str, size: int, qd: int, seconds: float) -> dict:
    """Run fio once; raise RuntimeError with fio's message when it fails."""
    cmd = fio_command(fio, path, size, qd, seconds)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"fio exited with {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:300]}")
    text = proc.stdout
    # fio may print notes before the JSON document.
    job = json.loads(text[text.index("{"):])["jobs"][0]
    read = job["read"]
    if read.get("io_bytes", 0) == 0:
        raise RuntimeError("fio read nothing")
    iops = read["iops"]
    cpu_seconds = read["runtime"] / 1000 / 100
    return {
        "reads": read["total_ios"],
        "seconds": read["runtime"] / 1000,
        "iops": iops,
        "mib_s": iops * BLOCK / MiB,
        "lat_us": read["lat_ns"]["mean"] / 1000,
        "usr_cpu": job["usr_cpu"],
        "sys_cpu": job["sys_cpu"],
        "cpu_us_per_read": (job["usr_cpu"] + job["sys_cpu"]) * cpu_seconds / read["total_ios"] * 1e6,
        "sys_us_per_read": job["sys_cpu"] * cpu_seconds / read["total_ios"] * 1e6,
        "command": " ".join(cmd),
    }


def fio_status() -> tuple[str | None, str]:
    """(path to fio or None, version or the reason it cannot run)."""
    fio = shutil.which("fio")
    if fio is None:
        return None, "fio not installed"
    try:
        out = subprocess.run([fio, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"fio does not run: {e}"
    if out.returncode != 0:
        return None, "fio --version failed"
    return fio, out.stdout.strip()


# -- environment --------------------------------------------------------------------

def _device_of(path: str) -> dict:
    st = os.stat(path)
    sys_dir = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    info = {"dev": f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"}
    try:
        real = os.path.realpath(sys_dir)
        info["name"] = os.path.basename(real)
        queue = os.path.join(real, "queue")
        if not os.path.isdir(queue):  # a partition: the queue is the parent disk's
            queue = os.path.join(os.path.dirname(real), "queue")
        with open(os.path.join(queue, "scheduler")) as f:
            info["scheduler"] = f.read().strip()
    except OSError:
        pass
    fs = None
    best = -1
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mnt, fstype = line.split()[:3]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best:
                    best, fs = len(mnt), fstype
    except OSError:
        pass
    info["filesystem"] = fs
    return info


def environment(methods: list[str], ring_entries: int, path: str, fio_info: str) -> dict:
    ok, reason = uring_status()
    ring = None
    if ok:
        backend = create_backend("io_uring", ring_entries)
        try:
            ring = backend.info()
        finally:
            backend.close()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "kernel": platform.release(),
        "liburing": liburing_version(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "io_methods_available": available_methods(),
        "io_uring": ring if ring is not None else f"unavailable: {reason}",
        "methods_measured": methods,
        "device": _device_of(path),
        "fio": fio_info,
        "pinning": "none (one executor thread, not pinned)",
    }


def _print_environment(env: dict, config: dict) -> None:
    print("hedge raw ring benchmark: 4 KiB O_DIRECT random reads")
    ring = env["io_uring"]
    ring_text = (f"sq={ring['sq_entries']} cq={ring['cq_entries']} capacity={ring['capacity']} "
                 f"flags={'|'.join(ring['setup_flags']) or 'none'}") if isinstance(ring, dict) else ring
    dev = env["device"]
    for key, value in (
        ("kernel", env["kernel"]),
        ("liburing", env["liburing"]),
        ("cpu", f"{env['cpu_model']}, {env['cores']} cores ({env['cores_usable']} usable)"),
        ("python", env["python"]),
        ("io methods", ", ".join(env["io_methods_available"])),
        ("ring", ring_text),
        ("pinning", env["pinning"]),
        ("fio", env["fio"]),
        ("file", f"{config['path']} ({config['size'] // MiB} MiB, {dev.get('filesystem')} on "
                 f"{dev.get('name', dev['dev'])}, scheduler {dev.get('scheduler', '?')})"),
        ("run", f"{config['seconds']} s per point, repeat {config['repeat']} (median), "
                f"qd {','.join(map(str, config['qds']))}, seed {config['seed']}"),
    ):
        print(f"  {key:<11} {value}")
    sys.stdout.flush()


# -- driver -------------------------------------------------------------------------

def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 256M, 65536)")
    n = int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2).lower()]
    if n < BLOCK or n % BLOCK:
        raise argparse.ArgumentTypeError(f"size must be a positive multiple of {BLOCK}, not {n}")
    return n


def _parse_qds(text: str) -> list[int]:
    try:
        qds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of queue depths: {text!r}") from None
    if not qds or min(qds) < 1:
        raise argparse.ArgumentTypeError("queue depths must be >= 1")
    return qds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf.ring_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=None, help="directory of the data file (default: the temp dir)")
    p.add_argument("--size", type=parse_size, default=None, help="data file size (default 1G; 256M with --quick)")
    p.add_argument("--seconds", type=float, default=None, help="seconds per point (default 5; 1 with --quick)")
    p.add_argument("--qd", type=_parse_qds, default=list(DEFAULT_QDS), help="requests in flight, e.g. 1,8,32,64")
    p.add_argument("--methods", default=None, help="comma-separated I/O methods (default: all available)")
    p.add_argument("--repeat", type=int, default=1, help="runs of every point; the median is reported")
    p.add_argument("--ring-entries", type=int, default=256, help="ring size of the executor (default 256)")
    p.add_argument("--seed", type=int, default=1, help="seed of the offsets")
    p.add_argument("--no-fio", action="store_true", help="do not run fio")
    p.add_argument("--keep", action="store_true", help="keep the data file for the next run")
    p.add_argument("--json", default=None, help="where to write the JSON (default results/ring_bench-<time>.json)")
    p.add_argument("--quick", action="store_true", help="short run: 256 MiB file, 1 s per point")
    return p


def _median_point(samples: list[dict]) -> dict:
    best = sorted(samples, key=lambda s: s["iops"])[len(samples) // 2]
    point = dict(best)
    point["iops"] = statistics.median(s["iops"] for s in samples)
    point["mib_s"] = point["iops"] * BLOCK / MiB
    point["samples_iops"] = [round(s["iops"], 1) for s in samples]
    return point


def _fmt_table(points: list[dict], qds: list[int], labels: list[str]) -> list[str]:
    by = {(p["label"], p["qd"]): p for p in points}
    head = (f"{'qd':>3}  {'method':<9} {'IOPS':>9} {'MiB/s':>8} {'lat us':>8} {'cpu us':>7} {'batch':>6} "
            f"{'submits':>8} {'vs fio':>7}")
    lines = [head, "-" * len(head)]
    for qd in qds:
        fio = by.get(("fio", qd))
        for label in labels:
            p = by.get((label, qd))
            if p is None:
                continue
            if "error" in p:
                lines.append(f"{qd:>3}  {label:<9} {'failed: ' + p['error'][:50]}")
                continue
            batch = f"{p['mean_batch']:.1f}" if "mean_batch" in p else "-"
            submits = str(p["submit_calls"]) if "submit_calls" in p else "-"
            ratio = f"{p['iops'] / fio['iops']:.2f}" if fio and "error" not in fio and label != "fio" else "-"
            lat = f"{p['lat_us']:.1f}" if p.get("lat_us") is not None else "-"
            cpu = f"{p['cpu_us_per_read']:.1f}" if p.get("cpu_us_per_read") is not None else "-"
            lines.append(f"{qd:>3}  {label:<9} {p['iops']:>9.0f} {p['mib_s']:>8.1f} {lat:>8} {cpu:>7} {batch:>6} "
                         f"{submits:>8} {ratio:>7}")
    return lines


def ratio_line(points: list[dict], qds: list[int], fio_reason: str | None, methods: list[str]) -> tuple[float | None, str]:
    prefix = f"qd{RATIO_QD} io_uring/fio = "
    if "io_uring" not in methods:
        ok, reason = uring_status()
        why = "io_uring not measured" if ok else f"io_uring unavailable: {reason}"
        return None, prefix + f"n/a ({why})"
    if fio_reason is not None:
        return None, prefix + f"n/a ({fio_reason})"
    if RATIO_QD not in qds:
        return None, prefix + f"n/a (qd {RATIO_QD} not measured)"
    by = {(p["label"], p["qd"]): p for p in points}
    fio, ring = by[("fio", RATIO_QD)], by[("io_uring", RATIO_QD)]
    for p, who in ((fio, "fio"), (ring, "io_uring")):
        if "error" in p:
            return None, prefix + f"n/a ({who} failed: {p['error'][:120]})"
    ratio = ring["iops"] / fio["iops"]
    return ratio, prefix + f"{ratio:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    size = args.size or (256 * MiB if args.quick else 1 << 30)
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 5.0)
    if seconds <= 0 or args.repeat < 1:
        print("error: --seconds must be > 0 and --repeat >= 1", file=sys.stderr)
        return 2
    qds = args.qd
    available = available_methods()
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in ("io_uring", "threads", "sync")]
        if unknown:
            print(f"error: unknown I/O method(s) {unknown}", file=sys.stderr)
            return 2
        missing = [m for m in methods if m not in available]
        if missing:
            print(f"note: skipping unavailable method(s) {missing}: {uring_status()[1]}")
            methods = [m for m in methods if m in available]
    else:
        methods = available
    if args.no_fio:
        fio, fio_info = None, "not run (--no-fio)"
        fio_reason = "fio not run: --no-fio"
    else:
        fio, fio_info = fio_status()
        fio_reason = None if fio else fio_info

    directory = args.dir or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(os.path.abspath(directory), f"hedge-ring-bench-{size}.dat")
    t0 = time.perf_counter()
    written = prepare_file(path, size)
    prep_seconds = time.perf_counter() - t0

    try:
        File.open(path, os.O_RDONLY, direct=True).close()
    except HedgeError as e:
        if not args.keep:
            os.unlink(path)
        print(f"error: cannot open {path} with O_DIRECT: {e}; use --dir on a filesystem that supports it",
              file=sys.stderr)
        print(f"qd{RATIO_QD} io_uring/fio = n/a (O_DIRECT not supported on {directory})")
        return 2

    config = {"path": path, "size": size, "seconds": seconds, "qds": qds, "repeat": args.repeat,
              "seed": args.seed, "ring_entries": args.ring_entries, "methods": methods,
              "file_written": written, "file_prep_seconds": round(prep_seconds, 2),
              "offset_slots": OFFSET_SLOTS}
    env = environment(methods, args.ring_entries, path, fio_info)
    _print_environment(env, config)

    offsets = make_offsets(size, args.seed)
    labels = (["fio"] if fio else []) + methods
    samples: dict[tuple[str, int], list[dict]] = {(label, qd): [] for label in labels for qd in qds}
    errors: dict[tuple[str, int], str] = {}
    verify: dict[str, dict] = {}
    executors: dict[str, Executor] = {}
    files: dict[str, File] = {}
    status = 0
    try:
        for method in methods:
            executors[method] = Executor(io_method=method, ring_entries=args.ring_entries,
                                         name=f"ring-bench-{method}").start()
            files[method] = File.open(path, os.O_RDONLY, direct=True)
        total = len(labels) * len(qds) * args.repeat
        done = 0
        # Interleave: for each repeat and depth, fio then every method, so
        # neighbouring measurements share the machine's current load.
        for _ in range(args.repeat):
            for qd in qds:
                for label in labels:
                    done += 1
                    if (label, qd) in errors:
                        continue
                    print(f"  [{done}/{total}] qd {qd} {label} ...", end="", flush=True)
                    try:
                        if label == "fio":
                            point = run_fio_point(fio, path, size, qd, seconds)
                        else:
                            point = run_hedge_point(executors[label], files[label], offsets, qd, seconds)
                    except (RuntimeError, HedgeError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
                        errors[(label, qd)] = f"{type(e).__name__}: {e}"
                        print(f" failed: {e}")
                        continue
                    samples[(label, qd)].append(point)
                    print(f" {point['iops']:.0f} IOPS")
        for method in methods:
            verify[method] = executors[method].run_sync(
                _verify(files[method], path, offsets, VERIFY_READS, VERIFY_QD))
            if verify[method]["mismatches"]:
                status = 1
    finally:
        for f in files.values():
            f.close()
        for ex in executors.values():
            ex.close()
        if not args.keep:
            try:
                os.unlink(path)
            except OSError:
                pass

    points = []
    for (label, qd), runs in samples.items():
        if (label, qd) in errors:
            point = {"error": errors[(label, qd)]}
        elif runs:
            point = _median_point(runs)
        else:
            continue
        point.update({"label": label, "engine": "fio" if label == "fio" else "hedge",
                      "method": "io_uring" if label == "fio" else label, "qd": qd})
        points.append(point)
    if fio and all("error" in p for p in points if p["label"] == "fio"):
        fio_reason = "fio failed: " + next(p["error"] for p in points if p["label"] == "fio")[:120]
    ratio, last_line = ratio_line(points, qds, fio_reason, methods)

    print()
    for line in _fmt_table(points, qds, labels):
        print(line)
    print("lat us: hedge = in flight / IOPS (Little's law), fio = its mean latency; "
          "cpu us: CPU time per read (user + sys); batch: SQEs per submit call.")
    for method, v in verify.items():
        verdict = "ok" if not v["mismatches"] else f"{v['mismatches']} MISMATCHES at {v['bad_offsets']}"
        print(f"verify {method}: {v['reads']} reads checked against the file: {verdict}")

    result = {"benchmark": "ring_bench", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "environment": env, "config": config, "points": points, "verify": verify,
              f"ratio_qd{RATIO_QD}_io_uring_over_fio": ratio, "summary": last_line}
    json_path = args.json or os.path.join("results", f"ring_bench-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"json: {json_path}")
    print(last_line)
    return status


if __name__ == "__main__":
    sys.exit(main())
