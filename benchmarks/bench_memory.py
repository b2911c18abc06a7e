"""Resident memory of the engine's core holding a city's whole fleet: 65,000 devices with warm state.

Builds the pipeline of the shipped config and the operator page's reading history, as `gridwatch run`
does, and feeds them 73 hours of the `city-scale` scenario (13,000 sites x 5 devices): full history,
every detector's windows and the charts' 72 h filled for every device (``benchmarks/fleet.py``). The
baseline in the same run is the resident memory of the same process before the pipeline is built (the
interpreter with numpy, pydantic and the engine imported); the generator's table of readings is
subtracted while it is held, and the last figure is taken after it is freed. Reports bytes per device.

Prints a table, writes benchmarks/results/memory.json and memory.png.
Run: .venv/bin/python benchmarks/bench_memory.py [--quick]
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fleet import FULL_HISTORY_H, STEPS_PER_H, city_fleet  # noqa: E402 (after sys.path)
from benchmarks.output import results_dir, write_results  # noqa: E402
from engine.config.loader import load_config  # noqa: E402
from engine.core.allocator import tune_allocator  # noqa: E402
from engine.core.history import ReadingHistory  # noqa: E402
from engine.runners.assembly import build_pipeline  # noqa: E402

RESULTS = results_dir()  # outside the checkout for --quick: only full runs write results files
console = Console()
TARGET_BYTES = 1 << 30  # issue 9: at most 1 GB resident for 65,000 devices of full history


def rss_bytes() -> int:
    """Current resident set size (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    quick = "--quick" in sys.argv
    sites = 2_000 if quick else 13_000
    cfg = load_config(ROOT / "config" / "gridwatch.yaml")
    tune_allocator()  # as `gridwatch run` does
    gc.collect()
    baseline = rss_bytes()
    with console.status(f"simulating {sites:,} sites over {FULL_HISTORY_H} h"):
        fleet = city_fleet(sites)
    table_bytes = fleet.table.nbytes  # the generator's (time x channel) table, not the engine's
    pipeline = build_pipeline(cfg)
    history = ReadingHistory(cfg.api.history_points)  # the operator page's charts, as `gridwatch run` keeps
    samples: list[tuple[int, int]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("feeding the fleet, hour by hour", total=FULL_HISTORY_H)
        for hour in range(FULL_HISTORY_H):
            steps = (hour * STEPS_PER_H, (hour + 1) * STEPS_PER_H)
            for b in fleet.batches(pipeline.devices, 10_000, *steps):
                history.add(b)
                pipeline.detect(b)
            if (hour + 1) % 6 == 0:
                gc.collect()
                samples.append((hour + 1, rss_bytes() - table_bytes))
            progress.advance(task)
    del fleet
    gc.collect()
    samples.append((FULL_HISTORY_H, rss_bytes()))
    hours = FULL_HISTORY_H
    devices = len(pipeline.devices)
    peak = max(r for _, r in samples)
    state = pipeline.state_bytes()
    figures = {
        "devices": devices,
        "baseline_rss_bytes": baseline,
        "rss_bytes": peak,
        "core_rss_bytes": peak - baseline,
        "core_bytes_per_device": round((peak - baseline) / devices),
        "detector_state_bytes": state,
        "detector_state_bytes_per_device": round(state / devices),
        "target_rss_bytes": TARGET_BYTES,
        "within_target": peak <= TARGET_BYTES,
        "rss_by_hour": samples,
        "history_points": cfg.api.history_points,
        "history_bytes": history.nbytes(),
    }
    result = write_results("memory", figures, numpy=np.__version__)
    table = Table(title=f"memory: {devices:,} devices, {hours} h of readings: state and charts full")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "baseline_rss_bytes",
        "rss_bytes",
        "core_bytes_per_device",
        "detector_state_bytes_per_device",
        "history_bytes",
    ):
        table.add_row(key, f"{result[key]:,}")
    table.add_row("within 1 GB", str(result["within_target"]))
    console.print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h for h, _ in samples], [r / 2**20 for _, r in samples], "o-", label="engine process")
    ax.axhline(baseline / 2**20, color="grey", ls="--", label="before the pipeline (baseline)")
    ax.axhline(TARGET_BYTES / 2**20, color="tab:red", ls=":", label="target (1 GB)")
    ax.set_xlabel("hours of fleet readings fed")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_title(f"memory: {devices:,} devices")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "memory.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
