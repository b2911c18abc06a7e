"""The grid reports API as a stranger would use it: a reporter files under its own name, sees only its own
report, is rate-limited, and a photo is kept as the image it is, never as what its header claims."""

from __future__ import annotations

import base64

import cv2
import numpy as np
from fastapi.testclient import TestClient

from engine.api.auth import TokenAuth
from engine.api.reports import reports_router
from engine.api.server import create_app
from engine.config.models import ApiToken, EngineConfig
from engine.dispatch.actions import OperatorAction, apply_action
from engine.dispatch.dispatcher import Dispatcher
from engine.incidents.reports import ReportQuota
from engine.incidents.tracker import IncidentTracker
from engine.store.store import Notification, Store

NOW = 1_765_000_000.0
OPS, RES = "o" * 24, "r" * 24


def client(tmp_path, **reports: object) -> tuple[TestClient, Store]:
    cfg = EngineConfig.model_validate(
        {"sites": [dict(id="S1", lat=29.5, lon=106.5, grid="g1", town="t1", district="d1")], "reports": reports}
    )
    store = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    store.migrate()
    desk = Dispatcher(cfg, IncidentTracker(cfg.incidents), store)

    async def act(action: OperatorAction) -> list[Notification]:
        return apply_action(desk, action, NOW)

    tokens = [ApiToken(name="ops", token=OPS, role="operator"), ApiToken(name="resident-7", token=RES, role="reporter")]
    photos = tmp_path / "photos"
    auth = TokenAuth(tokens)
    router = reports_router(store, act, auth, lambda: cfg, lambda: NOW, photos, ReportQuota(cfg.reports, photos))
    return TestClient(create_app(lambda: {"ok": True}, routers=(router,), auth=auth)), store


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(h: int = 16, w: int = 16) -> bytes:
    _ok, buf = cv2.imencode(".png", np.full((h, w, 3), 120, np.uint8))
    return bytes(buf.tobytes())


def test_a_reporter_sees_its_own_report_only_and_files_under_its_token_s_name(tmp_path):
    c, store = client(tmp_path)
    res, op = {"Authorization": f"Bearer {RES}"}, {"Authorization": f"Bearer {OPS}"}
    first = c.post("/api/reports", json={"category": "crack", "site": "S1", "text": "my phone 13800000000"}, headers=op)
    assert first.status_code == 201 and first.json()["events"], "an operator sees what the report caused"
    mine = c.post("/api/reports", json={"category": "crack", "site": "S1", "text": "cracks"}, headers=res)
    assert mine.status_code == 201
    assert mine.json()["events"] == [], "the incident's events carry other people's reports"
    assert "13800000000" not in mine.text
    as_other = c.post("/api/reports", json={"category": "crack", "site": "S1", "reporter": "mayor"}, headers=res)
    assert as_other.status_code == 422 and "token's name" in as_other.text
    assert c.get("/api/reports", headers=res).status_code == 403, "a reporter cannot list the reports"
    reporters = {r["evidence"]["reporter"] for r in store.grid_reports()}
    assert reporters == {"ops", "resident-7"}


def test_reports_are_rate_limited_per_reporter_and_per_site(tmp_path):
    c, _ = client(tmp_path, max_per_reporter_per_hour=3, max_per_site_per_hour=5)
    res, op = {"Authorization": f"Bearer {RES}"}, {"Authorization": f"Bearer {OPS}"}
    codes = [c.post("/api/reports", json={"category": "crack", "site": "S1", "text": f"{i}"}, headers=res).status_code
             for i in range(4)]  # fmt: skip
    assert codes == [201, 201, 201, 429]
    more = [c.post("/api/reports", json={"category": "crack", "site": "S1", "text": f"{i}"}, headers=op).status_code
            for i in range(3)]  # fmt: skip
    assert more == [201, 201, 429], "the site's limit counts everyone"


def test_a_photo_is_kept_as_the_image_it_is_and_within_its_quota(tmp_path):
    c, _ = client(tmp_path, photo_quota_mb=0.002)
    op = {"Authorization": f"Bearer {OPS}"}
    polyglot = png() + b"<html><script>alert(1)</script></html>"
    res = c.post("/api/reports", json={"category": "crack", "site": "S1", "photo": b64(polyglot)}, headers=op)
    assert res.status_code == 201
    (kept,) = (tmp_path / "photos").iterdir()
    data = kept.read_bytes()
    assert kept.suffix == ".jpg" and data[:2] == b"\xff\xd8" and b"<html>" not in data, "re-encoded, nothing appended"
    fake = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (60000).to_bytes(4, "big") * 2 + b"<html>" * 10
    res = c.post("/api/reports", json={"category": "crack", "site": "S1", "photo": b64(fake)}, headers=op)
    assert res.status_code == 422 and "not an image" in res.text, "a 3.6-gigapixel header is no photo"
    big = np.random.default_rng(2).integers(0, 255, (64, 64, 3), np.uint8)
    _ok, buf = cv2.imencode(".png", big)
    res = c.post("/api/reports", json={"category": "crack", "site": "S1", "photo": b64(buf.tobytes())}, headers=op)
    assert res.status_code == 201 and "photo storage is full" in res.json()["note"], "filed, without the photo"
    assert len(list((tmp_path / "photos").iterdir())) == 1


def test_a_photo_beyond_the_pixel_bound_or_a_report_beyond_its_size_is_refused_before_it_costs_much(tmp_path):
    import orjson
    import pytest

    from engine.incidents.reports import ReportError, mqtt_report
    from engine.ingest.topics import Topic

    c, _ = client(tmp_path, max_photo_pixels=1_000_000)
    op = {"Authorization": f"Bearer {OPS}"}
    res = c.post("/api/reports", json={"category": "crack", "site": "S1", "photo": b64(png(1200, 1000))}, headers=op)
    assert res.status_code == 422 and "too_many_pixels" in res.text, "6000x6000 PNGs took a second each to decode"
    cfg = EngineConfig.model_validate(
        {"sites": [dict(id="S1", lat=29.5, lon=106.5, grid="g1", town="t1", district="d1")],
         "reports": {"max_photo_bytes": 1000}}
    )  # fmt: skip
    with pytest.raises(ReportError) as refused:
        mqtt_report(Topic("reports", "S1", "r"), orjson.dumps({"category": "crack", "text": "x" * 70_000}), cfg, NOW,
                    None)  # fmt: skip
    assert refused.value.reason == "too_large"


def test_what_cannot_be_echoed_or_stored_gets_a_4xx_never_a_500(tmp_path):
    whole, _ = client(tmp_path)
    op = {"Authorization": f"Bearer {OPS}", "Content-Type": "application/json"}
    nan = whole.post("/api/reports", content=b'{"category": "crack", "lat": NaN, "lon": 1.0}', headers=op)
    assert nan.status_code == 422, nan.text
    lone = b'{"category": "crack", "site": "S1", "text": "\\udc00"}'
    assert whole.post("/api/reports", content=lone, headers=op).status_code == 422, "its 422 echoed it: a 500"
    rtl = whole.post("/api/reports", json={"category": "crack", "site": "S1", "text": "evil \u202efdp.exe"}, headers=op)
    assert rtl.status_code == 422, "a right-to-left override makes text read backwards on the page"
    assert whole.get("/api/reports?limit=1&x=%00", headers=op).status_code == 400, "a NUL reached PostgreSQL"
