"""The store on SQLite and PostgreSQL: migrations match the models, records, outbox order and retries, the API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from engine.api.auth import TokenAuth
from engine.api.incidents import incidents_router
from engine.api.live import StoreFeed
from engine.config.models import ApiToken, EngineConfig
from engine.core.findings import Finding
from engine.core.levels import Level
from engine.dispatch.actions import OperatorAction, apply_action
from engine.dispatch.dispatcher import Dispatcher
from engine.dispatch.outbox import OutboxDelivery, RetryPolicy
from engine.dispatch.sinks import PermanentDeliveryError
from engine.incidents.tracker import IncidentTracker
from engine.store.store import Notification, Store
from engine.store.tables import AuditRow, Base

SITE = {"id": "S1", "lat": 29.5, "lon": 106.5, "grid": "g1", "town": "t1", "district": "d1"}


@pytest.fixture
def store(store_url):
    st = Store(store_url)
    st.migrate()
    yield st
    st.close()


def test_migrations_build_exactly_the_models_and_run_twice(store):
    store.migrate()  # already at head: nothing to do, no error
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_processes_migrating_a_fresh_store_at_once_all_succeed(store_url):
    """Faust workers started together each migrate the shared store; none may crash on the race."""
    import subprocess
    import sys

    code = "import sys; from engine.store.store import Store; Store(sys.argv[1]).migrate()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, store_url], stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    failures = [p.stderr.read() if p.stderr else "" for p in procs if p.wait(120) != 0]
    assert failures == []
    st = Store(store_url)
    with st.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    st.close()


class FlakySink:
    def __init__(self, name: str, fail_first: int) -> None:
        self.name = name
        self.fail_first = fail_first
        self.got: list[tuple[str | None, str, int]] = []
        self.attempts = 0

    def send(self, event: dict[str, Any], delivery_id: str | None = None) -> None:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            raise ConnectionError("receiver down")
        self.got.append((delivery_id, event["incident_id"], event["seq"]))

    def close(self) -> None:
        pass


def desk(store: Store) -> tuple[Dispatcher, IncidentTracker]:
    cfg = EngineConfig(sites=[SITE], routing=[{"first": "town", "ack_within_s": 600, "repeat_s": 10_000}])
    tracker = IncidentTracker(cfg.incidents)
    d = Dispatcher(cfg, tracker, store)
    d.sinks = ["hook", "log"]
    return d, tracker


def test_outbox_keeps_order_through_failures_and_loses_nothing(store):
    d, tracker = desk(store)
    for k, lv in enumerate([1, 2, 3, 4]):
        f = Finding("crack", "landslide", "S1", "crack-1", 100.0 * k, Level(lv), float(lv))
        d.handle(tracker.apply([f]), now=100.0 * k)
    escalations = d.tick(now=2000.0)  # red at 300 s: district at 900 s, city at 1500 s
    assert [(n.event["action"], n.detail["tier"], n.at) for n in escalations] == [
        ("escalated", "district", 900.0), ("escalated", "city", 1500.0)
    ]  # fmt: skip
    assert store.outbox_backlog() == {"hook": 6, "log": 6}
    hook, log = FlakySink("hook", fail_first=3), FlakySink("log", fail_first=0)
    delivery = OutboxDelivery(store, [hook, log], {"hook": RetryPolicy(0.01, 0.02)})

    async def drain_until_empty() -> None:
        for _ in range(200):
            await delivery.drain(hook)
            await delivery.drain(log)
            if not store.outbox_backlog():
                return
            await asyncio.sleep(0.01)

    asyncio.run(drain_until_empty())
    assert hook.attempts == 3 + 6
    assert [s for _, _, s in hook.got] == [1, 2, 3, 4, 5, 6] == [s for _, _, s in log.got]
    assert len({i for i, _, _ in hook.got + log.got}) == 12  # one delivery id per event and sink
    assert store.outbox_backlog() == {}


class PoisonSink:
    """Refuses every event of one incident (as a receiver answering 422, or a sink that cannot format it)."""

    def __init__(self, poison: str, exc: Exception) -> None:
        self.name, self.poison, self.exc = "hook", poison, exc
        self.got: list[tuple[str, int]] = []

    def send(self, event: dict[str, Any], delivery_id: str | None = None) -> None:
        if event["incident_id"] == self.poison:
            raise self.exc
        self.got.append((event["incident_id"], event["seq"]))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("exc", [PermanentDeliveryError("HTTP 422 from https://hooks.example/…"), ValueError("bad")])
def test_a_poison_event_is_set_aside_and_never_blocks_the_sink(store, exc):
    d, tracker = desk(store)
    findings = [Finding("crack", "landslide", "S1", "crack-1", 0.0, Level.YELLOW, 1.0),
                Finding("rain", "rainstorm", "S1", "rain-1", 10.0, Level.YELLOW, 1.0),
                Finding("crack", "landslide", "S1", "crack-1", 20.0, Level.RED, 3.0)]  # fmt: skip
    for f in findings:
        d.handle(tracker.apply([f]), now=f.ts)
    poison = next(i["incident_id"] for i in store.list_incidents() if i["hazard"] == "landslide")
    other = next(i["incident_id"] for i in store.list_incidents() if i["hazard"] == "rainstorm")
    sink = PoisonSink(poison, exc)
    delivery = OutboxDelivery(store, [sink], {"hook": RetryPolicy(0.01, 0.02)})
    asyncio.run(delivery.drain(sink))
    assert sink.got == [(other, 1)], "the other incident's event went out behind the poison ones"
    assert store.outbox_backlog().get("hook", 0) == 0, "set aside at once, not retried for ever"


def test_a_failing_event_holds_back_only_its_own_incident(store):
    d, tracker = desk(store)
    for f in (Finding("crack", "landslide", "S1", "crack-1", 0.0, Level.YELLOW, 1.0),
              Finding("rain", "rainstorm", "S1", "rain-1", 10.0, Level.YELLOW, 1.0),
              Finding("crack", "landslide", "S1", "crack-1", 20.0, Level.RED, 3.0)):  # fmt: skip
        d.handle(tracker.apply([f]), now=f.ts)
    slide = next(i["incident_id"] for i in store.list_incidents() if i["hazard"] == "landslide")
    rain = next(i["incident_id"] for i in store.list_incidents() if i["hazard"] == "rainstorm")
    sink = PoisonSink(slide, ConnectionError("receiver down for this one"))
    delivery = OutboxDelivery(store, [sink], {"hook": RetryPolicy(60.0, 60.0)})
    asyncio.run(delivery.drain(sink))
    assert sink.got == [(rain, 1)], "the rainstorm is not held behind the landslide's outage"
    assert store.outbox_backlog()["hook"] == 2, "the landslide's two events wait, in order, for their retry"
    sink.poison = "none"
    asyncio.run(delivery.drain(sink, final=True))
    assert sink.got == [(rain, 1), (slide, 1), (slide, 2)]


def test_incident_record_with_findings_and_audit(store):
    d, tracker = desk(store)
    f = Finding("crack", "landslide", "S1", "crack-1", 0.0, Level.ORANGE, 2.0, {"velocity_per_day": 60.0})
    (fired,) = d.handle(tracker.apply([f]), now=0.0)
    d.acknowledge(fired.event["incident_id"], "duty", 30.0, comment="on it")
    inc = store.incident(fired.event["incident_id"])
    assert inc is not None and inc["state"] == "acknowledged" and inc["acknowledged_by"] == "duty"
    assert inc["findings"][0]["evidence"] == {"velocity_per_day": 60.0}
    assert [(a["action"], a["actor"]) for a in inc["audit"]] == [("fired", "engine"), ("acknowledged", "duty")]
    assert inc["audit"][1]["detail"]["comment"] == "on it"
    assert store.list_incidents(state="acknowledged")[0]["incident_id"] == inc["incident_id"]
    assert store.list_incidents(hazard="rainstorm") == []


def test_the_store_feed_publishes_every_recorded_event_once_in_order_even_when_an_id_lands_late(store):
    """A scale-out worker's page hears every partition's events through the store (StoreFeed)."""
    d, tracker = desk(store)
    got: list[dict[str, Any]] = []
    feed = StoreFeed(store, got.extend, gap_s=30.0)
    f = Finding("crack", "landslide", "S1", "crack-1", 0.0, Level.YELLOW, 2.0)
    d.handle(tracker.apply([f]), now=0.0)  # before the feed starts: not news to a page that loaded the board
    assert feed.poll(now=0.0) == 0 and got == []
    (fired,) = d.handle(tracker.apply([Finding("crack", "landslide", "S1", "crack-1", 10.0, Level.RED, 3.0)]), now=10.0)
    iid = fired.event["incident_id"]
    d.acknowledge(iid, "duty", 30.0, comment="on it")
    assert feed.poll(now=1.0) == 2
    assert [(e["incident_id"], e["action"], e["level"], e["state"], e["actor"]) for e in got] == [
        (iid, "raised", "red", "firing", "engine"), (iid, "acknowledged", "red", "acknowledged", "duty")
    ]  # fmt: skip
    assert got[1]["tier"] == fired.detail["tier"] and got[1]["reported"] is False
    assert feed.poll(now=2.0) == 0, "nothing twice"
    # PostgreSQL: a concurrent writer's lower id can commit after a higher one; it is published when it lands.
    last = feed.cursor
    assert last is not None
    with store.session() as s:
        s.add(AuditRow(id=last + 2, incident_id=iid, at=40.0, actor="a", action="commented", detail={}))
    assert feed.poll(now=3.0) == 1 and got[-1]["actor"] == "a"
    with store.session() as s:
        s.add(AuditRow(id=last + 1, incident_id=iid, at=39.0, actor="b", action="commented", detail={}))
    assert feed.poll(now=4.0) == 1 and got[-1]["actor"] == "b"
    assert feed.poll(now=5.0) == 0 and not feed.gaps
    # An id that never lands (a rolled-back transaction) is given up after gap_s.
    with store.session() as s:
        s.add(AuditRow(id=last + 5, incident_id=iid, at=41.0, actor="c", action="commented", detail={}))
    assert feed.poll(now=6.0) == 1 and set(feed.gaps) == {last + 3, last + 4}
    assert feed.poll(now=40.0) == 0 and not feed.gaps
    assert [e["actor"] for e in got] == ["engine", "duty", "a", "b", "c"]


def test_silenced_incident_is_recorded_but_not_queued(store):
    d, tracker = desk(store)
    store.add_silence({"hazard": "landslide", "site": "S*", "starts_at": 0, "ends_at": 1000, "comment": "survey"})
    d.refresh_silences()
    f = Finding("crack", "landslide", "S1", "crack-1", 10.0, Level.RED, 2.0)
    (note,) = d.handle(tracker.apply([f]), now=10.0)
    assert not note.notify and note.detail["silenced_by"]
    assert store.outbox_backlog() == {}
    assert store.incident(note.event["incident_id"])["silenced_by"] == note.detail["silenced_by"]


def test_api_tokens_roles_errors_and_openapi(store):
    d, tracker = desk(store)
    f = Finding("crack", "landslide", "S1", "crack-1", 0.0, Level.ORANGE, 2.0)
    (fired,) = d.handle(tracker.apply([f]), now=0.0)
    iid = fired.event["incident_id"]

    async def act(action: OperatorAction) -> list[Notification]:
        return apply_action(d, action, 50.0)

    tokens = [ApiToken(name="ops", token="o" * 20, role="operator"), ApiToken(name="tv", token="v" * 20)]
    app = FastAPI()
    app.include_router(incidents_router(store, act, TokenAuth(tokens, max_failures=3), lambda: 50.0))
    client = TestClient(app)
    op, tv = {"Authorization": "Bearer " + "o" * 20}, {"Authorization": "Bearer " + "v" * 20}
    assert client.get("/api/incidents").status_code == 401
    assert client.get("/api/incidents", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert [i["incident_id"] for i in client.get("/api/incidents?state=open", headers=tv).json()] == [iid]
    assert client.get("/api/incidents/nope", headers=tv).status_code == 404
    assert client.post(f"/api/incidents/{iid}/assign", json={"to": "crew-7"}, headers=tv).status_code == 403
    res = client.post(f"/api/incidents/{iid}/assign", json={"to": "crew-7"}, headers=op)
    assert res.status_code == 200 and res.json()["events"][0]["assigned_to"] == "crew-7"
    res = client.post(f"/api/incidents/{iid}/dispatch", headers=op)
    assert res.json()["events"][0]["receivers"] == ["grid:g1", "town:t1", "district:d1", "city:city"]
    assert client.post(f"/api/incidents/{iid}/resolve", json={}, headers=op).status_code == 200
    assert client.post(f"/api/incidents/{iid}/ack", json={}, headers=op).status_code == 409
    sil = client.post("/api/silences", json={"site": "S1", "cron": "not cron", "duration_s": 60}, headers=op)
    assert sil.status_code == 422 and "cron" in sil.text
    sil = client.post("/api/silences", json={}, headers=op)
    assert sil.status_code == 422 and "mute the whole city" in sil.text, "an empty silence would mute the whole city"
    sil = client.post("/api/silences", json={"level": "red", "for_s": 3600}, headers=op)
    assert sil.status_code == 422, "every RED of the city muted"
    window = {"site": "S1", "cron": "* * * * *", "duration_s": 1e300}
    sil = client.post("/api/silences", json=window, headers=op)
    assert sil.status_code == 422 and "duration_s" in sil.text, "a window no calendar holds crashed the engine"
    too_long = client.post(f"/api/incidents/{iid}/assign", json={"to": "x" * 129}, headers=op)
    assert too_long.status_code == 422, "longer than the store's column: refused, not a failing store write"
    sil = client.post("/api/silences", json={"site": "*", "for_s": 60}, headers=op)
    assert sil.status_code == 422 and "wildcards" in sil.text, "`*` would mute the whole city too"
    for every_site in ("S*", "[!~]*", "?*"):
        sil = client.post("/api/silences", json={"site": every_site, "level": "red", "for_s": 60}, headers=op)
        assert sil.status_code == 422, (every_site, "muted every RED in the city")
    sil = client.post("/api/silences", json={"site": "S1", "hazard": "landslide"}, headers=op)
    assert sil.status_code == 422 and "needs an end" in sil.text, "a silence for ever would mute next month's RED"
    sil = client.post("/api/silences", json={"site": "S1", "for_s": 90 * 86400}, headers=op)
    assert sil.status_code == 422 and "at most 30 days" in sil.text
    sil = client.post("/api/silences", json={"site": "S1", "hazard": "landslide", "for_s": 3600}, headers=op)
    assert sil.status_code == 201 and sil.json()["created_by"] == "ops"
    assert [s["id"] for s in client.get("/api/silences", headers=tv).json()] == [sil.json()["id"]]
    assert client.delete(f"/api/silences/{sil.json()['id']}", headers=op).status_code == 204
    assert client.get("/api/silences", headers=tv).json() == []
    # the OpenAPI document is valid and covers every route, each behind the bearer scheme
    spec = client.get("/openapi.json").json()
    validate(spec)
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == {
        ("GET", "/api/me"), ("GET", "/api/incidents"), ("GET", "/api/incidents/{incident_id}"),
        ("POST", "/api/incidents/{incident_id}/ack"),
        ("POST", "/api/incidents/{incident_id}/assign"), ("POST", "/api/incidents/{incident_id}/resolve"),
        ("POST", "/api/incidents/{incident_id}/dispatch"), ("GET", "/api/silences"), ("POST", "/api/silences"),
        ("DELETE", "/api/silences/{silence_id}"),
    }  # fmt: skip
    assert all(op_["security"] == [{"HTTPBearer": []}] for ops in spec["paths"].values() for op_ in ops.values())
    # Guessing is slowed down: after the third wrong token from one address, wrong tokens get 429; the
    # right token is still let in (a duty officer behind the guesser's NAT is not locked out).
    for _ in range(2):
        assert client.get("/api/incidents", headers={"Authorization": "Bearer guess"}).status_code == 401
    locked = client.get("/api/incidents", headers={"Authorization": "Bearer guess", "X-Forwarded-For": "10.9.9.9"})
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "60"
    assert client.get("/api/incidents", headers=tv).status_code == 200


def test_delivery_ids_are_not_reused_by_a_new_store(tmp_path):
    """Row numbers restart with a new store; a receiver keeping the ids it saw dropped new alerts."""
    ids = []
    for name in ("old", "new"):
        store = Store(f"sqlite:///{tmp_path / name}.db")
        store.migrate()
        d, tracker = desk(store)
        hazard = "landslide" if name == "old" else "rainstorm"
        d.handle(tracker.apply([Finding("x", hazard, "S1", "d-1", 10.0, Level.YELLOW, 1.0)]), now=10.0)
        sink = FlakySink("hook", fail_first=0)
        asyncio.run(OutboxDelivery(store, [sink]).drain(sink))
        ids += [i for i, _, _ in sink.got]
        store.close()
    assert len(ids) == 2 and len(set(ids)) == 2, ids


def test_retention_purges_delivered_rows_and_old_history_but_never_what_is_open_or_waiting(store):
    day = 86400.0
    d, tracker = desk(store)
    d.sinks = ["hook"]
    d.handle(tracker.apply([Finding("crack", "landslide", "S1", "crack-1", 0.0, Level.YELLOW, 1.0)]), now=0.0)
    (slide,) = store.list_incidents()
    d.resolve(slide["incident_id"], "ops", 100.0)
    sink = FlakySink("hook", fail_first=0)
    asyncio.run(OutboxDelivery(store, [sink]).drain(sink))
    assert len(sink.got) == 2 and store.outbox_backlog() == {}
    d.handle(tracker.apply([Finding("rain", "rainstorm", "S1", "rain-1", 399 * day, Level.YELLOW, 1.0)]), now=399 * day)
    later = time.time() + 8 * day  # rows carry wall time; these incidents' data time is long past
    gone = store.purge(now=later, outbox_keep_s=7 * day, history_keep_s=365 * day)
    assert gone["outbox"] == 2 and gone["incidents"] == 1 and gone["audit"] >= 2, gone
    assert [i["hazard"] for i in store.list_incidents(limit=100)] == ["rainstorm"], "the open one stays"
    assert store.outbox_backlog() == {"hook": 1}, "its event, not yet delivered, stays"
    assert store.purge(now=later, outbox_keep_s=7 * day, history_keep_s=365 * day)["incidents"] == 0


def test_camera_heads_are_kept_by_site_and_camera_and_read_back_bit_for_bit(store):
    """What a scale-out worker's camera learned, in the store: each camera's heads document and examples (npz
    bytes) by site and camera; a worker reads the sites it takes up (not every camera), bit for bit; the next
    owner's later version replaces the row in place and keeps the examples when none come; a site that leaves
    is let go of."""
    import numpy as np

    from detectors.vision.camera_heads import DISMISSED, REAL, Examples, fit_head
    from engine.config.models import CameraLearningConfig
    from engine.flow.camera_learning import CameraLearning, CameraModel
    from engine.store.camera_heads import StoredCameraHeads

    rng = np.random.default_rng(5)
    box = np.zeros((20, 4), np.float32)
    ex = Examples.empty(8, 2).added(rng.random((20, 8), np.float32) + 2 * np.eye(8, dtype=np.float32)[0],
                                    np.full((20, 2), 4.0, np.float32), DISMISSED, -1, 100.0, 1, box)  # fmt: skip
    ex = ex.added(rng.random((20, 8), np.float32) + 2 * np.eye(8, dtype=np.float32)[1],
                  np.full((20, 2), 4.0, np.float32), REAL, 1, 100.0, 2, box)  # fmt: skip
    fit = fit_head(ex, np.array([0.93, 0.97]), 100.0, 1e9, 0.5, 1, "m")
    assert fit.head is not None
    cam = CameraModel([fit.head], 1, ex, [], [{"action": "verdict", "version": 1}])
    kept = StoredCameraHeads(store, lambda: 50.0)
    kept.save("S1/cam-1", *cam.record())
    kept.save("S2/cam-9", *CameraModel(log=[{"action": "rollback", "version": 0}]).record())
    learning = CameraLearning(CameraLearningConfig(), None, None, kept)
    assert learning.cameras == {}, "a store's cameras are read per site, as a worker takes the site up"
    assert learning.load(["S1"]) == ["S1/cam-1"]
    back = learning.cameras["S1/cam-1"]
    head = back.head()
    assert head is not None and back.examples is not None
    assert head.weights.tobytes() == fit.head.weights.tobytes() and head.bias.tobytes() == fit.head.bias.tobytes()
    assert {k: v.tobytes() for k, v in back.examples.save().items()} == {k: v.tobytes() for k, v in ex.save().items()}
    assert learning.status("S1/cam-1")["version"] == 1 and learning.status("S1/cam-1")["examples"]
    # rolled back by the site's next owner: the row is replaced in place, its examples kept when none come
    cam.current = 0
    kept.save("S1/cam-1", cam.record()[0], None)
    assert learning.load(["S1"]) == ["S1/cam-1"] and learning.status("S1/cam-1")["version"] == 0
    again = learning.cameras["S1/cam-1"].examples
    assert again is not None and again.features.tobytes() == ex.features.tobytes()
    assert [(s, c) for s, c, _doc, _ex in store.camera_heads()] == [("S1", "cam-1"), ("S2", "cam-9")]
    assert store.camera_head_sites() == {"S1", "S2"}
    learning.forget(["S1"])
    assert learning.cameras == {}
