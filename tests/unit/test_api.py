"""HTTP: /healthz reflects the runner, /metrics serves the Prometheus registry."""

from __future__ import annotations

from fastapi.testclient import TestClient

from engine import metrics
from engine.api.server import create_app


def test_healthz_and_metrics():
    state = {"ok": True, "mqtt_connected": True}
    client = TestClient(create_app(lambda: dict(state)))
    assert client.get("/healthz").status_code == 200
    state["ok"] = False
    assert client.get("/healthz").status_code == 503
    metrics.DEADLETTERS.labels("malformed_json").inc()
    body = client.get("/metrics").text
    assert 'gridwatch_deadletter_messages_total{reason="malformed_json"}' in body
    assert "gridwatch_end_to_end_latency_seconds_bucket" in body


def test_a_worker_answers_for_a_site_another_worker_holds_with_that_worker_s_answer(tmp_path):
    """A scale-out worker's page asks any worker; a site's chart, latest frame and snapshots come from the
    worker whose partition holds the site (Readings.of_site gives its URL), passed back as it answered."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from fastapi import FastAPI

    from engine.api.auth import TokenAuth
    from engine.api.live import EventHub
    from engine.api.operator import FORWARDED, Readings, operator_router
    from engine.config.models import ApiToken, EngineConfig
    from engine.core.devices import DeviceIndex
    from engine.core.history import ReadingHistory
    from engine.store.store import Store

    seen: list[tuple[str, dict[str, str]]] = []

    class Owner(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, dict(self.headers)))
            if self.path.startswith("/api/cameras/"):
                self.send_response(200)
                body, kind = b"\x89PNG owner's frame", "image/png"
                self.send_header("X-Gridwatch-Frame-Ts", "1000.0")
                self.send_header("X-Not-Passed", "1")
            else:
                self.send_response(404)
                body, kind = b'{"detail": "no readings from S2/nope"}', "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Owner)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    owner = f"http://127.0.0.1:{server.server_port}"
    holders = {"S1": (DeviceIndex(), ReadingHistory(0)), "S2": owner, "S3": None}
    store = Store("sqlite://")
    store.migrate()
    token = "v" * 20
    readings = Readings(holders.__getitem__, lambda: (None, None))
    auth = TokenAuth([ApiToken(name="v", token=token)])
    frame = (5.0, b"\xff\xd8 local frame", "image/jpeg")
    app = FastAPI()
    app.include_router(operator_router(store, EngineConfig, readings, EventHub(), auth, tmp_path, lambda s, c: frame))
    client = TestClient(app)
    bearer = {"Authorization": "Bearer " + token}
    try:
        here = client.get(f"/api/cameras/S1/cam/latest?token={token}")
        assert here.status_code == 200 and here.content == b"\xff\xd8 local frame" and not seen
        there = client.get(f"/api/cameras/S2/cam/latest?token={token}")
        assert there.status_code == 200 and there.content == b"\x89PNG owner's frame"
        assert there.headers["content-type"] == "image/png" and there.headers["x-gridwatch-frame-ts"] == "1000.0"
        assert "x-not-passed" not in there.headers
        path, headers = seen[-1]
        assert path == f"/api/cameras/S2/cam/latest?token={token}" and headers[FORWARDED] == "1"
        assert "Authorization" not in headers  # the token went as the asker gave it
        refused = client.get("/api/sites/S2/devices/nope/chart?metric=rain_mm", headers=bearer)
        assert refused.status_code == 404 and refused.json() == {"detail": "no readings from S2/nope"}
        assert seen[-1][0] == "/api/sites/S2/devices/nope/chart?metric=rain_mm"
        assert seen[-1][1]["Authorization"] == "Bearer " + token
        assert client.get(f"/api/snapshots/S2/cam/1000.jpg?token={token}").status_code == 404
        assert seen[-1][0] == f"/api/snapshots/S2/cam/1000.jpg?token={token}"
        asked = len(seen)
        # Never passed on twice (two workers that each think the other holds it), nor to nobody.
        again = client.get("/api/sites/S2/devices/d/chart", headers={**bearer, FORWARDED: "1"})
        nobody = client.get("/api/sites/S3/devices/d/chart", headers=bearer)
        for res in (again, nobody):
            assert res.status_code == 503 and res.headers["retry-after"] == "2", res.text
        assert len(seen) == asked
        assert client.get("/api/sites/S2/devices/d/chart").status_code == 401 and len(seen) == asked
    finally:
        server.shutdown()
        server.server_close()
    gone = client.get("/api/sites/S2/devices/d/chart", headers=bearer)
    assert gone.status_code == 503 and owner in gone.json()["detail"]
