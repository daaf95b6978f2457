"""PNG plots of a run (matplotlib, Agg backend, no display needed):

- ``throughput.png``: ops/s per phase (load and each workload), one bar per
  store;
- ``latency.png``: one panel per phase, p50/p95/p99/p99.9 of each operation,
  one bar per store, log scale.
"""
from __future__ import annotations

from pathlib import Path

from perf.driver import StoreResult

PERCENTILES = (("p50", 50), ("p95", 95), ("p99", 99), ("p99.9", 99.9))


def matplotlib_missing() -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f"matplotlib is not installed ({exc})"
    return None


def _phases(results: list[StoreResult]) -> list[str]:
    phases: list[str] = []
    for r in results:
        for p in r.phases:
            if p.phase not in phases:
                phases.append(p.phase)
    return phases


def write_plots(results: list[StoreResult], folder: Path, title: str) -> list[str]:
    """Write the plots of the stores that ran; returns the file names.
    REQUIRES: matplotlib installed (see ``matplotlib_missing``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [r for r in results if r.phases]
    if not ran:
        return []
    phases = _phases(ran)
    width = 0.8 / len(ran)
    written = []

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(phases) + 2), 4.5))
    for i, r in enumerate(ran):
        by_phase = {p.phase: p.throughput() for p in r.phases}
        xs = [j + (i - (len(ran) - 1) / 2) * width for j in range(len(phases))]
        ax.bar(xs, [by_phase.get(ph, 0.0) for ph in phases], width, label=r.name)
    ax.set_xticks(range(len(phases)), phases)
    ax.set_ylabel("operations / s")
    ax.set_title(f"Throughput per workload — {title}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "throughput.png", dpi=110)
    plt.close(fig)
    written.append("throughput.png")

    cols = min(3, len(phases))
    rows = (len(phases) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for k, phase in enumerate(phases):
        ax = axes[k // cols][k % cols]
        ops = sorted({op for r in ran for p in r.phases if p.phase == phase for op in p.histograms})
        labels = [f"{op}\n{name}" for op in ops for name, _ in PERCENTILES]
        for i, r in enumerate(ran):
            hist = next((p.histograms for p in r.phases if p.phase == phase), {})
            values = [hist[op].percentile(q) / 1000.0 if op in hist else 0.0
                      for op in ops for _, q in PERCENTILES]
            xs = [j + (i - (len(ran) - 1) / 2) * width for j in range(len(labels))]
            ax.bar(xs, values, width, label=r.name)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("latency (µs)")
        ax.set_title(phase, fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    for k in range(len(phases), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Latency percentiles — {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(folder / "latency.png", dpi=110)
    plt.close(fig)
    written.append("latency.png")
    return written
