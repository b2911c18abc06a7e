"""As a user would: `gridwatch run` over Mosquitto, the scenario published by `gridwatch replay`, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import orjson
import pytest
import yaml

from engine.dispatch.dispatcher import DISPATCH_ACTIONS
from engine.ingest.embedded_broker import free_port
from engine.ingest.replay_file import write_rows
from tests.conftest import ROOT, direct_events, wait_for

pytestmark = pytest.mark.e2e

GRIDWATCH = [sys.executable, "-m", "engine.cli"]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_demo_scenario_through_gridwatch_run(mosquitto, tmp_path, storm_rows):
    cfg = yaml.safe_load(
        (ROOT / "config" / "gridwatch.yaml").read_text().replace("${GRIDWATCH_MQTT_URL:-embedded}", "x")
    )
    api_port = free_port()
    log = tmp_path / "incidents.jsonl"
    cfg["mqtt"].update(url=mosquitto.url, client_id="gridwatch-e2e")
    cfg["api"] = {"enabled": True, "host": "127.0.0.1", "port": api_port}
    cfg["sinks"] = [{"type": "log", "path": str(log)}]
    cfg["inhibit"] = []  # every event reaches the log, to compare with the core's own
    cfg["sites_file"] = str(ROOT / "config" / "sites" / "demo-sites.csv")
    cfg["devices_file"] = str(ROOT / "config" / "sites" / "demo-devices.csv")
    config = tmp_path / "gridwatch.yaml"
    config.write_text(yaml.safe_dump(cfg))
    replay_file = tmp_path / "storm.csv"
    write_rows(replay_file, storm_rows)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    engine = subprocess.Popen(
        [*GRIDWATCH, "run", "-c", str(config)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert wait_for(lambda: healthy(f"http://127.0.0.1:{api_port}/healthz"), 30), "engine did not become healthy"
        pub = subprocess.run(
            [*GRIDWATCH, "replay", str(replay_file), "-c", str(config)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert pub.returncode == 0, pub.stderr
        expected = direct_events(storm_rows)
        assert wait_for(lambda: log.exists() and len(log.read_bytes().splitlines()) >= len(expected), 60)

        def metrics() -> str:
            return urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=5).read().decode()

        # The last events can come before the last readings are in: wait for every reading to be counted.
        want = f"gridwatch_readings_total {float(len(storm_rows))}"
        assert wait_for(lambda: want in metrics(), 30), [x for x in metrics().splitlines() if "readings_total" in x]
    finally:
        engine.send_signal(signal.SIGTERM)
        out, _ = engine.communicate(timeout=30)
    assert engine.returncode == 0, out.decode()[-2000:]
    got = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    got = [e for e in got if e["action"] not in DISPATCH_ACTIONS]  # escalations and reminders come on top
    assert [(e["incident_id"], e["level"], e["state"]) for e in got] == [
        (e["incident_id"], e["level"], e["state"]) for e in expected
    ]
    landslide = [e["level"] for e in got if e["hazard"] == "landslide" and e["action"] in ("fired", "raised")]
    assert landslide == ["blue", "yellow", "orange", "red"]


def test_sighup_and_gridwatch_reload_apply_a_new_config_and_refuse_a_bad_one(tmp_path):
    api_port = free_port()
    cfg = yaml.safe_load(
        (ROOT / "config" / "gridwatch.yaml").read_text().replace("${GRIDWATCH_MQTT_URL:-embedded}", "embedded")
    )
    cfg["mqtt"]["embedded_port"] = 0
    tokens = [{"name": "ops", "token": "${OPS_TOKEN}", "role": "operator"}]
    cfg["api"] = {"enabled": True, "host": "127.0.0.1", "port": api_port, "tokens": tokens}
    cfg["sinks"] = [{"type": "log", "path": str(tmp_path / "incidents.jsonl")}]
    cfg["sites_file"] = str(ROOT / "config" / "sites" / "demo-sites.csv")
    cfg["devices_file"] = str(ROOT / "config" / "sites" / "demo-devices.csv")
    config = tmp_path / "gridwatch.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPS_TOKEN": "ops-token-from-the-environment"}
    engine = subprocess.Popen(
        [*GRIDWATCH, "run", "-c", str(config)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    reload_cli = [*GRIDWATCH, "reload", "--url", f"http://127.0.0.1:{api_port}"]  # the token: GRIDWATCH_TOKEN
    env["GRIDWATCH_TOKEN"] = "ops-token-from-the-environment"
    try:
        assert wait_for(lambda: healthy(f"http://127.0.0.1:{api_port}/healthz"), 30), "engine did not become healthy"
        # 1. SIGHUP after moving a threshold: applied, the detector keeps its state.
        cfg["detectors"][3]["angle_min_velocity_per_day"] = 3
        config.write_text(yaml.safe_dump(cfg))
        engine.send_signal(signal.SIGHUP)

        def reloads(outcome: str) -> float:
            text = urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=5).read().decode()
            line = f'gridwatch_config_reloads_total{{outcome="{outcome}"}} '
            return float(next((x[len(line) :] for x in text.splitlines() if x.startswith(line)), "0"))

        assert wait_for(lambda: reloads("ok") == 1.0, 15)
        # 2. gridwatch reload after changing a state layout: applied, that detector starts afresh.
        cfg["detectors"][4]["points"] = 200
        config.write_text(yaml.safe_dump(cfg))
        res = subprocess.run(reload_cli, capture_output=True, text=True, timeout=60, check=False, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "detectors[gnss-velocity].points: 160 -> 200" in res.stdout + res.stderr
        # 3. A bad config is refused with its file and field; the engine keeps running on the last good one.
        cfg["detectors"][1]["levels"] = {"blue": 3.0, "yellow": 1.0}
        config.write_text(yaml.safe_dump(cfg))
        res = subprocess.run(reload_cli, capture_output=True, text=True, timeout=60, check=False, env=env)
        assert res.returncode == 2
        said = res.stdout + res.stderr
        assert "gridwatch.yaml" in said and "levels" in said
        assert reloads("refused") == 1.0
        assert healthy(f"http://127.0.0.1:{api_port}/healthz")
        # 4. Nobody reloads without an operator's token.
        anonymous = {k: v for k, v in env.items() if k != "GRIDWATCH_TOKEN"}
        res = subprocess.run(reload_cli, capture_output=True, text=True, timeout=60, check=False, env=anonymous)
        assert res.returncode == 2 and "401" in res.stdout + res.stderr
        assert reloads("ok") + reloads("refused") == 3.0
    finally:
        engine.send_signal(signal.SIGTERM)
        out, _ = engine.communicate(timeout=30)
    log = " ".join(out.decode().split())  # rich wraps long log lines
    assert engine.returncode == 0, log[-2000:]
    compact = "".join(log.split())  # rich breaks long words too
    assert "config reloaded from" in log, log[-3000:]
    assert "detectors[crack-velocity].angle_min_velocity_per_day:2.0->3.0" in compact, log[-3000:]
    assert "reload refused, keeping the running config" in log
    assert "state layout changed start afresh: gnss-velocity" in log


def test_bad_config_stops_at_start_up_naming_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mqtt:\n  url: embedded\ndetectors:\n  - type: threshold\n    rules:\n      - metric: rain_mmm\n"
        "        levels: {blue: 1}\n"
    )
    res = subprocess.run([*GRIDWATCH, "run", "-c", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert f"{bad}:6: detectors[0].rules[0]" in res.stderr
    assert "unknown metric 'rain_mmm'" in res.stderr
