"""The operator page's board data (/api/board), silence preview and the reporters' site list."""

from __future__ import annotations

import time
from typing import Any, cast

from fastapi import FastAPI
from fastapi.testclient import TestClient

from engine.api.auth import TokenAuth
from engine.api.live import EventHub
from engine.api.operator import Readings, operator_router
from engine.config.models import ApiToken, EngineConfig
from engine.core.devices import DeviceIndex
from engine.core.history import ReadingHistory
from engine.incidents.silences import Silence

VIEWER, REPORTER = "v" * 20, "r" * 20
SITES = [dict(id=f"S{k}", name=f"Slope {k}", lat=29.5, lon=106.5 + k / 100, grid="g", town="t", district="d")
         for k in (1, 2)]  # fmt: skip


def fusion(device: str, others: list[str], ts: float) -> dict[str, Any]:
    contributors = [{"detector": f"det-{d}", "device": d} for d in others]
    return {"detector": "fusion:smoke-and-heat", "device": device, "ts": ts, "level": "red", "score": 1.0,
            "evidence": {"confirmed": True, "contributors": contributors}}  # fmt: skip


class FakeStore:
    def __init__(self, incidents: list[dict[str, Any]], silences: list[Silence]) -> None:
        self.incidents, self.active = incidents, silences

    def open_incidents(self) -> list[dict[str, Any]]:
        return self.incidents

    def silences(self) -> list[Silence]:
        return self.active


def client(store: FakeStore) -> TestClient:
    cfg = EngineConfig.model_validate({
        "sites": SITES,
        "routing": [{"first": "grid", "ack_within_s": 600}],
        "inhibit": [{"source_hazard": "landslide", "source_min_level": "red", "target_hazard": "rainstorm",
                     "target_max_level": "orange"}],
    })  # fmt: skip
    auth = TokenAuth([ApiToken(name="v", token=VIEWER), ApiToken(name="r", token=REPORTER, role="reporter")])
    readings = Readings.kept(DeviceIndex(), ReadingHistory(0))
    app = FastAPI()
    app.include_router(operator_router(cast(Any, store), lambda: cfg, readings, EventHub(), auth))
    return TestClient(app)


def test_board_says_time_to_act_confirmation_and_muting() -> None:
    now = time.time()
    base = {"state": "firing", "opened_at": now - 3600, "escalation": {"tier": 0, "ack_due": now + 300,
            "acknowledged": False}}  # fmt: skip
    fire = {**base, "incident_id": "fire", "site": "S1", "hazard": "fire", "level": "red",
            "findings": [fusion("cam-1", ["cam-1", "ir-1"], now)]}  # fmt: skip
    lone = {**base, "incident_id": "lone", "site": "S2", "hazard": "fire", "level": "red",
            "findings": [fusion("cam-2", ["cam-2"], now)]}  # fmt: skip
    slide = {**base, "incident_id": "slide", "site": "S2", "hazard": "landslide", "level": "red", "findings": [
        {"detector": "ff", "device": "crack-1", "ts": now - 600, "level": "red", "score": 1.0,
         "evidence": {"predicted_failure_ts": now + 7200, "failure_ci95_ts": [now + 7000, now + 7500]}},
        {"detector": "ff", "device": "crack-1", "ts": now - 60, "level": "red", "score": 1.0,
         "evidence": {"predicted_failure_ts": now + 5400}}]}  # fmt: skip
    rain = {**base, "incident_id": "rain", "site": "S2", "hazard": "rainstorm", "level": "orange", "findings": []}
    silence = Silence(id="sil-1", site="S1", hazard="fire", starts_at=now - 10, ends_at=now + 3600)
    c = client(FakeStore([fire, lone, slide, rain], [silence]))
    assert c.get("/api/board").status_code == 401
    board = c.get("/api/board", headers={"Authorization": f"Bearer {VIEWER}"}).json()["incidents"]
    assert board["fire"]["confirmed"] == ["cam-1 (det-cam-1)", "ir-1 (det-ir-1)"]
    assert "confirmed" not in board["lone"], "one camera twice confirms nothing"
    assert board["fire"]["silenced_by"] == "sil-1" and "silenced_by" not in board["lone"]
    assert board["slide"]["forecast"]["failure_at"] == now + 5400, "the newest forecast"
    assert board["slide"]["ack_due"] == now + 300 and board["slide"]["next_tier"] == "town"
    assert board["slide"]["ack_within_s"] == 600
    assert board["rain"]["inhibited_by"] == "landslide red at S2"


def test_silence_preview_lists_what_a_silence_would_mute() -> None:
    now = time.time()
    incs = [{"incident_id": f"i{k}", "site": s, "hazard": h, "level": "red", "state": "firing", "opened_at": now,
             "findings": [{"device": d}]} for k, (s, h, d) in enumerate([("S1", "fire", "cam-1"),
                                                                         ("S2", "fire", "cam-2"),
                                                                         ("S2", "landslide", "crack-1")])]  # fmt: skip
    c = client(FakeStore(incs, []))
    auth = {"Authorization": f"Bearer {VIEWER}"}
    assert c.get("/api/silence-preview?hazard=fire").status_code == 401
    got = c.get("/api/silence-preview?hazard=fire&site=S*", headers=auth).json()
    assert [m["incident_id"] for m in got["matches"]] == ["i0", "i1"] and got["names_something"]
    got = c.get("/api/silence-preview?device=crack-*", headers=auth).json()
    assert [m["incident_id"] for m in got["matches"]] == ["i2"]
    assert c.get("/api/silence-preview?level=purple", headers=auth).status_code == 422


def test_a_reporter_lists_the_sites_by_name() -> None:
    c = client(FakeStore([], []))
    assert c.get("/api/report-sites").status_code == 401
    sites = c.get("/api/report-sites", headers={"Authorization": f"Bearer {REPORTER}"}).json()
    assert sites == [{"id": "S1", "name": "Slope 1", "town": "t", "grid": "g"},
                     {"id": "S2", "name": "Slope 2", "town": "t", "grid": "g"}]  # fmt: skip
    assert c.get("/api/sites", headers={"Authorization": f"Bearer {REPORTER}"}).status_code == 403
