"""Faults outside the sensor core that used to stop alerting silently (docs/reliability.md): each is now
contained, dead-lettered or refused, and shows in health."""

from __future__ import annotations

import functools
import io
import struct
import subprocess
import sys

import cv2
import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from detectors.vision.base import Frame
from engine.config.models import CamerasConfig, EngineConfig
from engine.core.devices import DeviceIndex
from engine.flow.cameras import CameraStage
from engine.ingest.camera_intake import CameraIntake
from engine.ingest.frames import MAX_PIXELS, FrameError, decode, image_size
from engine.ingest.intake import Intake
from engine.ingest.replay_file import batches
from engine.ingest.topics import Topic, TopicError, parse_topic
from engine.runners.assembly import build_pipeline
from tests.conftest import ROOT, default_config

NOW = 1_700_000_000.0
ids = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,20}", fullmatch=True)


@given(st.sampled_from(["sensors", "cameras", "thermal", "status"]), ids, ids)
def test_valid_ids_round_trip(kind, site, device):
    assert parse_topic(f"gw/{kind}/{site}/{device}", "gw") == Topic(kind, site, device)


@pytest.mark.parametrize("segment", ["..", ".", "S1[/]", "a b", "x" * 129, "-x", "s\x00", "é"])
def test_ids_that_could_escape_a_path_or_overflow_the_store_are_refused(segment):
    with pytest.raises(TopicError, match=r"not a valid id|is not gw/"):
        parse_topic(f"gw/cameras/{segment}/cam-1", "gw")
    with pytest.raises(TopicError, match=r"not a valid id|is not gw/"):
        parse_topic(f"gw/sensors/S1/{segment}", "gw")


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def camera_intake(published: list[tuple[str, bytes]]) -> Intake:
    cfg = EngineConfig(cameras=CamerasConfig.model_validate({"detectors": [{"type": "thermal_hotspot"}]}))
    intake = Intake(cfg, DeviceIndex(), publish=lambda t, p: published.append((t, p)))
    intake.cameras = CameraIntake(cfg, intake.reject)
    return intake


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("gw/thermal/S1/ir-1", npy(np.zeros((4, 4), np.float32))[:90], "not_an_image"),  # truncated .npy
        ("gw/thermal/S1/ir-1", npy(np.array(["a", "b"], object).reshape(1, 2))[:200], "not_an_image"),
        ("gw/cameras/S1/cam-1", npy(np.random.default_rng(0).random((8, 8, 3))), "not_an_image"),  # float64
        ("gw/cameras/S1/cam-1", npy(np.zeros((8, 8, 7), np.uint8)), "not_an_image"),
        ("gw/cameras/S1/../x", b"\xff\xd8", "bad_topic"),
    ],
)
def test_a_bad_frame_is_dead_lettered_and_acknowledged_and_the_next_one_goes_through(topic, payload, reason):
    published: list[tuple[str, bytes]] = []
    intake = camera_intake(published)
    acked: list[str] = []
    intake.handle(topic, payload, {"ts": str(NOW)}, now=NOW, ack=functools.partial(acked.append, "bad"))
    good = npy(np.full((12, 16), 20.0, np.float32))
    intake.handle(
        "gw/thermal/S1/ir-1", good, {"ts": str(NOW + 5)}, now=NOW + 5, ack=functools.partial(acked.append, "ok")
    )
    assert acked == ["bad", "ok"], "every message is acknowledged: none holds the broker's window"
    assert intake.cameras is not None and len(intake.cameras.take()) == 1, "decoded off the network thread"
    assert [orjson.loads(p)["reason"] for _t, p in published] == [reason]


def test_a_bug_while_handling_a_frame_is_dead_lettered_not_left_unacknowledged(monkeypatch):
    published: list[tuple[str, bytes]] = []
    intake = camera_intake(published)
    assert intake.cameras is not None
    monkeypatch.setattr(intake.cameras, "handle", lambda *a: 1 / 0)
    acked: list[bool] = []
    intake.handle("gw/cameras/S1/cam-1", b"\xff\xd8", {}, now=NOW, ack=lambda: acked.append(True))
    assert acked == [True]
    (doc,) = [orjson.loads(p) for _t, p in published]
    assert doc["reason"] == "internal_error" and "ZeroDivisionError" in doc["detail"]


def jpeg(w: int = 32, h: int = 24) -> bytes:
    return cv2.imencode(".jpg", np.full((h, w, 3), 90, np.uint8))[1].tobytes()


def test_jpeg_fill_bytes_and_a_decoy_frame_header_do_not_hide_the_real_size():
    real = jpeg()
    decoy = b"\xff\xe1" + struct.pack(">H", 2 + 9) + b"\xff\xc0\x00\x11\x08\x00\x02\x00\x02"  # SOF-like bytes in APP1
    crafted = real[:2] + b"\xff\xff\xff" + decoy + real[2:]  # fill bytes before a marker are legal JPEG
    assert image_size(crafted) == ("jpeg", 32, 24)
    # the real header claims 9,000 x 9,000 (81 Mpx): refused before decoding, whatever precedes it
    sof = real.index(b"\xff\xc0")
    bomb = bytearray(crafted[:2] + b"\xff\xff" + decoy + real[2:])
    at = bytes(bomb).index(b"\xff\xc0", 2 + 2 + len(decoy))
    bomb[at + 5 : at + 9] = struct.pack(">HH", 9000, 9000)
    assert sof > 0
    with pytest.raises(FrameError) as err:
        decode(bytes(bomb))
    assert err.value.reason == "too_many_pixels"


def test_opencv_itself_refuses_more_pixels_than_the_engine_allows():
    """The second line of defence: gridwatch sets OpenCV's own decoding limit before OpenCV loads."""
    code = (
        "import engine, cv2, numpy as np\n"
        "big = cv2.imencode('.png', np.zeros((7000, 7000), np.uint8))[1]\n"
        "try:\n    out = cv2.imdecode(big, cv2.IMREAD_GRAYSCALE)\nexcept cv2.error:\n    out = None\n"
        "print('refused' if out is None else 'decoded')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert res.stdout.strip() == "refused", res.stderr[-500:]
    assert MAX_PIXELS < 7000 * 7000


def test_a_detector_that_raises_costs_only_its_own_findings(storm_rows):
    clean = build_pipeline(default_config())
    broken = build_pipeline(default_config())
    victim = next(d for d in broken.detectors if d.name == "rain-total")
    original = victim.process
    calls = {"n": 0}

    def flaky(batch, state):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise IndexError("a detector bug")
        return original(batch, state)

    victim.process = flaky  # type: ignore[method-assign]
    found_clean: list = []
    found_broken: list = []
    for b in batches(storm_rows, clean.devices, 5_000):
        clean.step(b, found_clean)
    for b in batches(storm_rows, broken.devices, 5_000):
        broken.step(b, found_broken)  # never raises
    others = lambda found: [(f.detector, f.device, f.ts, int(f.level)) for f in found if f.detector != "rain-total"]  # noqa: E731
    assert others(found_broken) == others(found_clean), "the other detectors are exact: nothing fed twice"
    assert broken.failures_total == calls["n"] // 3 > 0
    assert {f.detector for f in broken.failures} == {"rain-total"} and "a detector bug" in broken.failures[0].error


def test_a_camera_detector_that_raises_does_not_stop_the_others():
    cfg = EngineConfig(cameras=CamerasConfig.model_validate(
        {"detectors": [{"type": "flame_color_motion", "id": "flames"}, {"type": "smoke_fire_onnx", "id": "model"}]}
    ))  # fmt: skip
    stage = CameraStage(cfg)
    stage.detectors[1].process = lambda *a: 1 / 0  # type: ignore[method-assign,assignment]
    frame = Frame("S1", "cam-1", NOW, np.zeros((36, 64, 3), np.uint8))
    for k in range(3):
        stage.step([Frame("S1", "cam-1", NOW + k, frame.image)])
    assert [f[0] for f in stage.failures] == ["model"] * 3
    assert "S1/cam-1" in stage.states[0].tracks, "the colour detector went on seeing the camera"


@pytest.mark.parametrize(
    "detector",
    [
        {"type": "rainfall_intensity_duration", "levels": {}},
        {"type": "rainfall_cumulative", "levels": {}},
        {"type": "antecedent_water_index", "levels": {}},
        {"type": "displacement_rate", "velocity_levels": {}, "angle_levels": {}},
        {"type": "rainfall_intensity_duration", "levels": {"yellow": float("nan")}},
    ],
)
def test_a_config_whose_detector_could_never_alarm_or_would_raise_is_refused(detector):
    with pytest.raises(ValidationError) as err:
        EngineConfig.model_validate({"detectors": [detector]})
    assert "level" in str(err.value)


def test_a_reload_never_shows_tokens_passwords_secrets_or_webhook_keys():
    from engine.config.models import ApiConfig, WebhookSinkConfig
    from engine.runners.reload import apply_config

    old = default_config()
    new = old.model_copy(
        update={
            "mqtt": old.mqtt.model_copy(update={"username": "gw", "password": "mqtt-pa55word"}),
            "api": ApiConfig(tokens=[{"name": "ops", "token": "tok-0123456789abcdef", "role": "operator"}]),
            "sinks": [WebhookSinkConfig(url="https://hooks.example.com/T0/B0/K3YK3Y?sig=abc", secret="hmac-k3y")],
        }
    )
    result = apply_config(build_pipeline(old), old, new)
    said = orjson.dumps(result.to_json()).decode()
    assert result.changes, "the changes are listed"
    for secret in ("mqtt-pa55word", "tok-0123456789abcdef", "K3YK3Y", "sig=abc", "hmac-k3y"):
        assert secret not in said
    assert "hooks.example.com" in said, "where the webhook goes is still shown"


def test_a_batch_of_bad_readings_sends_a_bounded_number_of_dead_letters_and_counts_them_all():
    from engine.config.models import IngestConfig

    cfg = EngineConfig(ingest=IngestConfig(max_payload_bytes=2_000_000))
    published: list[tuple[str, bytes]] = []
    intake = Intake(cfg, DeviceIndex(), publish=lambda t, p: published.append((t, p)))
    bad = [{"device": f"d{k}", "ts": NOW, "values": {"snow_mm": 1}} for k in range(5_000)]
    intake.handle("gw/sensors/S1/_batch", orjson.dumps({"readings": bad}), now=NOW)
    assert intake.rejected == 5_000, "every rejection is counted"
    topics = [t for t, _p in published]
    assert topics == ["gw/deadletter/unknown_metric"] * 10 + ["gw/deadletter/unknown_metric_more"]
    assert "4990 more rejected readings" in orjson.loads(published[-1][1])["detail"]
    assert sum(len(p) for _t, p in published) < 60_000, "the dead letters do not repeat the batch 5,000 times"


def test_a_too_large_payload_is_not_repeated_in_its_dead_letter():
    published: list[tuple[str, bytes]] = []
    intake = Intake(EngineConfig(), DeviceIndex(), publish=lambda t, p: published.append((t, p)))
    huge = b'{"ts": 1, "values": {"rain_mm": 1}, "pad": "' + b"x" * 2_000_000 + b'"}'
    intake.handle("gw/sensors/S1/rain-1", huge, now=NOW)
    ((topic, letter),) = published
    doc = orjson.loads(letter)
    assert topic == "gw/deadletter/too_large" and doc["payload_bytes"] == len(huge) and len(letter) < 5_000


def test_new_devices_beyond_the_limit_are_dead_lettered_not_tracked():
    from engine.config.models import IngestConfig

    cfg = EngineConfig(ingest=IngestConfig(max_devices=50))
    published: list[tuple[str, bytes]] = []
    devices = DeviceIndex()
    intake = Intake(cfg, devices, publish=lambda t, p: published.append((t, p)))
    for k in range(200):
        intake.handle(f"gw/sensors/S1/rain-{k}", orjson.dumps({"ts": NOW, "values": {"rain_mm": 0.1}}), now=NOW)
    assert len(devices) == 50
    assert intake.rejected == 150 and {t for t, _p in published} == {"gw/deadletter/device_limit"}
    intake.handle("gw/sensors/S1/rain-3", orjson.dumps({"ts": NOW + 60, "values": {"rain_mm": 0.1}}), now=NOW)
    assert intake.rejected == 150, "known devices go on"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "the config is empty"),
        ("mqtt: {url: embedded}\nmqtt: {url: mqtt://x:1883}\n", "is given twice"),
        ("a: &a [1, 1, 1]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n", "aliases (*name) are not allowed"),
        ("detectors:\n  - {type: rainfall_intensity_duration, levels: {yellow: .nan}}\n", "finite"),
        ("cameras: {devices: [{site: S1, id: ir-1, kind: thermal, gain: .nan}]}\n", "finite"),
    ],
)
def test_configs_that_used_to_be_accepted_or_to_hang_are_refused_with_the_reason(text, said):
    from engine.config.loader import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config(text, "bad.yaml", ROOT / "config")
    assert said in str(err.value)


def test_an_environment_variable_is_one_value_and_cannot_add_keys(monkeypatch):
    from engine.config.loader import parse_config

    monkeypatch.setenv("GW_USER", "gw\napi:\n  tokens: [{name: x, token: injected-token-0123456789, role: operator}]")
    cfg = parse_config("mqtt: {username: '${GW_USER}'}\n", "c.yaml", ROOT / "config")
    assert cfg.api.tokens == [], "the variable's text did not become YAML"
    assert cfg.mqtt.username is not None and cfg.mqtt.username.startswith("gw\napi:")
    monkeypatch.setenv("GW_PORT", "18830")
    assert parse_config("mqtt: {embedded_port: '${GW_PORT}'}\n", "c.yaml", ROOT / "config").mqtt.embedded_port == 18830


def test_the_mqtt_sink_counts_an_alert_delivered_only_once_the_broker_acknowledged_it(monkeypatch):
    """Published into a connection that is down, the alert stays in the outbox (it was marked delivered)."""
    from engine.config.models import MqttConfig, MqttSinkConfig
    from engine.dispatch import sinks
    from engine.ingest.mqtt_client import MqttClient

    monkeypatch.setattr(sinks, "PUBACK_TIMEOUT_S", 0.2)
    client = MqttClient(MqttConfig(url="mqtt://127.0.0.1:1"), client_id="never-connected", clean=True)
    sink = sinks.MqttSink(MqttSinkConfig(), lambda t, p, retain=False: client.publish(t, p, qos=1), "gw")
    with pytest.raises(ConnectionError, match="alert on gw/alerts/S1/landslide"):
        sink.send({"site": "S1", "hazard": "landslide", "incident_id": "i1"})


@pytest.mark.parametrize("stated", [None, 3600.0])
def test_device_health_judges_silence_by_the_interval_the_site_config_states(stated):
    """`expected_interval_s` of a device in the site config used to be ignored: a gauge that reports hourly
    but had sent a burst a minute apart was called silent after five minutes."""
    from detectors.device_health import DeviceHealth, DeviceHealthConfig
    from engine.core.batch import BatchBuilder

    devices = DeviceIndex()
    gauge = devices.slot("S1", "rain-1")
    if stated is not None:
        devices.set_expected_interval(gauge, stated)
    det = DeviceHealth(DeviceHealthConfig())
    state = det.new_state()
    b = BatchBuilder(devices)
    for k in range(5):  # a burst, a minute apart
        b.add("S1", "rain-1", NOW + 60 * k, "rain_mm", 0.2)
    for k in range(1, 40):  # another device moves the fleet's clock on by 40 minutes
        b.add("S1", "crack-1", NOW + 60 * k, "crack_mm", 1.0)
    silent = [f for f in det.process(b.take(), state) if f.evidence["fault"] == "silent"]
    assert [f.device for f in silent] == ([] if stated else ["rain-1"])


def test_a_decoder_bug_on_a_sensor_message_is_dead_lettered_and_acknowledged(monkeypatch):
    published: list[tuple[str, bytes]] = []
    intake = Intake(EngineConfig(), DeviceIndex(), publish=lambda t, p: published.append((t, p)))
    real = intake.decoder.decode

    def half_then_raise(topic, payload, now):
        real(topic, payload, now)  # adds the reading, then fails
        raise KeyError("a decoder bug")

    monkeypatch.setattr(intake.decoder, "decode", half_then_raise)
    acked: list[bool] = []
    body = orjson.dumps({"ts": NOW, "values": {"rain_mm": 0.2}})
    intake.handle("gw/sensors/S1/rain-1", body, now=NOW, ack=lambda: acked.append(True))
    assert acked == [True] and intake.pending() == 0, "acknowledged, and none of its readings kept"
    assert [orjson.loads(p)["reason"] for _t, p in published] == ["internal_error"]


def test_a_decoder_bug_on_a_bridged_lorawan_uplink_is_dead_lettered_and_acknowledged(monkeypatch):
    """The bridge's placed readings (LoRaWAN uplinks) are contained as the local intake's are: before, a decoder
    bug left the uplink unacknowledged and its first readings in the bridge's batch, sent with the next one."""
    from engine.runners.bridge import Bridge

    bridge = Bridge(EngineConfig())
    real = bridge.decoder.reading
    calls = [0]

    def second_raises(site, device, doc, now):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyError("a decoder bug")
        return real(site, device, doc, now)

    monkeypatch.setattr(bridge.decoder, "reading", second_raises)
    acked: list[bool] = []
    readings = [("S1", "rain-1", {"ts": NOW, "values": {"rain_mm": 0.2}})] * 2
    rejected = bridge.take_readings("lorawan", "application/a/device/d/event/up", b"{}", readings, [], NOW,
                                    ack=lambda: acked.append(True))  # fmt: skip
    assert [r.reason for r in rejected] == ["internal_error"] and bridge.rejected == 1
    assert acked == [True] and len(bridge.builder) == 0, "acknowledged, and none of its readings kept"
