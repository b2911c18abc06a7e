"""HTTP: /healthz reflects the runner, /metrics serves the Prometheus registry."""

from __future__ import annotations

from typing import Any

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
    worker whose partition holds the site (Readings.of_site gives its URL): asked with a signature made with
    the workers' shared secret, never the operator's token, and passed back only as what was asked for."""
    import struct
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from fastapi import FastAPI

    from engine.api.auth import TokenAuth
    from engine.api.live import EventHub
    from engine.api.operator import FORWARDED, Readings, operator_router
    from engine.api.peers import PEER_HEADER, verify
    from engine.config.models import ApiToken, EngineConfig
    from engine.core.devices import DeviceIndex
    from engine.core.history import ReadingHistory
    from engine.store.store import Store

    secret = "shared-by-the-workers-" + "s" * 10
    seen: list[tuple[str, dict[str, str]]] = []
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + struct.pack(">II", 64, 48) + b"\x08\x02\x00\x00\x00"
    rogue = {"on": False}

    class Owner(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, dict(self.headers)))
            if rogue["on"]:  # a member that advertises itself and answers with a page of its own
                self.send_response(200)
                body, kind = b"<html><script>steal()</script></html>", "image/png"
            elif self.path.startswith("/api/cameras/"):
                self.send_response(200)
                body, kind = png, "image/png"
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
    auth = TokenAuth([ApiToken(name="v", token=token)], peer_secret=secret)
    frame = (5.0, b"\xff\xd8 local frame", "image/jpeg")
    cfg = {"api": {"peer_secret": secret}}

    def router(config: dict[str, Any]) -> TestClient:
        app = FastAPI()
        app.include_router(
            operator_router(store, lambda: EngineConfig.model_validate(config), readings, EventHub(), auth, tmp_path,
                            lambda s, c: frame)
        )  # fmt: skip
        return TestClient(app)

    client = router(cfg)
    bearer = {"Authorization": "Bearer " + token}
    try:
        here = client.get(f"/api/cameras/S1/cam/latest?token={token}")
        assert here.status_code == 200 and here.content == b"\xff\xd8 local frame" and not seen
        there = client.get(f"/api/cameras/S2/cam/latest?token={token}")
        assert there.status_code == 200 and there.content == png
        assert there.headers["content-type"] == "image/png" and there.headers["x-gridwatch-frame-ts"] == "1000.0"
        assert "x-not-passed" not in there.headers
        path, headers = seen[-1]
        assert path == "/api/cameras/S2/cam/latest" and headers[FORWARDED] == "1", "the viewer's ?token= stays here"
        assert "Authorization" not in headers and verify(secret, "/api/cameras/S2/cam/latest", headers[PEER_HEADER])
        refused = client.get("/api/sites/S2/devices/nope/chart?metric=rain_mm", headers=bearer)
        assert refused.status_code == 404 and refused.json() == {"detail": "no readings from S2/nope"}
        assert seen[-1][0] == "/api/sites/S2/devices/nope/chart?metric=rain_mm"
        assert "Authorization" not in seen[-1][1], "the operator's token never leaves this worker"
        assert client.get(f"/api/snapshots/S2/cam/1000.jpg?token={token}").status_code == 404
        assert seen[-1][0] == "/api/snapshots/S2/cam/1000.jpg"
        asked = len(seen)
        # Never passed on twice (two workers that each think the other holds it), nor to nobody.
        again = client.get("/api/sites/S2/devices/d/chart", headers={**bearer, FORWARDED: "1"})
        nobody = client.get("/api/sites/S3/devices/d/chart", headers=bearer)
        for res in (again, nobody):
            assert res.status_code == 503 and res.headers["retry-after"] == "2", res.text
        assert len(seen) == asked
        assert client.get("/api/sites/S2/devices/d/chart").status_code == 401 and len(seen) == asked
        # The owner side: a signed request reads as a viewer; a forged or replayed-elsewhere one does not.
        signed = {PEER_HEADER: seen[-1][1][PEER_HEADER], FORWARDED: "1"}
        assert client.get("/api/cameras/S1/cam/latest", headers=signed).status_code == 401, "signed another path"
        # A rogue member's answer is not passed back as the page; a host off api.peer_hosts is not asked.
        rogue["on"] = True
        assert client.get(f"/api/cameras/S2/cam/latest?token={token}").status_code == 502
        listed = router({"api": {"peer_secret": secret, "peer_hosts": ["worker-1"]}})
        assert listed.get(f"/api/cameras/S2/cam/latest?token={token}").status_code == 503 and len(seen) == asked + 1
        unset = router({})
        assert unset.get(f"/api/cameras/S2/cam/latest?token={token}").status_code == 404, "no secret: no forwarding"
    finally:
        server.shutdown()
        server.server_close()
    rogue["on"] = False
    gone = client.get("/api/sites/S2/devices/d/chart", headers=bearer)
    assert gone.status_code == 503 and owner in gone.json()["detail"]


def test_a_large_body_is_refused_before_it_is_read_and_a_write_without_a_token_from_its_headers():
    """A 400 MB POST with no token was read and parsed before the 401 (about 1.2 GB of memory a request)."""
    from fastapi import APIRouter

    from engine.api.auth import TokenAuth
    from engine.config.models import ApiToken

    received: list[int] = []

    def health() -> dict[str, bool]:
        return {"ok": True}

    auth = TokenAuth([ApiToken(name="ops", token="operator-token-0123456789", role="operator")])

    router = APIRouter()

    @router.post("/echo", dependencies=[auth.require("operator")])
    async def echo(body: dict[str, object]) -> dict[str, object]:  # reached only within the limit
        received.append(1)
        return body

    client = TestClient(create_app(health, routers=(router,), auth=auth, max_body_bytes=100_000))
    assert client.post(
        "/echo", json={"a": 1}, headers={"Authorization": "Bearer operator-token-0123456789"}
    ).json() == {"a": 1}
    received.clear()
    huge = {"content-length": str(400_000_000)}
    res = client.post("/echo", headers=huge, content=b"x" * 10)
    assert res.status_code == 401 and "token is needed" in res.text
    op = {"Authorization": "Bearer operator-token-0123456789"}
    res = client.post("/echo", headers={**op, **huge}, content=b"x" * 10)
    assert res.status_code == 413 and "api.max_body_bytes" in res.text

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(50):
            yield b"x" * 10_000

    res = client.post("/echo", headers=op, content=chunks())
    assert res.status_code == 413
    assert received == []
    page = client.get("/livez")
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
