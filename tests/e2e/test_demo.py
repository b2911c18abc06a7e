"""`gridwatch demo` as `make demo` runs it, shortened: embedded broker, engine, simulated devices and cameras."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def run_demo(tmp_path, duration_s: float = 5.0):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "demo",
            "--duration",
            str(duration_s),
            "--out",
            str(tmp_path),
            "-c",
            str(ROOT / "config" / "gridwatch.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )


def test_demo_plays_the_whole_scenario_and_raises_the_slope_to_red(tmp_path):
    res = run_demo(tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "10368 readings processed, 0 rejected" in res.stdout
    events = [orjson.loads(line) for line in (tmp_path / "incidents.jsonl").read_bytes().splitlines()]
    # the slope's sensors raise it level by level (S07's landslide is a grid worker's report, below)
    slide = [e["level"] for e in events if e["hazard"] == "landslide" and e["action"] in ("fired", "raised")
             and e["site"] != "S07"]  # fmt: skip
    assert slide == ["blue", "yellow", "orange", "red"]
    # After the storm a smoke camera and a thermal camera see a fire at S05; the thermal camera's float °C
    # frames are read as °C (not as centikelvin counts: -270 °C, never an alarm).
    fire = [e for e in events if e["hazard"] == "fire" and e["action"] == "fired"]
    assert fire and fire[0]["site"] == "S05", "the demo's cameras see the fire"
    at_s05 = {f["device"] for e in events if e["hazard"] == "fire" and e["site"] == "S05" for f in e["findings"]}
    assert at_s05 & {"ir-1", "cam-1"}, at_s05
    # People report too (MQTT reports topic): a resident's smoke by position joins S05's fire; a grid
    # worker's cracks at S07 open a landslide incident that no sensor raised.
    reports = {(e["site"], e["hazard"]) for e in events for f in e["findings"] if f["detector"] == "grid_report"}
    assert reports == {("S05", "fire"), ("S07", "landslide")}, reports
    # Live camera frames after the storm do not make the storm's incidents flap (one per site and hazard).
    assert len({e["incident_id"] for e in events if e["hazard"] == "rainstorm"}) <= 3
    # A second demo starts from nothing: no checkpoint or store of the first (it raised false device faults)
    again = run_demo(tmp_path, duration_s=2.0)
    assert again.returncode == 0, again.stderr[-2000:]
    events = [orjson.loads(line) for line in (tmp_path / "incidents.jsonl").read_bytes().splitlines()]
    assert not [e for e in events if e["hazard"] == "device_fault"], "no false device faults on a second run"
    assert len(list((tmp_path / "runs").iterdir())) == 2, "each run has its own data dir"
