"""The shipped scenarios, simulated and replayed through ``gridwatch replay --direct`` as a user would."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def simulate_and_replay(tmp_path: Path, scenario: str) -> tuple[dict, list[dict], str]:
    feed = tmp_path / f"{scenario}.csv"
    report = tmp_path / "report.json"
    events = tmp_path / "events.jsonl"
    cli = [sys.executable, "-m", "engine.cli"]
    sim = subprocess.run(
        [*cli, "simulate", "--scenario", scenario, "--out", str(feed), "--start", "1700000000"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr[-2000:]
    assert (tmp_path / f"{scenario}.truth.csv").exists()
    rep = subprocess.run(
        [*cli, "replay", str(feed), "--direct", "--out", str(events), "--report", str(report),
         "-c", str(ROOT / "config" / "gridwatch.yaml")],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr[-2000:]
    return (
        orjson.loads(report.read_bytes()),
        [orjson.loads(x) for x in events.read_bytes().splitlines()],
        rep.stdout + rep.stderr,
    )


def test_creep_to_failure_reaches_red_before_the_failure(tmp_path):
    report, events, out = simulate_and_replay(tmp_path, "creep-to-failure")
    (slide,) = report["landslides"]
    assert slide["site"] == "S03" and slide["max_level"] == "red"
    assert slide["red_lead_h"] > 2.0, "red must come hours before the failure"
    assert slide["yellow_lead_h"] > slide["orange_lead_h"] > slide["red_lead_h"]
    assert abs(slide["forecast_error_at_red_h"]) < 3.0
    assert report["false_alarms"] == []
    assert "Landslides: lead time" in out
    levels = [e["level"] for e in events if e["hazard"] == "landslide"]
    assert levels[-1] == "red" and levels == sorted(levels, key=["blue", "yellow", "orange", "red"].index)


@pytest.mark.parametrize("scenario", ["stable-slopes", "sensor-faults"])
def test_no_landslide_above_blue_and_every_fault_reported(tmp_path, scenario):
    report, events, _ = simulate_and_replay(tmp_path, scenario)
    assert report["landslides"] == []
    assert report["max_false_alarm_level"] in ("none", "blue")
    assert all(f["found"] for f in report["faults"]), report["faults"]
    assert report["unexpected_faults"] == 0, report["unexpected_fault_list"]
    if scenario == "sensor-faults":
        kinds = {f["kind"] for f in report["faults"]}
        assert kinds == {"silent", "stuck", "jump", "out_of_range", "clock_skew", "duplicate", "out_of_order"}
        faulty = {e["site"] for e in events if e["hazard"] == "device_fault"}
        assert faulty == {"S01", "S02", "S03", "S04", "S05", "S06", "S07"}


def test_gridwatch_tune_sweeps_scores_plots_and_suggests(tmp_path):
    cli = [sys.executable, "-m", "engine.cli"]
    feeds = []
    for scenario in ("creep-to-failure", "stable-slopes"):
        feed = tmp_path / f"{scenario}.csv"
        sim = subprocess.run([*cli, "simulate", "--scenario", scenario, "--out", str(feed), "--start", "1700000000"],
                             capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)  # fmt: skip
        assert sim.returncode == 0, sim.stderr[-2000:]
        feeds += ["--data", str(feed), "--truth", str(feed.with_suffix(".truth.csv"))]
    out = tmp_path / "tune"
    shutil.copytree(ROOT / "config", tmp_path / "config")
    config = tmp_path / "config" / "gridwatch.yaml"
    original = config.read_text()
    res = subprocess.run(
        [*cli, "tune", *feeds, "--detector", "crack-velocity", "--sweep", "angle_min_velocity_per_day=0:2:1",
         "--sweep", "min_baseline_per_day=0.1:0.5:0.4", "--level", "yellow", "--max-false-alarms", "2/site-year",
         "--out", str(out), "-c", str(config), "--apply"],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )  # fmt: skip
    said = res.stdout + res.stderr
    assert res.returncode == 0, said[-3000:]
    rows = (out / "tune.csv").read_text().splitlines()
    assert len(rows) == 1 + (1 + 3 * 2) * 4  # header + (current + 6 points) x 4 levels
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    patch = yaml.safe_load((out / "suggested.yaml").read_text())
    (entry,) = patch["detectors"]
    assert entry["id"] == "crack-velocity"
    assert "crack-velocity at level yellow" in " ".join(said.split())
    # --apply wrote the suggestion into the config file, kept its comments, and kept the old file
    applied = yaml.safe_load(config.read_text())
    (now,) = [d for d in applied["detectors"] if d.get("id") == "crack-velocity"]
    assert {k: now.get(k) for k in entry if k != "id"} == {k: v for k, v in entry.items() if k != "id"}
    before, after = original.splitlines(), config.read_text().splitlines()
    assert len(after) == len(before), "the rest of the file keeps its layout"
    assert sum(a != b for a, b in zip(before, after, strict=True)) == len(entry) - 1  # one line per changed field
    assert (config.parent / "gridwatch.yaml.bak").read_text() == original
    assert "applied to" in said and "+" in said  # the diff is shown


def test_tune_a_camera_detector_on_an_image_folder_with_frame_labels(tmp_path):
    """`gridwatch tune` on a camera detector: per-frame labels, a sweep of its threshold, the ROC plot."""
    frames = ROOT / "tests" / "data" / "frames"
    out = tmp_path / "tune"
    res = subprocess.run(
        [sys.executable, "-m", "engine.cli", "tune", "--detector", "smoke-fire-model", "--data", str(frames),
         "--truth", str(frames / "truth.csv"), "--sweep", "thresholds.smoke=0.0:1.0:0.25", "--level", "smoke",
         "--min-recall", "1", "--out", str(out), "-c", str(ROOT / "config" / "gridwatch.yaml")],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    rows = list(csv.DictReader((out / "tune.csv").open()))
    smoke = {r["thresholds.smoke"]: r for r in rows if r["level"] == "smoke" and r["point"] != "current"}
    # threshold 0 calls every frame smoke (2 false alarms); 1.0 calls none (the smoke frame missed)
    assert smoke["0.0"]["false_alarms"] == "2" and smoke["0.0"]["recall"] == "1.0"
    assert smoke["1.0"]["hits"] == "0" and smoke["1.0"]["misses"] == "1"
    assert (out / "tune.png").stat().st_size > 10_000
    suggested = yaml.safe_load((out / "suggested.yaml").read_text())
    (entry,) = suggested["cameras"]["detectors"]
    assert entry["id"] == "smoke-fire-model" and 0.25 <= entry["thresholds"]["smoke"] <= 0.75


def test_tune_a_camera_detector_per_camera_with_a_frame_false_alarm_constraint(tmp_path):
    """Two folders are two cameras: per-camera scores; --max-false-alarm-rate bounds the suggestion."""
    frames = ROOT / "tests" / "data" / "frames"
    data = []
    for cam in ("cam-a", "cam-b"):
        folder = tmp_path / cam
        shutil.copytree(frames, folder)
        data += ["--data", str(folder), "--truth", str(folder / "truth.csv")]
    out = tmp_path / "tune"
    res = subprocess.run(
        [sys.executable, "-m", "engine.cli", "tune", "--detector", "smoke-fire-model", *data,
         "--sweep", "thresholds.smoke=0.0:1.0:0.25", "--level", "smoke", "--max-false-alarm-rate", "0",
         "--out", str(out), "-c", str(ROOT / "config" / "gridwatch.yaml")],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    rows = list(csv.DictReader((out / "tune.csv").open()))
    assert {r["level"] for r in rows} >= {"smoke", "smoke@cam-a", "smoke@cam-b"}
    zero = next(r for r in rows if r["thresholds.smoke"] == "0.0" and r["level"] == "smoke@cam-a")
    assert zero["false_alarms"] == "2", "each camera's own counts: threshold 0 alarms on its two smoke-free frames"
    suggested = yaml.safe_load((out / "suggested.yaml").read_text())
    (entry,) = suggested["cameras"]["detectors"]
    chosen = next(r for r in rows if r["point"] == "suggested" and r["level"] == "smoke")
    assert chosen["false_alarms"] == "0" and float(chosen["thresholds.smoke"]) == entry["thresholds"]["smoke"]
    assert "per camera" in res.stdout + res.stderr
