"""Resident memory of the engine's core holding a city's whole fleet: 65,000 devices with warm state.

Builds the pipeline of the shipped config, as `gridwatch run` does, and feeds it the `city-scale`
scenario (13,000 sites x 5 devices) until every detector holds state for every device it watches. The
baseline in the same run is the resident memory of the same process before the pipeline is built (the
interpreter with numpy, pydantic and the engine imported). Reports the core's share per device.

Prints a table, writes benchmarks/results/memory.json and memory.png.
Run: .venv/bin/python benchmarks/bench_memory.py [--quick]
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config.loader import load_config  # noqa: E402 (after sys.path)
from engine.ingest.replay_file import batches  # noqa: E402
from engine.runners.assembly import build_pipeline  # noqa: E402
from simulators.scenario import load_scenario  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
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
    gc.collect()
    baseline = rss_bytes()
    pipeline = build_pipeline(cfg)
    samples: list[tuple[int, int]] = []
    scenario = load_scenario("city-scale").model_copy(update={"sites": sites, "duration_h": 1.0})
    hours = 6
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("feeding the fleet, hour by hour", total=hours)
        for hour in range(hours):
            rows = scenario.readings(1_700_000_000.0 + 3600.0 * hour)
            for b in batches(rows, pipeline.devices, 10_000):
                pipeline.detect(b)
            del rows
            gc.collect()
            samples.append((hour + 1, rss_bytes()))
            progress.advance(task)
    devices = len(pipeline.devices)
    peak = max(r for _, r in samples)
    state = pipeline.state_bytes()
    result = {
        "benchmark": "memory",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(), "numpy": np.__version__},
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
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=2))
    table = Table(title=f"memory: {devices:,} devices, state warmed with {hours} h of readings")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("baseline_rss_bytes", "rss_bytes", "core_bytes_per_device", "detector_state_bytes_per_device"):
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
