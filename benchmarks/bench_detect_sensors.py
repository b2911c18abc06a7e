"""Detection throughput on a city's whole sensor fleet: every geohazard detector, 65,000 devices.

Replays the `city-scale` scenario (13,000 sites x 5 devices; rain gauges, crack meters, GNSS) through
the shipped config's detectors in batches of 10,000 readings on one core, after a warm-up that fills
every detector's per-device state. The baseline in the same run is the same detectors fed one reading
at a time (what a per-message engine does); it runs on a sample of the fleet, since it is slow, and its
findings on that sample are checked against the batched run's. (Issue 9 also asks for a baseline written
as plain per-reading Python; that one is not written yet.)

Prints a table, writes benchmarks/results/detect_sensors.json and detect_sensors.png.
Run: .venv/bin/python benchmarks/bench_detect_sensors.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.reference_detectors import ReferenceIntensityDuration  # noqa: E402 (after sys.path)
from detectors.geohazard.intensity_duration import (  # noqa: E402
    RainfallIntensityDuration,
    RainfallIntensityDurationConfig,
)
from engine.config.loader import load_config  # noqa: E402
from engine.config.models import EngineConfig  # noqa: E402
from engine.core.devices import DeviceIndex  # noqa: E402
from engine.ingest.replay_file import batches  # noqa: E402
from engine.runners.assembly import build_pipeline  # noqa: E402
from simulators.scenario import load_scenario  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
console = Console()


def fleet_rows(hours: float, sites: int) -> tuple[list[tuple[float, str, str, str, float]], list[str]]:
    sc = load_scenario("city-scale").model_copy(update={"duration_h": hours, "sites": sites})
    return sc.readings(1_700_000_000.0), sc.site_ids


def rid_config(cfg: EngineConfig) -> RainfallIntensityDurationConfig:
    """The shipped rain-intensity detector without its AWI gate (the Python baseline has no gate)."""
    shipped = next(d for d in cfg.detectors if isinstance(d, RainfallIntensityDurationConfig))
    return shipped.model_copy(update={"awi_gate": None})


def main() -> None:
    quick = "--quick" in sys.argv
    sites = 2_000 if quick else 13_000
    cfg = load_config(ROOT / "config" / "gridwatch.yaml")
    with console.status("simulating the fleet"):
        warm, site_ids = fleet_rows(6.0, sites)  # fills the rain windows' first hours and every velocity window
        last = warm[-sites * 5 * 6 :]  # the last hour (6 reports of every device) is measured
        warm = warm[: -len(last)]
    pipeline = build_pipeline(cfg)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("warming detector state", total=len(warm))
        for b in batches(warm, pipeline.devices, 10_000):
            pipeline.detect(b)
            progress.advance(task, len(b))
    timed = list(batches(last, pipeline.devices, 10_000))
    per_detector = {d.name: 0.0 for d in pipeline.detectors}
    t0 = time.perf_counter()
    found = 0
    for b in timed:
        for det, state in zip(pipeline.detectors, pipeline.states, strict=True):
            t = time.perf_counter()
            found += len(det.process(b, state))
            per_detector[det.name] += time.perf_counter() - t
    batched_s = time.perf_counter() - t0
    batched_rate = len(last) / batched_s

    # Baseline: one reading at a time, on a sample of sites, with and compared to a batched run of it.
    sample_sites = set(site_ids[:200])
    sample = [r for r in warm + last if r[1] in sample_sites]
    sample_last = [r for r in last if r[1] in sample_sites]

    def run(rows: list, size: int, timed_from: int) -> tuple[list, float]:
        p = build_pipeline(cfg, DeviceIndex())
        out, t_start = [], 0.0
        for i, b in enumerate(batches(rows, p.devices, size)):
            if i * size == timed_from:
                t_start = time.perf_counter()
            out.extend((f.detector, f.site, f.device, f.ts, int(f.level)) for f in p.detect(b))
        return out, time.perf_counter() - t_start

    cut = len(sample) - len(sample_last)
    one, one_s = run(sample, 1, cut)
    many, _ = run(sample, len(sample), 0)
    same = sorted(one) == sorted(many)
    baseline_rate = len(sample_last) / one_s
    # Baseline 2: rainfall_intensity_duration written as plain per-reading Python (dicts and deques), over
    # every rain gauge of the fleet, against the vectorized detector on the same rows (both without the
    # AWI gate, which the Python version does not have); the warm-up hours are fed to both, untimed.
    rid = rid_config(cfg)
    reference = ReferenceIntensityDuration(rid)
    det = RainfallIntensityDuration(rid)
    state = det.new_state()
    rain_devices = DeviceIndex()
    ref_found, vec_found = [], []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("per-reading Python baseline (rain)", total=2)
        for part, timed_part in ((warm, False), (last, True)):
            rain = [r for r in part if r[3] == "rain_mm"]
            t = time.perf_counter()
            for ts, site, device, _, mm in rain:
                out = reference.process(site, device, ts, mm)
                if out is not None and timed_part:
                    ref_found.append((site, device, ts, out[0], round(out[1], 9)))
            python_s = time.perf_counter() - t
            t = time.perf_counter()
            for b in batches(rain, rain_devices, 10_000):
                found_here = det.process(b, state)
                if timed_part:
                    vec_found.extend((f.site, f.device, f.ts, int(f.level), round(f.score, 9)) for f in found_here)
            vector_s = time.perf_counter() - t
            progress.advance(task)
    rain_timed = sum(1 for r in last if r[3] == "rain_mm")
    result = {
        "benchmark": "detect_sensors",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "numpy": np.__version__,
        },
        "devices": sites * 5,
        "readings_timed": len(last),
        "batch": 10_000,
        "readings_per_s": round(batched_rate),
        "per_detector_s": {k: round(v, 4) for k, v in per_detector.items()},
        "baseline_one_at_a_time_readings_per_s": round(baseline_rate),
        "speedup_vs_baseline": round(batched_rate / baseline_rate, 1),
        "baseline_findings_identical": same,
        "findings": found,
        "rain_id_python_readings_per_s": round(rain_timed / python_s),
        "rain_id_vectorized_readings_per_s": round(rain_timed / vector_s),
        "rain_id_speedup_vs_python": round(python_s / vector_s, 1),
        "rain_id_findings_identical": sorted(ref_found) == sorted(vec_found),
        "rain_id_findings": len(ref_found),
        "state_bytes_per_device": round(pipeline.state_bytes() / len(pipeline.devices)),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "detect_sensors.json").write_text(json.dumps(result, indent=2))
    table = Table(title=f"detect_sensors: {result['devices']:,} devices, batches of 10,000, one core")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "readings_per_s",
        "baseline_one_at_a_time_readings_per_s",
        "speedup_vs_baseline",
        "baseline_findings_identical",
        "state_bytes_per_device",
        "rain_id_python_readings_per_s",
        "rain_id_vectorized_readings_per_s",
        "rain_id_speedup_vs_python",
        "rain_id_findings_identical",
    ):
        value = result[key]
        table.add_row(key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    for name, secs in per_detector.items():
        table.add_row(f"  {name} (s)", f"{secs:.3f}")
    console.print(table)
    plot(result)


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["per_detector_s"])
    rates = [result["readings_timed"] / max(s, 1e-9) for s in result["per_detector_s"].values()]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.barh(names, rates, color="tab:blue")
    ax1.set_xscale("log")
    ax1.set_xlabel("readings/s through this detector alone (log)")
    ax2.bar(
        ["one at a time", "batches of 10,000"],
        [result["baseline_one_at_a_time_readings_per_s"], result["readings_per_s"]],
        color=["grey", "tab:green"],
    )
    ax2.set_yscale("log")
    ax2.set_ylabel("readings/s, all detectors (log)")
    fig.suptitle(f"detect_sensors: {result['devices']:,} devices, {result['speedup_vs_baseline']}x the baseline")
    fig.tight_layout()
    fig.savefig(RESULTS / "detect_sensors.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
