"""`gridwatch demo` as `make demo` runs it, shortened: embedded broker, engine, simulated devices and cameras."""

from __future__ import annotations

import os
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


def test_demo_tells_its_story_keeps_its_basemap_and_boards_every_incident(tmp_path):
    """The terminal announces each phase and each incident as it opens or rises; the board holds the grid
    worker's report (its incident comes from an operator action, not a sensor step), RED first; the page's map
    keeps the city's basemap (the demo's own API once dropped it)."""
    import re
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "demo", "--duration", "6", "--out", str(tmp_path), "--no-hold",
         "-c", str(ROOT / "config" / "gridwatch.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        page = re.search(r"(http://\S+)/ui/#token=(\S+)", first)
        assert page, first
        req = urllib.request.Request(
            f"{page.group(1)}/api/basemap", headers={"Authorization": f"Bearer {page.group(2)}"}
        )
        with urllib.request.urlopen(req, timeout=10) as res:
            basemap = orjson.loads(res.read())
        assert len(basemap["features"]) > 0, "the demo's map keeps its basemap"
        drawn = basemap_on_the_page(f"{page.group(1)}/ui/#token={page.group(2)}")
        assert drawn is None or drawn > 0, "the page draws the basemap"
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    out = first + rest
    for phase in ("Phase 1 — the storm", "Phase 2 — now, live", "cameras cam-1 (visible), ir-1 (thermal) at S05",
                  "grid worker grid-worker-4 reports at S07", "resident resident-17 reports", "Phase 3"):  # fmt: skip
        assert phase in out, (phase, out[-3000:])
    assert re.search(r"RED\S* landslide at S02 \((raised|fired)", out), out[-3000:]
    assert re.search(r"landslide at S07 \(reported\)", out), out[-3000:]
    events = [orjson.loads(line) for line in (tmp_path / "incidents.jsonl").read_bytes().splitlines()]
    logged = len({e["incident_id"] for e in events})
    assert f" {logged} incidents ({len(events)} events)" in out, (
        f"the summary counts the log's ({logged}, {len(events)})"
    )
    # the final board: RED first, the grid worker's report on it
    board = out[out.index("gridwatch incidents") :]
    levels = re.findall(r"│ (BLUE|YELLOW|ORANGE|RED)\s", board)
    order = ["RED", "ORANGE", "YELLOW", "BLUE"]
    assert levels and levels == sorted(levels, key=order.index), levels
    assert "landslide (reported)" in board


def basemap_on_the_page(url: str) -> int | None:
    """The basemap areas the operator page draws (Chromium; a screenshot in test-artifacts/), or None without a
    browser here."""
    import shutil
    from pathlib import Path

    chromium = os.environ.get("GRIDWATCH_CHROMIUM", "/usr/bin/chromium")
    if not (Path(chromium).exists() or shutil.which(chromium)):
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    artifacts = Path(os.environ.get("GRIDWATCH_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url)
            page.wait_for_selector("#map .marker", timeout=15_000)
            page.screenshot(path=str(artifacts / "demo-page.png"))
            return page.locator("#map .basemap path.area").count()
        finally:
            browser.close()
