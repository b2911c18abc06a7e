"""The incident layer end to end, on SQLite and on PostgreSQL.

A simulated storm over a rain-driven creeping slope (scenario ``storm-surge``) is published over
Mosquitto to a running engine. One landslide incident must rise to red, be routed to the site's town
centre, escalate to the district when nobody acknowledges it, be acknowledged through the HTTP API, and
resolve after the rain, across a restart of the engine; a webhook receiver that is down for the first
part of the run must still get every event of the incident exactly once, in order, signed.
"""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import orjson
import pytest

from engine.config.models import ApiConfig, MqttConfig, RouteRule, StoreConfig, WebhookSinkConfig
from engine.ingest.embedded_broker import free_port
from engine.store.store import Store
from simulators.publish import messages
from simulators.scenario import load_scenario
from tests.conftest import SECRET, Receiver, RunnerThread, default_config, publisher, wait_for

pytestmark = pytest.mark.e2e

OPERATOR = "op-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
BASE = 1_700_000_000.0


def test_landslide_incident_escalates_is_acknowledged_and_resolves(mosquitto, tmp_path, store_url):
    rows = load_scenario("storm-surge").readings(base_ts=BASE)
    receiver = Receiver()
    api_port = free_port("127.0.0.1")
    cfg = default_config(
        mqtt=MqttConfig(url=mosquitto.url, client_id=f"engine-lifecycle-{tmp_path.name}"),
        data_dir=str(tmp_path),
        store=StoreConfig(url=store_url),
        api=ApiConfig(
            port=api_port,
            tokens=[
                {"name": "duty-officer", "token": OPERATOR, "role": "operator"},
                {"name": "wall-screen", "token": VIEWER, "role": "viewer"},
            ],
        ),
        routing=[
            RouteRule(hazard="*", first="grid", ack_within_s=3600, repeat_s=7200),
            RouteRule(hazard="landslide", first="town", ack_within_s=1800, repeat_s=3600),
        ],
        sinks=[
            WebhookSinkConfig(
                url=f"http://127.0.0.1:{receiver.port}/hook", secret=SECRET, timeout_s=2, backoff_s=0.2, backoff_max_s=1
            )
        ],
    )
    api = f"http://127.0.0.1:{api_port}/api"
    # Phase 1: the storm and the surge, up to hour 32, while the webhook receiver is down.
    split = BASE + 32 * 3600
    first = [r for r in rows if r[0] <= split]
    rest = [r for r in rows if r[0] > split]
    engine = RunnerThread(cfg)
    pub = publisher(mosquitto.url)
    try:
        for _ts, topic, payload in messages(first, "gw"):
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        # processed and stored (the summary counts a batch after its incidents are written; the
        # pipeline's count moves when the batch enters detection)
        assert wait_for(lambda: engine.runner.summary.readings >= len(first), 60)
        backlog = Store(store_url).outbox_backlog
        assert wait_for(lambda: backlog().get("webhook", 0) >= 3, 10), "events wait in the outbox while it is down"
        receiver.start()
        assert wait_for(lambda: any(e["action"] == "escalated" for e in receiver.landslide()), 30), [
            (e["hazard"], e["action"], e["level"], e.get("receivers"), (e["updated_at"] - BASE) / 3600)
            for _, e in receiver.got
        ]

        listed = httpx.get(f"{api}/incidents", params={"hazard": "landslide"}, headers=auth(VIEWER))
        assert listed.status_code == 200, listed.text
        (incident,) = listed.json()
        iid = incident["incident_id"]
        assert incident["level"] == "red" and incident["state"] == "firing"
        assert httpx.post(f"{api}/incidents/{iid}/ack", json={}, headers=auth(VIEWER)).status_code == 403
        assert httpx.post(f"{api}/incidents/{iid}/ack", json={}).status_code == 401
        ack = httpx.post(f"{api}/incidents/{iid}/ack", json={"comment": "team on the way"}, headers=auth(OPERATOR))
        assert ack.status_code == 200, ack.text
        assert ack.json()["events"][0]["state"] == "acknowledged"
        # One-key dispatch from the CLI: the incident and its plan to every receiver of the plan.
        cli = [sys.executable, "-m", "engine.cli", "incidents"]
        where = ["--url", f"http://127.0.0.1:{api_port}", "--token", OPERATOR]
        out = subprocess.run([*cli, "dispatch", iid, *where], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"{iid} dispatched: red acknowledged -> grid:grid-1, town:town-north-1" in out.stdout
        listed_cli = subprocess.run(
            [*cli, "list", "--state", "open", "--json", *where], capture_output=True, text=True, timeout=60, check=False
        )
        assert iid in {r["incident_id"] for r in orjson.loads(listed_cli.stdout)}
        shown = subprocess.run([*cli, "show", iid, *where], capture_output=True, text=True, timeout=60, check=False)
        assert re.search(r"opened \d{4}-\d\d-\d\d \d\d:\d\d UTC\+8", shown.stdout), shown.stdout  # the city's zone
        denied = subprocess.run([*cli, "resolve", iid, "--url", where[1], "--token", VIEWER], capture_output=True,
                                text=True, timeout=60, check=False)  # fmt: skip
        assert denied.returncode == 2 and "403" in denied.stdout

        # The engine restarts between the phases: it takes the open incident up from the store.
        engine.stop()
        engine = RunnerThread(cfg)
        resumed = engine.runner.pipeline.tracker.get(iid)
        assert resumed is not None and (resumed.state, resumed.level.label) == ("acknowledged", "red")

        # Phase 2: the rain is over, the slope slows down, the incident resolves.
        for _ts, topic, payload in messages(rest, "gw"):
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        assert wait_for(lambda: any(e["action"] == "resolved" for e in receiver.landslide()), 60)
        metrics = httpx.get(f"http://127.0.0.1:{api_port}/metrics").text
        assert wait_for(lambda: 'gridwatch_outbox_backlog{sink="webhook"} 0.0' in httpx.get(
            f"http://127.0.0.1:{api_port}/metrics").text, 10)  # fmt: skip
        for name in (
            'gridwatch_escalations_total{hazard="landslide"}',
            'gridwatch_time_to_acknowledge_seconds_count{hazard="landslide"}',
            'gridwatch_deadline_completion_ratio{stage="resolve"}',
            'gridwatch_notifications_total{action="escalated",outcome="sent"}',
            'gridwatch_open_incidents{hazard="landslide",level="red"}',
        ):
            assert name in metrics, name
    finally:
        pub.stop()
        engine.stop()
        receiver.stop()

    events = receiver.landslide()
    assert {e["incident_id"] for e in events} == {iid}, "one landslide incident"
    # Exactly once and in order: the incident's event numbers are 1, 2, 3, … with no gap and no repeat.
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({d for d, _ in receiver.got}) == len(receiver.got)
    assert receiver.bad_signatures == 0
    actions = [e["action"] for e in events]
    rising = [e["level"] for e in events if e["action"] in ("fired", "raised")]
    assert rising[-1] == "red" and "orange" in rising
    assert rising == sorted(rising, key=["blue", "yellow", "orange", "red"].index)
    fired = events[0]
    assert fired["action"] == "fired" and fired["receivers"] == ["town:town-north-1"]
    escalated = next(e for e in events if e["action"] == "escalated")
    assert escalated["receivers"] == ["district:north"] and escalated["tier"] == "district"
    assert actions.index("escalated") < actions.index("acknowledged") < actions.index("resolved")
    plan = events[actions.index("dispatched")]
    assert plan["plan"]["title"] == "Evacuate" and plan["receivers"][:4] == [
        "grid:grid-1", "town:town-north-1", "district:north", "city:Chongqing"
    ]  # fmt: skip
    assert "escalated" not in actions[actions.index("acknowledged") :], "no escalation after acknowledgement"
    assert actions[-1] == "resolved" and events[-1]["state"] == "resolved"
    acked = events[actions.index("acknowledged")]
    assert acked["actor"] == "duty-officer"
    # everyone told so far hears who took it
    told = {r for e in events[: actions.index("acknowledged")] for r in e["receivers"]}
    assert set(acked["receivers"]) == told and {"town:town-north-1", "district:north"} <= told
    assert events[-1]["updated_at"] > BASE + 42 * 3600, "resolves after the storm (hours 18-42) is over"

    stored = Store(store_url).incident(iid)
    assert stored is not None
    assert stored["state"] == "resolved" and stored["acknowledged_by"] == "duty-officer"
    assert stored["escalations"] >= 1
    trail = [a["action"] for a in stored["audit"]]
    assert trail[: len(actions)] == actions[: len(trail)] or set(actions) <= set(trail)
    assert {"fired", "raised", "escalated", "acknowledged", "resolved"} <= set(trail)
    assert next(a for a in stored["audit"] if a["action"] == "acknowledged")["detail"]["comment"] == "team on the way"
    assert {f["detector"] for f in stored["findings"]} >= {"crack-velocity"}
    left = Store(store_url).outbox_due("webhook")
    assert not left, [(i.event["hazard"], i.event["action"], i.attempts) for i in left]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
