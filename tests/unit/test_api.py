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
