"""A simulated camera over Mosquitto → a fire incident with its snapshot and region; look-alikes raise none.

`gridwatch camera` (the simulator's command line) publishes a synthetic fire at S01 (a visible camera
and a thermal one), and a sunset, a red car and car headlights at other sites, to a running engine.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from engine.config.models import ApiConfig, CamerasConfig, MqttConfig, StoreConfig
from engine.ingest.embedded_broker import free_port
from engine.store.store import Store
from tests.conftest import ROOT, RunnerThread, default_config, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "camera-test-token-0123456789"
FEEDS = [("fire", "S01", "cam-1"), ("thermal-fire", "S01", "ir-1"), ("sunset", "S05", "cam-5"),
         ("red-vehicle", "S06", "cam-6"), ("headlights", "S07", "cam-7")]  # fmt: skip


def test_simulated_fire_camera_raises_a_fire_incident_with_snapshot_and_region(mosquitto, tmp_path):
    api_port = free_port("127.0.0.1")
    cameras = CamerasConfig.model_validate(
        {
            "devices": [
                {"site": site, "id": cam, "kind": "thermal" if scene.startswith("thermal") else "visible",
                 "min_interval_s": 0.5}
                for scene, site, cam in FEEDS
            ],
            "queue_frames": 64,  # the feeds are published as fast as the broker takes them
            "detectors": [
                {"type": "flame_color_motion", "id": "flames"},
                {"type": "smoke_fire_onnx", "id": "smoke-fire-model"},
                {"type": "thermal_hotspot", "id": "thermal"},
            ],
        }
    )  # fmt: skip
    cfg = default_config(
        mqtt=MqttConfig(url=mosquitto.url, client_id=f"engine-cam-{tmp_path.name}"),
        data_dir=str(tmp_path),
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'gridwatch.db'}"),
        api=ApiConfig(port=api_port, tokens=[{"name": "ops", "token": TOKEN, "role": "operator"}]),
        cameras=cameras,
        sinks=[],
    )
    engine = RunnerThread(cfg)
    api = f"http://127.0.0.1:{api_port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "camera", scene, "--site", site, "--camera", cam, "--fps", "1",
                 "--frames", "30", "--seed", "3", "--broker", mosquitto.url, "--no-realtime"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            for scene, site, cam in FEEDS
        ]  # fmt: skip
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, out.decode()[-2000:]

        def fire_incident() -> dict | None:
            listed = httpx.get(f"{api}/api/incidents", params={"hazard": "fire"}, headers=auth).json()
            return next((i for i in listed if i["site"] == "S01"), None)

        assert wait_for(lambda: fire_incident() is not None, 60)

        def detectors() -> set[str]:
            inc = fire_incident()
            found = (
                httpx.get(f"{api}/api/incidents/{inc['incident_id']}", headers=auth).json()["findings"] if inc else []
            )
            return {f["detector"] for f in found}

        assert wait_for(lambda: detectors() >= {"flames", "thermal"}, 30), detectors()
    finally:
        engine.stop()
    store = Store(f"sqlite:///{tmp_path / 'gridwatch.db'}")
    fire = store.list_incidents(hazard="fire")
    assert {i["site"] for i in fire} == {"S01"}, "the sunset, the red car and the headlights raise nothing"
    detail = store.incident(fire[0]["incident_id"])
    assert detail is not None
    by_detector = {f["detector"]: f for f in detail["findings"]}
    flames = by_detector["flames"]["evidence"]
    x, y, w, h = flames["region"]
    assert x <= 300 / 640 <= x + w and y <= 190 / 360 <= y + h, "the region holds the simulated flames"
    assert flames["snapshot"].startswith("/api/snapshots/S01/cam-1/")
    snap = tmp_path / "snapshots" / "S01" / "cam-1" / flames["snapshot"].rsplit("/", 1)[1]
    assert snap.read_bytes()[:2] == b"\xff\xd8"
    assert by_detector["thermal"]["evidence"]["snapshot"].startswith("/api/snapshots/S01/ir-1/")


def test_snapshot_route_needs_a_token_and_refuses_paths(tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from engine.api.auth import TokenAuth
    from engine.api.live import EventHub
    from engine.api.operator import Readings, operator_router
    from engine.config.models import ApiToken, EngineConfig
    from engine.core.devices import DeviceIndex
    from engine.core.history import ReadingHistory

    (tmp_path / "S1" / "cam").mkdir(parents=True)
    (tmp_path / "S1" / "cam" / "1000.jpg").write_bytes(b"\xff\xd8jpeg")
    store = Store("sqlite://")
    store.migrate()
    app = FastAPI()
    tokens = [ApiToken(name="v", token="v" * 20)]
    app.include_router(
        operator_router(
            store,
            EngineConfig,
            Readings.kept(DeviceIndex(), ReadingHistory(0)),
            EventHub(),
            TokenAuth(tokens),
            tmp_path,
        )
    )
    client = TestClient(app)
    assert client.get("/api/snapshots/S1/cam/1000.jpg").status_code == 401
    assert client.get("/api/snapshots/S1/cam/1000.jpg", params={"token": "v" * 20}).content == b"\xff\xd8jpeg"
    assert client.get("/api/snapshots/S1/cam/..%2F..%2Fx.jpg", params={"token": "v" * 20}).status_code == 404
    assert client.get("/api/snapshots/S1/cam/1001.jpg", params={"token": "v" * 20}).status_code == 404
