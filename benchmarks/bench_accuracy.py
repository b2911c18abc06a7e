"""Detection skill on the shipped scenarios, recomputed so a regression shows.

Simulates each geohazard scenario, replays it through the shipped config (as `gridwatch replay --direct`
does) and scores it against its ground truth: lead time of each warning level before a simulated
failure, the failure-time forecast error, landslide incidents at sites that do not fail, and injected
sensor faults reported as device_fault. Also the camera detectors' figures of ``models/README.md``:
the model's cross-source F1 and false-alarm rates, simulated tower cameras (minutes from ignition to
the first incident, incidents before it) and hard negatives through the camera replay and, where the
real recordings are beside the checkout (``../shared/data``), the time to the first finding on
``house6.mp4`` and the thermal detector's recall and false alarms per FLAME-T camera model. The
baseline in the same run is the previous results file, when there is one: each figure is shown with
its change.

Prints a table, writes benchmarks/results/accuracy.json and accuracy.png.
Run: .venv/bin/python benchmarks/bench_accuracy.py
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config.loader import load_config  # noqa: E402 (after sys.path)
from engine.core.findings import Finding  # noqa: E402
from engine.evaluation import score  # noqa: E402
from engine.ingest.replay_file import batches  # noqa: E402
from engine.runners.assembly import build_pipeline  # noqa: E402
from simulators.scenario import load_scenario  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SCENARIOS = ("creep-to-failure", "storm-over-slope", "stable-slopes", "sensor-faults")
console = Console()


def evaluate(name: str) -> dict[str, Any]:
    cfg = load_config(ROOT / "config" / "gridwatch.yaml")
    sc = load_scenario(name)
    base = 1_700_000_000.0
    pipeline = build_pipeline(cfg)
    events: list[dict[str, Any]] = []
    found: list[Finding] = []
    for b in batches(sc.readings(base), pipeline.devices, cfg.ingest.batch_max):
        events.extend(pipeline.step(b, found))
    return score(sc.truth(base), events, found)


def camera_figures() -> dict[str, float | str]:
    """The camera detectors' figures (models/evaluate.py): cross-source photos (from the card: each source
    scored by a model that never saw it), simulated tower cameras and hard negatives through the engine's
    camera replay, house6.mp4, and FLAME-T per camera model at points B and C (calibrated on A). The real
    recordings must be beside the checkout (../shared/data); skipped with a message otherwise."""
    data = ROOT.parent / "shared" / "data"
    out: dict[str, float | str] = {}
    sys.path.insert(0, str(ROOT / "models"))
    import evaluate as vision

    card = json.loads((ROOT / "models" / "smoke_fire.json").read_text())
    for source, r in card.get("cross_source", {}).items():
        for cls in ("fire", "smoke"):
            if cls in r:
                out[f"cross_source/{source}/{cls}_f1"] = r[cls]["f1"]
            if f"{cls}_false_alarm_rate" in r:
                out[f"cross_source/{source}/{cls}_false_alarm_rate"] = r[f"{cls}_false_alarm_rate"]
    with console.status("simulated tower cameras and hard negatives through the camera replay"):
        sim = vision.simulated_streams()
    for tower in sim["towers"]:
        out[f"tower_sim/seed_{tower['seed']}/minutes_from_ignition"] = tower["minutes_from_ignition"] or "none"
        out[f"tower_sim/seed_{tower['seed']}/incidents_before_ignition"] = tower["incidents_before_ignition"]
    out["hard_negatives_sim/incidents"] = sum(n["incidents"] for n in sim["negatives"].values())
    if not (data / "fire-smoke-roboflow").is_dir():
        console.print(f"[yellow]no recordings at {data}: house6 and FLAME-T figures skipped[/]")
        return out
    with console.status("house6.mp4 and FLAME-T"):
        h6 = vision.house6()
        for det in ("smoke-fire-model", "flame_color_motion"):
            out[f"house6/{det}_first_finding_s"] = h6[det]["after_first_flame_s"] if h6[det] else "none"
        ev = json.loads((ROOT / "models" / "evaluation.json").read_text())["flame_t"]
        for p in "BC":
            for cam in vision.THERMAL_CAMERAS:
                r = vision.thermal_eval(vision.flame_t_frames(p, cam), ev["alarm_z"][cam])
                out[f"flame_t/point_{p}/{cam}_fire_recall"] = r["fire_recall"]
                out[f"flame_t/point_{p}/{cam}_false_alarm_rate"] = r["false_alarm_rate"]
    return out


def main() -> None:
    previous = {}
    path = RESULTS / "accuracy.json"
    if path.exists():
        previous = json.loads(path.read_text()).get("figures", {})
    figures: dict[str, float | str] = {}
    for name in SCENARIOS:
        with console.status(name):
            r = evaluate(name)
        for slide in r["landslides"]:
            for key in ("yellow_lead_h", "orange_lead_h", "red_lead_h", "forecast_error_at_red_h"):
                if key in slide:
                    figures[f"{name}/{slide['site']}/{key}"] = slide[key]
        figures[f"{name}/landslide_false_alarm_max_level"] = r["max_false_alarm_level"]
        if r["faults"]:
            figures[f"{name}/faults_found"] = f"{sum(f['found'] for f in r['faults'])}/{len(r['faults'])}"
        figures[f"{name}/unexpected_device_faults"] = r["unexpected_faults"]
    figures.update(camera_figures())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "accuracy", "date": datetime.now(UTC).isoformat(timespec="seconds"),
                                "figures": figures}, indent=2))  # fmt: skip
    table = Table(title="accuracy on the shipped scenarios (shipped config)")
    for c in ("figure", "value", "previous"):
        table.add_column(c, justify="right" if c != "figure" else "left")
    for key, value in figures.items():
        before = previous.get(key, "-")
        style = "" if before in ("-", value) else "bold yellow"
        table.add_row(key, str(value), str(before), style=style)
    console.print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    leads = {k: v for k, v in figures.items() if k.endswith("_lead_h") and isinstance(v, (int, float))}
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(list(leads), list(leads.values()), color="tab:orange")
    ax.set_xlabel("hours of warning before the simulated failure")
    ax.set_title("lead time per warning level")
    fig.tight_layout()
    fig.savefig(RESULTS / "accuracy.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
