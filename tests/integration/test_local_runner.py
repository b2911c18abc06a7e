"""The local runner over a real Mosquitto: ingest, dead-letters, incidents, persistent session, embedded broker."""

from __future__ import annotations

import time

import orjson
import pytest

from engine.config.models import ApiConfig, EngineConfig, LogSinkConfig, MqttConfig, MqttSinkConfig
from engine.dispatch.dispatcher import DISPATCH_ACTIONS
from engine.ingest.mqtt_client import MqttClient, broker_address
from engine.store.store import Store
from simulators.publish import messages
from tests.conftest import RunnerThread, default_config, direct_events, publisher, wait_for

pytestmark = pytest.mark.integration


def engine_config(url: str, tmp_path, client_id: str, **mqtt) -> EngineConfig:
    m = MqttConfig(url=url, client_id=client_id, **mqtt)
    return default_config(
        mqtt=m,
        data_dir=str(tmp_path),
        inhibit=[],  # every event reaches the sinks, to compare with the core's own
        api=ApiConfig(enabled=False),
        sinks=[LogSinkConfig(path=str(tmp_path / "incidents.jsonl")), MqttSinkConfig()],
    )


class Listener:
    """Collects what the engine publishes (dead letters, alerts)."""

    def __init__(self, url: str, topics: list[str], protocol: str = "5") -> None:
        self.received: list[tuple[str, dict]] = []
        self.client = MqttClient(
            MqttConfig(url=url),
            on_message=self._on,
            subscriptions=topics,
            client_id=f"listener-{time.time_ns()}",
            protocol=protocol,
            clean=True,
        )
        self.client.start(*broker_address(url))

    def _on(self, topic: str, payload: bytes, _props: dict[str, str]) -> None:
        self.received.append((topic, orjson.loads(payload)))

    def stop(self) -> None:
        self.client.stop()


def read_log(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def key(events):
    """The tracker's events (what every runner must agree on), without dispatch's escalations and reminders."""
    return [
        (e["incident_id"], e["level"], e["state"], e["updated_at"])
        for e in events
        if e["action"] not in DISPATCH_ACTIONS
    ]


def test_scenario_over_mosquitto_matches_direct_replay_and_dead_letters_bad_input(mosquitto, tmp_path, storm_rows):
    cfg = engine_config(mosquitto.url, tmp_path, "engine-it-1")
    expected = direct_events(storm_rows)
    listener = Listener(mosquitto.url, ["gw/deadletter/#", "gw/alerts/#"])
    engine = RunnerThread(cfg)
    pub = publisher(mosquitto.url)
    try:
        for _ts, topic, payload in messages(storm_rows, "gw"):
            pub.publish(topic, payload, qos=1)
        pub.publish("gw/sensors/S01/rain-1", b"{oops", qos=1)
        pub.publish("gw/sensors/S01/rain-1", b'{"ts": 1700000000, "values": {"snow_mm": 3}}', qos=1)
        last = list(messages(storm_rows, "gw"))[-1]
        pub.publish(last[1], last[2], qos=1)  # a redelivered duplicate (same seq)
        assert pub.flush()
        log = tmp_path / "incidents.jsonl"
        assert wait_for(lambda: len(read_log(log)) >= len(expected), 60)
        assert wait_for(lambda: len([t for t, _ in listener.received if "deadletter" in t]) >= 3, 10)
        n_alerts = len([e for e in expected if e["site"] == "S02" and e["hazard"] == "landslide"])
        assert wait_for(lambda: len([t for t, _ in listener.received if "alerts/S02/landslide" in t]) >= n_alerts, 10)
    finally:
        pub.stop()
        engine.stop()
        listener.stop()
    assert key(read_log(tmp_path / "incidents.jsonl")) == key(expected)
    dead = {t: d for t, d in listener.received if "/deadletter/" in t}
    assert set(dead) == {"gw/deadletter/malformed_json", "gw/deadletter/unknown_metric", "gw/deadletter/duplicate_seq"}
    assert dead["gw/deadletter/malformed_json"]["topic"] == "gw/sensors/S01/rain-1"
    assert dead["gw/deadletter/malformed_json"]["payload"] == "{oops"
    alerts = [d for t, d in listener.received if t.startswith("gw/alerts/S02/landslide")]
    assert [a["level"] for a in alerts if a["action"] in ("fired", "raised")] == ["blue", "yellow", "orange", "red"]
    assert engine.summary is not None and engine.summary.readings == len(storm_rows)
    assert engine.summary.rejected == 3


def test_persistent_session_delivers_what_was_published_while_the_engine_was_away(mosquitto, tmp_path):
    cfg = engine_config(mosquitto.url, tmp_path, "engine-it-persist")
    engine = RunnerThread(cfg)
    engine.stop()  # the broker now holds the engine's session and subscriptions
    pub = publisher(mosquitto.url)
    ts = time.time() - 600 * 31
    for k in range(30):
        value = 1000.0 if k == 29 else 0.0  # the last reading is beyond any gauge's range: a device fault
        pub.publish("gw/sensors/S05/rain-1", orjson.dumps({"ts": ts + 600 * k, "seq": k, "values": {"rain_mm": value}}))
    assert pub.flush()
    pub.stop()
    engine = RunnerThread(cfg)
    try:
        assert wait_for(lambda: engine.runner.pipeline.readings >= 30, 20)
    finally:
        engine.stop()
    assert engine.runner.pipeline.readings == 30
    (event,) = read_log(tmp_path / "incidents.jsonl")
    assert (event["site"], event["hazard"], event["level"]) == ("S05", "device_fault", "yellow")


def test_embedded_broker_needs_nothing_installed(tmp_path):
    cfg = engine_config("embedded", tmp_path, "engine-embedded", embedded_port=0)
    engine = RunnerThread(cfg)
    try:
        port = engine.runner.broker_port
        url = f"mqtt://127.0.0.1:{port}"
        pub = publisher(url, protocol="3.1.1")
        now = time.time()
        # Beyond the gauge's measuring range: device_health raises a device fault at once.
        pub.publish("gw/sensors/S01/rain-1", orjson.dumps({"ts": now, "values": {"rain_mm": 1000.0}}))
        assert pub.flush()
        pub.stop()
        assert wait_for(lambda: len(read_log(tmp_path / "incidents.jsonl")) == 1, 15)
    finally:
        engine.stop()
    (event,) = read_log(tmp_path / "incidents.jsonl")
    assert (event["site"], event["hazard"], event["level"]) == ("S01", "device_fault", "yellow")
    assert event["state"] == "firing"


def test_store_outage_keeps_detecting_reports_it_and_loses_no_notification(mosquitto, tmp_path, storm_rows):
    """The store fails for the first half of the storm: the engine keeps going, says so, and catches up."""
    from sqlalchemy.exc import OperationalError

    cfg = engine_config(mosquitto.url, tmp_path, "engine-it-store-out")
    engine = RunnerThread(cfg)
    store = engine.runner.store
    real_record = store.record
    failing = {"on": True}

    def record(notes, sinks, *args):
        if failing["on"]:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real_record(notes, sinks, *args)

    store.record = record  # type: ignore[method-assign]
    pub = publisher(mosquitto.url)
    half = len(storm_rows) // 2
    try:
        for _ts, topic, payload in messages(storm_rows[:half], "gw"):
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        assert wait_for(lambda: engine.runner.pipeline.readings >= half, 60), "detection goes on without a store"
        # The step that counted the last readings stores its incidents after counting them: wait for it.
        assert wait_for(lambda: engine.runner.summary.readings >= half, 30)
        health = engine.runner.health()
        assert health["ok"] is False and health["store_ok"] is False and health["store_pending"] > 0, health
        # their incidents are not stored: the messages stay unacknowledged, so the broker keeps them
        assert health["unacknowledged_until_stored"] > 0, health
        failing["on"] = False
        for _ts, topic, payload in messages(storm_rows[half:], "gw"):
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        assert wait_for(lambda: engine.runner.pipeline.readings >= len(storm_rows), 60)
        assert wait_for(lambda: engine.runner.health()["store_ok"], 10)
        assert wait_for(lambda: engine.runner.health()["unacknowledged_until_stored"] == 0, 10)
    finally:
        pub.stop()
        engine.stop()
    expected = [e for e in direct_events(storm_rows) if e["action"] not in DISPATCH_ACTIONS]
    stored = Store(f"sqlite:///{tmp_path / 'gridwatch.db'}")
    details = [stored.incident(i["incident_id"]) for i in stored.list_incidents(limit=1000)]
    audits = {d["incident_id"]: d["audit"] for d in details if d is not None}
    kept = sorted(
        (iid, a["action"], a["detail"]["level"]) for iid, trail in audits.items() for a in trail
        if a["action"] not in DISPATCH_ACTIONS
    )  # fmt: skip
    assert kept == sorted((e["incident_id"], e["action"], e["level"]) for e in expected), "every event, once"
    for trail in audits.values():  # and each incident's events numbered 1, 2, 3, … with none twice
        assert [a["detail"]["seq"] for a in trail] == list(range(1, len(trail) + 1))


def test_notifications_held_while_the_store_is_out_survive_a_clean_restart(mosquitto, tmp_path, storm_rows):
    """The store is out for the whole storm and the engine is stopped cleanly: its checkpoint marks the readings
    applied (their redelivery is dropped), so what it held in memory must reach the store after the restart."""
    from sqlalchemy.exc import OperationalError

    cfg = engine_config(mosquitto.url, tmp_path, "engine-it-store-out-restart")
    engine = RunnerThread(cfg)

    def out(notes, sinks, *args):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    engine.runner.store.record = out  # type: ignore[method-assign]
    pub = publisher(mosquitto.url)
    try:
        for _ts, topic, payload in messages(storm_rows, "gw"):
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        assert wait_for(lambda: engine.runner.summary.readings >= len(storm_rows), 60)
        assert engine.runner.health()["store_pending"] > 0
    finally:
        engine.stop()
    held = tmp_path / "held-notifications.json"
    assert held.is_file(), "what the store did not take is on disk with the checkpoint"
    again = RunnerThread(cfg)  # the store is back
    try:
        assert wait_for(lambda: not held.exists(), 30), "taken up and written at start"
    finally:
        pub.stop()
        again.stop()
    expected = [e for e in direct_events(storm_rows) if e["action"] not in DISPATCH_ACTIONS]
    stored = Store(f"sqlite:///{tmp_path / 'gridwatch.db'}")
    kept = sorted(
        (i["incident_id"], a["action"], a["detail"]["level"])
        for i in stored.list_incidents(limit=1000)
        for a in (stored.incident(i["incident_id"]) or {})["audit"]
        if a["action"] not in DISPATCH_ACTIONS
    )
    assert kept == sorted((e["incident_id"], e["action"], e["level"]) for e in expected), "every event, once"
    assert any(e["level"] == "red" for e in expected)


def test_a_wedged_step_makes_the_engine_not_ready_until_it_moves_again(mosquitto, tmp_path, storm_rows):
    """A report that hung the engine left /readyz at 200 ok while no reading was processed again."""
    import threading

    cfg = engine_config(mosquitto.url, tmp_path, "engine-it-wedged")
    cfg.ingest.wedged_after_s = 1.0
    engine = RunnerThread(cfg)
    release = threading.Event()
    real_step = engine.runner._step

    def hanging(batch):
        release.wait(60)
        return real_step(batch)

    engine.runner._step = hanging  # type: ignore[method-assign]
    pub = publisher(mosquitto.url)
    try:
        for _ts, topic, payload in messages(storm_rows[:5], "gw"):
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        assert wait_for(lambda: engine.runner.health()["wedged"], 20)
        health = engine.runner.health()
        assert health["ok"] is False and health["step_running_s"] >= 1.0, health
        release.set()
        assert wait_for(lambda: engine.runner.health()["ok"], 20), engine.runner.health()
    finally:
        release.set()
        pub.stop()
        engine.stop()


def test_a_camera_stage_stuck_on_its_frames_makes_the_engine_not_ready(mosquitto, tmp_path):
    """A 1x2,000,000 thermal strip kept the camera stage busy for minutes and a real fire waited 187 s while
    /readyz answered 200: a stage that runs past ingest.wedged_after_s now fails readiness."""
    import threading

    import cv2
    import numpy as np

    cfg = engine_config(mosquitto.url, tmp_path, "engine-it-camera-stuck")
    cfg.ingest.wedged_after_s = 1.0
    engine = RunnerThread(cfg)
    release = threading.Event()
    real = engine.runner.cameras.step

    def stuck(frames, thermal):
        release.wait(60)
        return real(frames, thermal)

    engine.runner.cameras.step = stuck  # type: ignore[method-assign,assignment]
    pub = publisher(mosquitto.url)
    try:
        _ok, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))
        pub.publish("gw/cameras/S01/cam-stuck", jpg.tobytes(), qos=1)
        assert pub.flush()
        assert wait_for(lambda: engine.runner.health()["wedged"], 20), engine.runner.health()
        assert engine.runner.health()["camera_stage_running_s"] >= 1.0
        release.set()
        assert wait_for(lambda: not engine.runner.health()["wedged"], 20)
    finally:
        release.set()
        pub.stop()
        engine.stop()


def test_broker_restart_mid_stream_loses_nothing_and_counts_nothing_twice(tmp_path, storm_rows):
    """Mosquitto (with persistence) restarts mid-stream; readings published while the engine is still
    reconnecting wait in its persistent session; every reading is processed exactly once."""
    from tests.conftest import Mosquitto, _mosquitto_binary

    binary = _mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(binary, tmp_path)
    broker.start()
    cfg = engine_config(broker.url, tmp_path, "engine-it-broker-restart")
    engine = RunnerThread(cfg)
    client = engine.runner.client
    assert client is not None
    half = len(storm_rows) // 2
    try:
        pub = publisher(broker.url)
        for _ts, topic, payload in messages(storm_rows[:half], "gw"):
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        pub.stop()
        # Processed and acknowledged (the summary counts a batch once its messages are acked), and the acks
        # on the wire: a broker stopped before a PUBACK reaches it redelivers that message (QoS 1).
        assert wait_for(lambda: engine.runner.summary.readings >= half, 30)
        time.sleep(0.5)
        broker.stop()  # SIGTERM: mosquitto saves the engine's session and subscriptions
        assert wait_for(lambda: not client.connected.is_set(), 10)
        broker.start()
        pub = publisher(broker.url)  # faster than the engine's reconnect backoff: these wait in its session
        rest = list(messages(storm_rows[half:], "gw"))
        for _ts, topic, payload in rest:
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        pub.stop()
        assert wait_for(client.connected.is_set, 40), "the engine reconnects"
        assert wait_for(lambda: engine.runner.pipeline.readings >= len(storm_rows), 60), (
            engine.runner.pipeline.readings,
            len(storm_rows),
            half,
            (tmp_path / "mosquitto.log").read_text()[-1500:],
        )
        time.sleep(1.0)  # anything redelivered twice would arrive now
    finally:
        engine.stop()
        broker.stop()
    assert engine.runner.pipeline.readings == len(storm_rows), "every reading once: none lost, none twice"
    assert key(read_log(tmp_path / "incidents.jsonl")) == key(direct_events(storm_rows))


def test_a_slow_camera_detector_drops_its_own_frames_and_never_holds_up_the_sensors(mosquitto, tmp_path, storm_rows):
    """A camera detector that takes a second a frame: its camera's queue drops the oldest frames (counted),
    and the sensor readings published meanwhile are processed at once."""
    from engine import metrics
    from engine.config.models import CamerasConfig
    from simulators.camera import synthetic

    cameras = CamerasConfig.model_validate(
        {"devices": [{"site": "S01", "id": "cam-1", "min_interval_s": 0}], "queue_frames": 2,
         "detectors": [{"type": "flame_color_motion", "id": "slow-flames"}]}
    )  # fmt: skip
    cfg = engine_config(mosquitto.url, tmp_path, "engine-it-slow-camera").model_copy(update={"cameras": cameras})
    engine = RunnerThread(cfg)
    stage = engine.runner.cameras
    real_step = stage.step

    def slow_step(frames, thermal=None):
        time.sleep(1.0 * len(frames))  # an overloaded model
        return real_step(frames, thermal)

    stage.step = slow_step  # type: ignore[method-assign]
    dropped_before = metrics.FRAMES.labels("dropped")._value.get()
    pub = publisher(mosquitto.url)
    try:
        start = time.time() - 60
        for t, jpeg in synthetic("fire", 1.0, 20, seed=2):
            pub.publish("gw/cameras/S01/cam-1", jpeg, qos=1, user_properties={"ts": f"{start + t:.3f}"})
        assert pub.flush()
        t0 = time.monotonic()
        for _ts, topic, payload in messages(storm_rows[:2000], "gw"):
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        assert wait_for(lambda: engine.runner.pipeline.readings >= 2000, 10)
        sensor_s = time.monotonic() - t0
    finally:
        pub.stop()
        engine.stop()
    assert sensor_s < 5.0, f"the sensor path waited for the camera stage ({sensor_s:.1f} s)"
    assert metrics.FRAMES.labels("dropped")._value.get() - dropped_before >= 10


def test_a_raising_detector_and_a_failing_checkpoint_are_contained_reported_and_alerting_goes_on(
    mosquitto, tmp_path, storm_rows
):
    """One detector raises on every batch and the checkpoint cannot be written (its path is a folder): the
    engine keeps ingesting and alerting with every other detector, dead-letters each failure, keeps its timer
    running, and /readyz says what is wrong (it used to crash-loop, or stop checkpoints and escalations with
    /healthz 200)."""
    import httpx

    from engine.ingest.embedded_broker import free_port

    port = free_port("127.0.0.1")
    cfg = engine_config(mosquitto.url, tmp_path, "engine-it-faults").model_copy(
        update={"api": ApiConfig(port=port), "checkpoint_interval_s": 1.0}
    )
    (tmp_path / "checkpoint.npz").mkdir()  # writing the checkpoint fails as on a full or read-only disk
    expected = [e for e in direct_events(storm_rows) if e["hazard"] != "rainstorm"]
    listener = Listener(mosquitto.url, ["gw/deadletter/#"])
    engine = RunnerThread(cfg)
    victim = next(d for d in engine.runner.pipeline.detectors if d.name == "rain-intensity")

    def raising(batch, state):
        raise IndexError("list index out of range")  # what `levels: {}` used to cause on the first reading

    victim.process = raising  # type: ignore[method-assign]
    pub = publisher(mosquitto.url)
    try:
        for _ts, topic, payload in messages(storm_rows, "gw"):
            pub.publish(topic, payload, qos=1)
        assert pub.flush()
        assert wait_for(lambda: engine.runner.pipeline.readings >= len(storm_rows), 60), "intake never stalls"
        assert wait_for(lambda: engine.runner.checkpoint_error is not None, 10)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["detectors_failing"] == ["rain-intensity"] and "IsADirectoryError" in body["checkpoint_error"]
        assert httpx.get(f"http://127.0.0.1:{port}/livez").status_code == 200
        ticks = engine.runner.supervisor.failures.get("timers", 0)
        time.sleep(2.5)  # the timer keeps ticking (and retrying the checkpoint) without dying
        assert engine.runner.supervisor.failures.get("timers", 0) == ticks
        assert wait_for(lambda: any("detector_error" in t for t, _ in listener.received), 10)
    finally:
        pub.stop()
        engine.stop()
        listener.stop()
    landslides = [e for e in read_log(tmp_path / "incidents.jsonl") if e["hazard"] == "landslide"]
    assert key(landslides) == key([e for e in expected if e["hazard"] == "landslide"]), "the slopes still alert"
    dead = [d for t, d in listener.received if t == "gw/deadletter/detector_error"]
    assert dead and all(d["detector"] == "rain-intensity" and "IndexError" in d["detail"] for d in dead)


def test_a_fleet_that_falls_silent_fails_readiness(mosquitto, tmp_path):
    """No reading at all for `ingest.fleet_silent_s` (a broker or network fault upstream): /readyz says so."""
    cfg = engine_config(mosquitto.url, tmp_path, "engine-it-silent")
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"fleet_silent_s": 1.0})})
    engine = RunnerThread(cfg)
    pub = publisher(mosquitto.url)
    try:
        assert wait_for(lambda: engine.runner.health()["fleet_silent"], 10), "nothing since the start"
        pub.publish("gw/sensors/S01/rain-1", orjson.dumps({"ts": time.time(), "values": {"rain_mm": 0.2}}), qos=1)
        assert pub.flush()
        assert wait_for(lambda: engine.runner.health()["ok"], 10), engine.runner.health()
        assert wait_for(lambda: engine.runner.health()["fleet_silent"], 10), "silent again after a second"
    finally:
        pub.stop()
        engine.stop()
