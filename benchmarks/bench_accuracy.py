"""Detection skill on the shipped scenarios, recomputed so a regression shows.

Simulates each geohazard scenario, replays it through the shipped config (as `gridwatch replay --direct`
does) and scores it against its ground truth: lead time of each warning level before a simulated
failure, the failure-time forecast error, landslide incidents at sites that do not fail, and injected
sensor faults reported as device_fault. Also the camera detectors' figures of ``models/README.md``:
the model's cross-source F1 and false-alarm rates, simulated tower cameras (minutes from ignition to
the first incident, incidents before it) and hard negatives through the camera replay, the recorded
plume streams on real backgrounds (``models/plume_streams.json``), a camera learning from its operator's
verdicts (``models/verdict_streams.py``: the first false alarm dismissed, a plume later) and, where the
real recordings are beside the checkout (``../shared/data``), the time to the first finding on
``house6.mp4`` and the thermal detector's recall and false alarms per FLAME-T camera model. The
baseline in the same run is the previous results file, when there is one: each figure is shown with
its change.

The rainfall and slope methods against their published definitions: on synthetic hourly gauge records
(with and without missing hours, in hundredths of an inch as the Seattle gauges report) the share of
reported hours in which each rainfall detector agrees with the brute-force method of the tests
(``tests/rainfall_reference.py``: USGS cumulative and storm intensity-duration as Thresh counts them,
fixed windows, the AWI gate), alarm hours of the storm method against fixed windows, an inch gauge
published as ``rain_in``, a GNSS station surveyed every 11 days (velocity and forecast), forecasts
whose failure time had passed (must be none), and an extreme downpour (must reach the rain detectors).

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

from benchmarks.output import results_dir  # noqa: E402
from engine.config.loader import load_config  # noqa: E402 (after sys.path)
from engine.evaluation import score  # noqa: E402
from engine.runners.replay import replay_readings  # noqa: E402
from simulators.scenario import load_scenario  # noqa: E402

RESULTS = results_dir()  # outside the checkout for --quick: only full runs write results files
SCENARIOS = ("creep-to-failure", "storm-over-slope", "stable-slopes", "sensor-faults")
console = Console()


def evaluate(name: str) -> dict[str, Any]:
    cfg = load_config(ROOT / "config" / "gridwatch.yaml")
    sc = load_scenario(name)
    base = 1_700_000_000.0
    done = replay_readings(cfg, sc.readings(base))
    return score(sc.truth(base), done.events, done.findings)


def rainfall_figures() -> dict[str, float | str]:
    """Agreement with the published methods hour by hour, and the cases of issue 18."""
    import math

    import numpy as np

    from detectors.device_health import DeviceHealth, DeviceHealthConfig
    from detectors.geohazard.cumulative_rainfall import RainfallCumulative, RainfallCumulativeConfig
    from detectors.geohazard.displacement_rate import DisplacementRate, DisplacementRateConfig
    from detectors.geohazard.intensity_duration import RainfallIntensityDuration, RainfallIntensityDurationConfig
    from detectors.geohazard.inverse_velocity import InverseVelocity, InverseVelocityConfig
    from engine.core.batch import BatchBuilder
    from engine.core.devices import DeviceIndex
    from simulators.slope import voight_displacement
    from simulators.storm import hourly_record
    from tests import rainfall_reference as ref

    out: dict[str, float | str] = {}
    seattle_mm = 3.257 * 25.4
    records = {f"g{seed}": hourly_record(seed, 2000, holes=0 if seed % 2 else 3) for seed in range(8)}
    reported = sum(sum(1 for v in p if not math.isnan(v)) for p in records.values())

    def agreement(det: object, want: dict[str, list[int]]) -> tuple[float, int]:
        got = ref.raised_hours(det, records, 500)
        differ = sum(len(set(got[d]) ^ set(want[d])) for d in records)
        return round(1.0 - differ / reported, 6), sum(len(v) for v in got.values())

    for policy in ("skip", "lower_bound"):
        cases = {
            "usgs_cumulative": (
                RainfallCumulative(RainfallCumulativeConfig(accumulations=[], gap_policy=policy)),
                {d: ref.exceeded(ref.usgs_cumulative(p, policy=policy), p) for d, p in records.items()},
            ),
            "seattle_storm_id": (
                RainfallIntensityDuration(
                    RainfallIntensityDurationConfig(threshold_units="in", levels={"orange": 1.0}, gap_policy=policy)
                ),
                {
                    d: ref.exceeded(
                        [x is not None and x[0] for x in ref.usgs_storm_id(p, seattle_mm, 1.13, policy=policy)], p
                    )
                    for d, p in records.items()
                },
            ),
        }
        for name, (det, want) in cases.items():
            share, hours = agreement(det, want)
            out[f"rain/{name}/{policy}/hours_agreeing_with_method"] = share
            out[f"rain/{name}/{policy}/alarm_hours"] = hours
    windows = RainfallIntensityDuration(
        RainfallIntensityDurationConfig(threshold_units="in", method="window", levels={"orange": 1.0})
    )
    out["rain/seattle_fixed_windows/lower_bound/alarm_hours"] = sum(
        len(v) for v in ref.raised_hours(windows, records, 500).values()
    )
    # An inch gauge publishing rain_in: converted at ingest, the Seattle storm hours are the method's.
    from engine.config.models import IngestConfig
    from engine.ingest.decode import SensorDecoder
    from engine.ingest.topics import Topic

    p = records["g1"]
    b = BatchBuilder(DeviceIndex())
    decoder = SensorDecoder(IngestConfig(), b)
    for i, mm in enumerate(p):
        ts = ref.report_ts(i)
        decoder.decode(
            Topic("sensors", "S1", "g"), f'{{"ts": {ts}, "values": {{"rain_in": {mm / 25.4!r}}}}}'.encode(), ts
        )
    det = RainfallIntensityDuration(RainfallIntensityDurationConfig(threshold_units="in", levels={"orange": 1.0}))
    got = [ref.hour_of(f.ts) for f in det.process(b.take(), det.new_state())]
    want = ref.exceeded([x is not None and x[0] for x in ref.usgs_storm_id(p, seattle_mm, 1.13)], p)
    out["rain/inch_gauge_as_rain_in/same_hours_as_method"] = "yes" if got == want and want else "no"

    def feed(det: object, rows: list[tuple[str, float, str, float]]) -> list[object]:
        b = BatchBuilder(DeviceIndex())
        for device, ts, metric, value in rows:
            b.add("S1", device, ts, metric, value)
        return det.process(b.take(), det.new_state())  # type: ignore[attr-defined, no-any-return]

    # A GNSS station surveyed every 11 days, failing on day 400.
    t_h = np.arange(1, 37, dtype=np.float64) * 11 * 24.0
    disp = voight_displacement(t_h, 150 * 24.0, 400 * 24.0, 0.5 / 24.0)
    rows = [("gnss-1", float(t) * 3600.0, "disp_mm", float(v)) for t, v in zip(t_h, disp, strict=True)]
    rate = feed(
        DisplacementRate(DisplacementRateConfig(metrics=["disp_mm"], velocity_levels={"blue": 0.3}, angle_levels={})),
        rows,
    )
    out["slope/gnss_every_11_days/velocity_findings"] = len(rate)
    fc = feed(
        InverseVelocity(InverseVelocityConfig(metrics=["disp_mm"], window_h=24.0, min_velocity_per_day=0.1)), rows
    )
    out["slope/gnss_every_11_days/forecast_error_days"] = (
        round(abs(fc[-1].evidence["predicted_failure_ts"] / 86400.0 - 400.0), 1) if fc else "none"  # type: ignore[attr-defined]
    )
    # A slope that accelerated towards failure and then slowed: no forecast whose time has passed.
    t = np.arange(1, 6 * 110) / 6.0
    slowed = voight_displacement(np.minimum(t, 99.0), 40.0, 100.5, 0.05) + 2.0 * np.maximum(t - 99.0, 0.0)
    fc = feed(
        InverseVelocity(InverseVelocityConfig(metrics=["crack_mm"])),
        [("crack-1", float(x) * 3600.0, "crack_mm", float(v)) for x, v in zip(t, slowed, strict=True)],
    )
    out["slope/forecasts_with_failure_time_past"] = sum(1 for f in fc if f.evidence["hours_to_failure"] <= 0)  # type: ignore[attr-defined]
    # A 180 mm hour: reported for a check, and kept for the rain detectors.
    b = BatchBuilder(DeviceIndex())
    for i, mm in enumerate([2.0, 5.0, 180.0, 20.0]):
        b.add("S1", "rain-1", (i + 1) * 3600.0, "rain_mm", mm)
    batch = b.take()
    DeviceHealth(DeviceHealthConfig()).process(batch, DeviceHealth(DeviceHealthConfig()).new_state())
    out["rain/extreme_180mm_hour_kept_for_detectors"] = "yes" if int(batch.flags[2]) == 0 else "no"
    return out


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
    plumes = ROOT / "models" / "plume_streams.json"  # recorded by models/plume_streams.py (minutes to run)
    if plumes.exists():
        for size, r in json.loads(plumes.read_text())["summary"].items():
            key = "plume_streams/" + size.replace(" ", "_").replace("(", "").replace(")", "")
            out[f"{key}/found_within_10_min"] = f"{r['plumes_found_within_10_min']}/{r['streams']}"
            out[f"{key}/streams_alarmed_before_ignition"] = r["streams_with_incidents_before_ignition"]
            out[f"{key}/first_region_on_plume"] = f"{r['first_region_on_plume']}/{r['streams']}"
            out[f"{key}/controls_with_incidents"] = f"{r['controls_with_incidents']}/{r['streams']}"
            if "second_drawing" in r:  # another plume drawing than the one the detectors were developed on
                two = r["second_drawing"]
                out[f"{key}/second_drawing_found_within_10_min"] = f"{two['plumes_found_within_10_min']}/{r['streams']}"
                out[f"{key}/second_drawing_alarmed_before_ignition"] = two["streams_with_incidents_before_ignition"]
            for kind, n in r.get("nuisance_streams_with_incidents", {}).items():
                out[f"{key}/{kind}_controls_with_incidents"] = f"{n}/{r['streams']}"
    out.update(verdict_figures())
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
        if (data / "hit-uav-thermal").is_dir():
            hit = vision.hit_uav_frames()
            for cam in vision.THERMAL_CAMERAS:
                out[f"hit_uav/{cam}_alarm_false_alarm_rate"] = vision.hit_uav_eval(hit, ev["alarm_z"][cam])[
                    "false_alarm_rate"
                ]
    return out


def verdict_figures() -> dict[str, float | str]:
    """A camera that learns from its operator (models/verdict_streams.py): a recurring false alarm (a chimney's
    smoke every 20 minutes) dismissed once per alarm it still raises (at most 3 verdicts), a real plume (and a
    fire) later in the same camera; per stream, the nuisance episodes that alarm without verdicts and after the
    last one, the verdicts it took, minutes from ignition to the plume's first finding without and with them,
    and the refit's CPU seconds with 500 examples; where recorded, plume_change's case on real backgrounds
    (``verdict_streams.py --plume-change``: a chimney's steam dismissed once, a plume elsewhere later)."""
    sys.path.insert(0, str(ROOT / "models"))
    import verdict_streams

    with console.status("a camera learning from its operator's verdicts"):
        vs = verdict_streams.figures(0)
    out: dict[str, float | str] = {}
    for row in vs["streams"]:
        key = "verdict_streams/" + row["stream"].replace(" ", "_")
        before, after = row["without_verdicts"], row.get("with_verdicts") or {}
        out[f"{key}/nuisance_episodes_without_verdicts"] = before["nuisance_episodes_alarmed"]
        out[f"{key}/verdicts"] = len(row.get("verdicts", []))
        out[f"{key}/nuisance_episodes_after_last_verdict"] = after.get("nuisance_episodes_alarmed_after_last_verdict",
                                                                       "-")  # fmt: skip
        for name, r in (("without", before), ("with", after)):
            minutes = r.get("plume_minutes_from_ignition")
            out[f"{key}/plume_minutes_{name}_verdicts"] = "none" if minutes is None else minutes
    out["verdict_streams/refit_500_examples_cpu_s"] = vs["refit"]["cpu_s"]
    kept = ROOT / "models" / "verdict_streams.json"  # plume_change's case on real backgrounds, where recorded
    pc = json.loads(kept.read_text()).get("plume_change") if kept.exists() else None
    if pc:
        key, n = f"verdict_streams/plume_change_{pc['frame']}", pc["backgrounds"]
        found = pc["plumes_found_within_10_min_with_the_verdict"]
        out[f"{key}/steam_episodes_alarmed_without_verdicts"] = (
            f"{pc['steam_episodes_alarmed_without_verdicts']}/{pc['steam_episodes']}"
        )
        out[f"{key}/steam_episodes_alarmed_after_one_verdict"] = (
            f"{pc['steam_episodes_alarmed_after_the_verdict']}/{pc['steam_episodes_after_the_verdict']}"
        )
        out[f"{key}/plume_found_within_10_min_with_the_verdict"] = f"{found}/{n}"
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
    with console.status("rainfall and slope methods against their published definitions"):
        figures.update(rainfall_figures())
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
