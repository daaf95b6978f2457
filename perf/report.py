"""The printed report (environment header, per-store settings, the figures
table) and the JSON results file.

JSON layout (``schema`` "hedge-ycsb/1"):
    {schema, started, finished, duration_s, command, config, workloads,
     environment, data_bytes, cache_bytes,
     stores: [{name, status, reason, settings, load_durability,
               disk_bytes_after_load, background_bytes_after_load,
               logical_bytes_loaded, write_amplification, space_amplification,
               phases: [{phase, description, operations, elapsed_s,
                         throughput_ops_s, note, verify,
                         ops: {op: {count, throughput_ops_s, avg_us, p50_us,
                                    p95_us, p99_us, p999_us, min_us, max_us}}}]}],
     plots: [file names]}
Latencies are microseconds; ``verify`` is null unless the run verified reads.
"""
from __future__ import annotations

import json
from pathlib import Path

from perf.driver import StoreResult

SCHEMA = "hedge-ycsb/1"


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def format_header(env: dict, config: dict, data_bytes: int, workloads: list[str]) -> str:
    """The environment and run settings, one fact per line."""
    store = config["store"]
    cache = store["cache_bytes"]
    lines = [
        "hedge YCSB benchmark",
        f"  cpu          {env['cpu']}",
        f"  cores        {env['cores']} (allowed: {','.join(map(str, env['cpus_allowed']))})",
        f"  kernel       {env['kernel']}",
        f"  python       {env['python']}",
        f"  liburing     {env['liburing']}  (io_uring_disabled sysctl: {env['io_uring_disabled_sysctl']})",
        f"  memory       {_size(env['memory_bytes'])}",
        f"  db dir       {env['db_dir']}  [{env['file_system']}]",
        f"  records      {config['records']:,} x {config['value_size']:,} B values, "
        f"insert order {config['insert_order']}",
        f"  data size    {_size(data_bytes)} vs cache {_size(cache)} per store "
        f"(data = {data_bytes / cache:.1f}x cache)" if cache else f"  data size    {_size(data_bytes)}, no cache",
        f"  workloads    {', '.join(workloads)}; {config['operations']:,} operations each"
        + (f", at most {config['seconds']:g} s" if config["seconds"] else ""),
        f"  clients      {store['clients']}"
        + (f" (threaded peers: {store['threads']} threads)" if store["threads"] else ""),
        f"  durability   {'sync: every write durable before it is acknowledged' if store['sync'] else 'writes not fsynced'}"
        " (the load phase is never fsynced per write)",
        f"  mode         {'cold: page cache dropped before each workload, direct reads where the store can' if store['cold'] else 'warm (page cache in use)'}",
        f"  hedge I/O    io_method={store['io_method']} (requested)",
        f"  seed         {config['seed']}" + ("; verifying every read" if config["verify"] else ""),
    ]
    return "\n".join(lines)


def format_settings(results: list[StoreResult]) -> str:
    """Each store's durability, cache, page-cache use, I/O and concurrency."""
    lines = ["stores:"]
    for r in results:
        if r.status == "skipped":
            lines.append(f"  {r.name:<10} skipped: {r.reason}")
            continue
        s = r.settings
        lines.append(f"  {r.name:<10} {s.get('version', '')}" + (f"  FAILED: {r.reason}" if r.status == "failed" else ""))
        for key in ("durability", "cache", "page_cache", "io", "concurrency", "layout"):
            if s.get(key) is not None:
                lines.append(f"  {'':<10}   {key.replace('_', ' ')}: {s[key]}")
        if r.load_durability:
            lines.append(f"  {'':<10}   load phase: {r.load_durability}")
        if r.disk_bytes_after_load is not None:
            lines.append(f"  {'':<10}   on disk after load: {_size(r.disk_bytes_after_load)}")
        space, write = r.space_amplification(), r.write_amplification()
        if space is not None or write is not None:
            lines.append(f"  {'':<10}   load amplification: space {_ratio(space)} (disk / logical data), "
                         f"write {_ratio(write)} (flush + compaction bytes / logical bytes written)")
    return "\n".join(lines)


def format_table(results: list[StoreResult]) -> str:
    """Throughput and latency percentiles per phase, store and operation."""
    head = (f"{'phase':<6} {'store':<10} {'op':<7} {'ops':>9} {'ops/s':>10} {'avg':>9} {'p50':>9} "
            f"{'p95':>9} {'p99':>9} {'p99.9':>9} {'max':>10}")
    lines = ["latency in microseconds", head, "-" * len(head)]
    phases: list[str] = []
    for r in results:
        for p in r.phases:
            if p.phase not in phases:
                phases.append(p.phase)
    for phase in phases:
        for r in results:
            for p in r.phases:
                if p.phase != phase:
                    continue
                first = True
                for op, h in sorted(p.histograms.items()):
                    s = h.summary_us()
                    rate = h.count / p.elapsed_s if p.elapsed_s > 0 else 0.0
                    lines.append(
                        f"{phase if first else '':<6} {r.name if first else '':<10} {op:<7} {h.count:>9,} "
                        f"{rate:>10,.0f} {s['avg_us']:>9,.1f} {s['p50_us']:>9,.1f} {s['p95_us']:>9,.1f} "
                        f"{s['p99_us']:>9,.1f} {s['p999_us']:>9,.1f} {s['max_us']:>10,.1f}")
                    first = False
                if len(p.histograms) > 1:
                    lines.append(f"{'':<6} {'':<10} {'all':<7} {p.operations:>9,} {p.throughput():>10,.0f}")
                if p.verify is not None and (p.verify["reads_checked"] or p.verify["mismatches"]):
                    lines.append(f"{'':<6} {'':<10} verified {p.verify['reads_checked']:,} reads: "
                                 f"{p.verify['mismatches']} mismatches")
        lines.append("")
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    payload = {"schema": SCHEMA, **payload}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
