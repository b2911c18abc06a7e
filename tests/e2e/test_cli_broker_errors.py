"""Commands that publish to a broker say so in one line and exit non-zero when it cannot be reached."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.ingest.embedded_broker import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def gridwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


@pytest.mark.parametrize(
    "command",
    [
        ["simulate", "--scenario", "storm-over-slope"],
        ["camera", "fire", "--site", "S05", "--frames", "5", "--no-realtime"],
        ["camera", "thermal-fire", "--site", "S05", "--camera", "ir-1", "--frames", "5", "--no-realtime"],
    ],
    ids=["simulate", "camera", "thermal-camera"],
)
def test_a_dead_broker_is_one_line_and_a_failure(command: list[str]) -> None:
    dead = f"mqtt://127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens there
    res = gridwatch(*command, "--broker", dead)
    one_line_failure(res, dead)


def test_replay_into_a_dead_broker_is_one_line_and_a_failure(tmp_path) -> None:
    feed = tmp_path / "feed.csv"
    made = gridwatch("simulate", "--scenario", "sensor-faults", "--out", str(feed), "--start", "1700000000")
    assert made.returncode == 0, made.stderr[-2000:]
    dead = f"mqtt://127.0.0.1:{free_port('127.0.0.1')}"
    one_line_failure(gridwatch("replay", str(feed), "--broker", dead), dead)


def one_line_failure(res: subprocess.CompletedProcess[str], dead: str) -> None:
    said = (res.stdout + res.stderr).strip()
    assert res.returncode == 1, said
    assert "Traceback" not in said, said
    assert "published" not in said.replace("nothing was published", ""), said
    lines = [line for line in said.splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot reach the MQTT broker {dead}" in " ".join(lines), said


def test_a_broker_that_is_no_url_is_a_usage_error() -> None:
    res = gridwatch("camera", "fire", "--frames", "2", "--broker", "127.0.0.1:1883")
    assert res.returncode == 2 and "not an MQTT URL" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
