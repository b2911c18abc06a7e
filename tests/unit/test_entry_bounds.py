"""Every way in is bounded by the same rules (engine/ingest/bounds.py): one message cannot hang the engine,
backdate an incident's deadlines into a storm of reminders, or wedge the store with a NUL byte."""

from __future__ import annotations

import threading

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.config.models import EngineConfig
from engine.core.batch import BatchBuilder
from engine.core.devices import DeviceIndex
from engine.core.findings import Finding
from engine.core.levels import Level
from engine.dispatch.actions import OperatorAction, apply_action
from engine.dispatch.dispatcher import Dispatcher
from engine.incidents.reports import GridReport, ReportError, accept, finding_of, mqtt_report
from engine.incidents.tracker import GRID_REPORT, IncidentTracker
from engine.ingest.bounds import TimeWindow, plain_name, plain_text, without_nul
from engine.ingest.decode import SensorDecoder
from engine.ingest.topics import Topic
from engine.store.store import Notification, Store

SITES = [dict(id="S1", lat=29.5, lon=106.5, grid="g1", town="t1", district="d1")]
NOW = 1_765_000_000.0  # December 2025
DAY = 86400.0


def config() -> EngineConfig:
    return EngineConfig.model_validate(
        {"sites": SITES, "routing": [dict(first="grid", ack_within_s=600, repeat_s=3600)]}
    )


def bounded(fn, timeout_s: float = 10.0):
    """``fn()`` in a thread that must finish in time: a hang fails the test instead of the suite."""
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout_s)
    assert not t.is_alive(), f"did not finish in {timeout_s} s: the engine would hang here"
    return out[0]


def test_a_finding_at_minus_1e300_does_not_hang_the_dispatcher():
    cfg = config()
    tracker = IncidentTracker(cfg.incidents)
    desk = Dispatcher(cfg, tracker)
    f = Finding(GRID_REPORT, "landslide", "S1", "someone", -1e300, Level.ORANGE, 1.0, {"report_id": "x"})
    notes = bounded(lambda: desk.report(f, NOW) + desk.tick(NOW) + desk.tick(NOW + 7200))
    actions = [n.event["action"] for n in notes]
    assert actions[0] == "fired" and len(actions) <= 6, actions


def test_late_news_counts_its_deadlines_from_its_arrival_not_from_its_own_time():
    cfg = config()
    tracker = IncidentTracker(cfg.incidents)
    desk = Dispatcher(cfg, tracker)
    desk.tick(NOW)  # the engine clock stands at NOW
    late = Finding("crack", "landslide", "S1", "crack-1", NOW - 6 * DAY, Level.ORANGE, 1.0)
    notes = desk.handle(tracker.apply([late]), NOW) + desk.tick(NOW)
    assert [n.event["action"] for n in notes] == ["fired"], "six days of reminders were sent at once"
    assert [n.event["action"] for n in desk.tick(NOW + 600)] == ["escalated"]


def test_in_order_data_keeps_every_deadline_at_its_own_time():
    """A replay's batch spans hours of data time: its deadlines are the data's, as before."""
    cfg = config()
    tracker = IncidentTracker(cfg.incidents)
    desk = Dispatcher(cfg, tracker)
    events = tracker.apply([Finding("crack", "landslide", "S1", "crack-1", NOW, Level.ORANGE, 1.0)])
    desk.handle(events, NOW + 5000)
    assert [(n.event["action"], n.at) for n in desk.tick(NOW + 9000)] == [
        ("escalated", NOW + 600), ("escalated", NOW + 1200), ("escalated", NOW + 1800), ("reminder", NOW + 5400),
        ("reminder", NOW + 9000),
    ]  # fmt: skip


def test_a_report_from_another_era_is_refused_and_an_old_one_is_news_now():
    cfg = config()
    for ts in (-1e300, -1.0, NOW - 30 * DAY, NOW + 3600, float("nan")):
        body = orjson.dumps({"category": "crack", "ts": ts}) if ts == ts else b'{"category": "crack", "ts": NaN}'
        with pytest.raises(ReportError):
            mqtt_report(Topic("reports", "S1", "gw-1"), body, cfg, NOW, None)
    spec = mqtt_report(Topic("reports", "S1", "gw-1"), orjson.dumps({"category": "crack", "ts": NOW - DAY}), cfg, NOW,
                       None)  # fmt: skip
    assert spec["evidence"]["seen_at"] == NOW - DAY
    assert finding_of(spec, NOW).ts == NOW, "the incident starts when the report arrives"
    tracker = IncidentTracker(cfg.incidents)
    desk = Dispatcher(cfg, tracker)
    notes = apply_action(desk, OperatorAction(kind="report", actor="gw-1", report=spec), NOW) + desk.tick(NOW + 1)
    assert [n.event["action"] for n in notes] == ["fired"]


def test_report_ids_are_random_so_nobody_can_name_another_s_report():
    cfg = config()
    a = accept(GridReport(category="crack", site="S1", text="same", ts=NOW), cfg, "r", "mqtt", NOW, None)
    b = accept(GridReport(category="crack", site="S1", text="same", ts=NOW), cfg, "r", "mqtt", NOW, None)
    assert a["evidence"]["report_id"] != b["evidence"]["report_id"]
    assert a["content_key"] == b["content_key"], "a redelivery is still recognised as the same report"


@pytest.mark.parametrize("field", ["reporter", "text", "category"])
def test_control_characters_are_refused_in_a_report(field):
    with pytest.raises(ValidationError, match="control character U\\+0000"):
        GridReport.model_validate({"category": "crack", "site": "S1", field: "a\x00b"})


def test_the_same_time_rule_for_readings_iso_times_and_batches():
    dec = SensorDecoder(config().ingest, BatchBuilder(DeviceIndex()))

    def reasons(ts: object) -> list[str]:
        body = orjson.dumps({"ts": ts, "values": {"rain_mm": 0.2}})
        return [r.reason for r in dec.decode(Topic("sensors", "S1", "rain-1"), body, NOW)]

    assert reasons(NOW) == []
    assert reasons("1900-01-01T00:00:00+00:00") == ["bad_ts"], "an ISO date of 1900 is as invalid as -1"
    assert reasons("0001-01-01T00:00:00+00:00") == ["bad_ts"]
    assert reasons(-1) == ["bad_ts"]
    assert reasons(NOW - 8 * DAY) == ["stale_ts"]
    assert reasons(NOW - 6 * DAY) == [], "a week of a device's backlog is taken"
    assert reasons(NOW + 301) == ["future_ts"]


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1e10))
def test_a_time_window_accepts_exactly_the_plausible_times(ts, now):
    w = TimeWindow(max_future_s=300, max_past_s=DAY)
    w.observe(now)
    ok = w.reason(ts, now) is None
    assert ok == (ts == ts and 0 <= ts <= now + 300 and ts >= now - DAY)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec=None), max_size=40) | st.sampled_from(["a\u202eb", "\u2066x", "ok\u200f"]))
def test_plain_text_and_names_refuse_control_characters_and_keep_the_rest(s):
    bidi = {"\u061c", "\u2028", "\u2029", *map(chr, range(0x200B, 0x2010)), *map(chr, range(0x202A, 0x202F)),
            *map(chr, range(0x2066, 0x206A))}  # fmt: skip
    controls = {c for c in s if ord(c) < 32 or ord(c) == 127 or c in bidi or 0xD800 <= ord(c) <= 0xDFFF}
    try:
        assert plain_text(s) == s
    except ValueError:
        assert controls - {"\t", "\n", "\r"}
    try:
        assert plain_name(s) == s
    except ValueError:
        assert controls


def test_the_store_writes_a_nul_that_got_in_and_keeps_writing(store_url):
    """PostgreSQL refuses NUL in text: one such actor used to fail every later write of the store."""
    store = Store(store_url)
    store.migrate()
    event = {
        "incident_id": "i1", "site": "S1", "hazard": "landslide", "level": "red", "state": "firing",
        "opened_at": NOW, "updated_at": NOW, "score": 1.0, "action": "assigned", "actor": "ops\x00",
        "assigned_to": "x\x00y", "findings": [{"detector": "d\x00", "device": "c", "ts": NOW, "level": "red",
                                                 "score": 1.0, "evidence": {"text\x00": "a\x00"}}],
    }  # fmt: skip
    store.record([Notification(event, NOW, True, {"receivers": ["grid:g1"], "comment": "\x00"})], ["log"])
    later = {**event, "incident_id": "i2", "actor": "engine", "assigned_to": None, "findings": []}
    store.record([Notification(later, NOW, True, {"receivers": ["grid:g1"]})], ["log"])
    assert {i["incident_id"] for i in store.list_incidents()} == {"i1", "i2"}
    assert store.incident("i1")["assigned_to"] == "x\ufffdy"  # type: ignore[index]
    assert without_nul(["\x00"]) == ["\ufffd"]


def test_every_metric_of_the_engine_is_on_the_registry_metrics_serves():
    from prometheus_client import Counter, Gauge, Histogram

    from engine import metrics

    served = set(metrics.REGISTRY._names_to_collectors.values())
    defined = {n: m for n, m in vars(metrics).items() if isinstance(m, Counter | Gauge | Histogram)}
    assert {"TASK_FAILURES", "CHECKPOINT_FAILURES", "DETECTOR_ERRORS", "OUTBOX_DEAD", "STORE_POISON"} <= set(defined)
    assert [n for n, m in defined.items() if m not in served] == []


def test_a_notification_the_store_refuses_is_dropped_and_the_rest_are_written(tmp_path):
    from sqlalchemy.exc import DataError

    cfg = config()
    store = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    store.migrate()
    tracker = IncidentTracker(cfg.incidents)
    desk = Dispatcher(cfg, tracker, store)
    real = store.record

    def picky(notes, *args, **kwargs):
        if any(n.event.get("actor") == "poison" for n in notes):
            raise DataError("INSERT", {}, ValueError("the store cannot hold this"))
        return real(notes, *args, **kwargs)

    store.record = picky  # type: ignore[method-assign]
    (fired,) = desk.handle(tracker.apply([Finding("crack", "landslide", "S1", "c1", NOW, Level.ORANGE, 1.0)]), NOW)
    iid = fired.event["incident_id"]
    desk.assign(iid, "poison", "poison", NOW + 1)
    desk.acknowledge(iid, "ops", NOW + 2)
    assert desk.store_ok and desk.unstored == []
    assert store.incident(iid)["acknowledged_by"] == "ops"  # type: ignore[index]


def _npy(header: dict[str, object], body: bytes) -> bytes:
    text = repr(header).encode() + b" " * 8 + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + body


def test_a_npy_frame_is_sized_by_numpy_s_own_header_and_must_be_as_long_as_it_says():
    from engine.ingest.frames import FrameError, checked_size, decode

    # 192 bytes whose header claims one pixel of a type that is itself a 100000x100000 array: np.load of it
    # raised MemoryError in the camera stage and lost every queued frame
    bomb = _npy({"descr": [("f", "<f8", (100000, 100000))], "fortran_order": False, "shape": (1, 1)}, b"\x00" * 64)
    for payload in (
        bomb,
        _npy({"descr": "<u2", "fortran_order": False, "shape": (4000, 4000)}, b"\x00" * 64),  # short
        _npy({"descr": "|O", "fortran_order": False, "shape": (2, 2)}, b"\x00" * 32),  # objects
        _npy({"descr": "<u2", "fortran_order": False, "shape": (8,)}, b"\x00" * 16),  # not a frame
    ):
        with pytest.raises(FrameError, match="not_an_image"):
            checked_size(payload)
    import io

    buf = io.BytesIO()
    np.save(buf, np.full((12, 16), 3000, np.uint16))
    assert checked_size(buf.getvalue()) == ("npy", 16, 12)
    assert decode(buf.getvalue(), thermal=True, gain=0.01, offset=-10.0).shape == (12, 16)


def test_a_jpeg_or_tiff_whose_header_could_be_read_two_ways_is_refused():
    import cv2

    from engine.ingest.frames import FrameError, checked_size

    _ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    good = buf.tobytes()
    assert checked_size(good) == ("jpeg", 8, 8)
    # a fake small frame header hidden behind a stuffed FF 00 before the real one
    trick = good[:2] + b"\xff\x00" + b"\xff\xc0\x00\x11\x08\x00\x08\x00\x08\x03" + good[2:]
    with pytest.raises(FrameError, match="not_an_image"):
        checked_size(trick)
    tiff = bytearray(b"II*\x00\x08\x00\x00\x00\x03\x00")
    for tag, value in ((256, 8), (256, 60000), (257, 60000)):
        tiff += tag.to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
        tiff += value.to_bytes(2, "little") + b"\x00\x00"
    with pytest.raises(FrameError, match="width tag twice"):
        checked_size(bytes(tiff))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 200), st.sampled_from(["png", "jpg", "npy", "tiff"]))
def test_a_damaged_frame_is_refused_with_a_reason_never_raises_anything_else(noise, at, kind):
    import io

    import cv2

    from engine.ingest.frames import FrameError, decode

    if kind == "npy":
        buf = io.BytesIO()
        np.save(buf, np.full((6, 5), 3000, np.uint16))
        data = buf.getvalue()
    else:
        _ok, enc = cv2.imencode(f".{kind}", np.full((6, 5, 3), 90, np.uint8))
        data = enc.tobytes()
    damaged = data[:at] + noise + data[at + len(noise) :]
    try:
        out = decode(damaged, thermal=kind in ("npy", "tiff"), gain=0.01, offset=-10.0)
    except FrameError as exc:
        assert exc.reason in ("not_an_image", "too_many_pixels", "implausible_temperature")
    else:
        assert out.shape[0] * out.shape[1] <= 40_000_000


def test_invented_camera_ids_are_capped_and_the_newest_frames_kept_within_their_memory():
    import cv2

    from engine.ingest.camera_intake import CameraIntake

    cfg = EngineConfig.model_validate(
        {"sites": SITES, "cameras": {"max_cameras": 3, "latest_frames_mb": 0.05,
                                     "devices": [{"site": "S1", "id": "tower", "kind": "visible"}]}}
    )  # fmt: skip
    rejected: list[str] = []
    intake = CameraIntake(cfg, lambda rej, topic, payload, now: rejected.extend(r.reason for r in rej))
    _ok, enc = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (80, 80, 3), np.uint8))
    frame = enc.tobytes()  # ~19 KB that PNG cannot shrink
    for i in range(10):
        cam = f"invented-{i}"
        intake.handle(Topic("cameras", "S1", cam), f"gw/cameras/S1/{cam}", frame, {"ts": str(NOW + i)}, NOW + i)
    assert rejected == ["camera_limit"] * 7
    intake.handle(Topic("cameras", "S1", "tower"), "gw/cameras/S1/tower", frame, {"ts": str(NOW + 20)}, NOW + 20)
    assert rejected == ["camera_limit"] * 7, "a configured camera always may send"
    assert intake._latest_bytes <= 50_000 and ("S1", "tower") in intake.latest
    assert sum(len(f.payload) for f in intake.latest.values()) == intake._latest_bytes


def test_a_dead_letter_is_sent_for_a_reading_nested_too_deep_or_too_large_to_repeat():
    from engine.ingest.decode import Rejection
    from engine.ingest.intake import deadletter_message

    deep: object = 1
    for _ in range(400):
        deep = {"x": deep}
    for reading, key in ((deep, "reading_unsent"), ({"values": "v" * 100_000}, "reading_cut"), ({"a": 1}, "reading")):
        doc = orjson.loads(deadletter_message(Rejection("malformed_reading", "d", "dev", reading), "t", b"", NOW))
        assert key in doc and len(orjson.dumps(doc)) < 10_000


def test_a_store_url_s_password_never_shows_in_a_reload_s_diff():
    from engine.runners.reload import config_diff

    old = {"store": {"url": "postgresql+psycopg://gw:old-s3cret@db/gw"}}
    new = {"store": {"url": "postgresql+psycopg://gw:new-s3cret@db/gw"}}
    (line,) = config_diff(old, new)
    assert "s3cret" not in line and "gw:•••@db" in line


def test_a_camera_url_s_query_credentials_never_show_in_a_reload_s_diff():
    """Many cameras take their user and password in the URL's query (rtsp://cam/live?user=admin&pwd=…)."""
    from engine.runners.reload import config_diff

    cam = {"site": "S1", "id": "tower", "source": {"url": "rtsp://10.0.0.5:554/live?user=admin&pwd=old-s3cret"}}
    old = {"cameras": {"devices": [cam]}}
    new = {"cameras": {"devices": [{**cam, "source": {"url": "rtsp://10.0.0.5:554/live?user=admin&pwd=new-s3cret"}}]}}
    lines = config_diff(old, new)
    assert lines and not any("s3cret" in line or "admin" in line for line in lines), lines
    assert "rtsp://10.0.0.5:554/live?user=•••&pwd=•••" in lines[0]


def test_a_csv_row_s_error_names_the_file_and_line(tmp_path):
    from engine.config.loader import ConfigError, load_config

    (tmp_path / "sites.csv").write_text(
        "id,name,lat,lon,grid,town,district\nS1,a,29.5,106.5,g,t,d\nS2,b,north,1,g,t,d\n"
    )
    (tmp_path / "gw.yaml").write_text("sites_file: sites.csv\n")
    with pytest.raises(ConfigError, match=r"sites\.csv:3: lat: Input should be a valid number"):
        load_config(tmp_path / "gw.yaml")


@pytest.mark.parametrize("levels", [{"red": float("nan")}, {"red": float("inf")}, {}])
def test_threshold_levels_must_be_finite_numbers(levels):
    from detectors.threshold import ThresholdRule

    with pytest.raises(ValidationError):
        ThresholdRule(metric="water_level_m", levels=levels)


@pytest.mark.parametrize("levels", [{"red": -1.0}, {"blue": 0.0, "red": 1.0}])
def test_rain_levels_that_are_amounts_or_ratios_must_be_above_zero(levels):
    from detectors.geohazard.intensity_duration import RainfallIntensityDurationConfig

    with pytest.raises(ValidationError, match="above zero"):
        RainfallIntensityDurationConfig(levels=levels)


def test_a_silence_whose_window_no_calendar_holds_mutes_nothing_and_never_raises():
    from engine.incidents.silences import Silence

    # made under older rules and kept in a store: Silence.active raised OverflowError inside the batch step
    s = Silence.model_construct(id="old", site="S1", cron="* * * * *", duration_s=1e300, starts_at=0.0,
                                ends_at=None, timezone="UTC", hazard=None, device=None, level=None)  # fmt: skip
    assert s.active(NOW) is False
    with pytest.raises(ValidationError, match="at most 7 days"):
        Silence(id="s", site="S1", cron="* * * * *", duration_s=30 * DAY)


def test_a_thermal_frame_with_infinities_or_a_strip_shape_is_refused():
    import io

    from engine.ingest.frames import FrameError, decode

    hot = np.full((120, 160), 20.0, np.float32)
    hot[10:30, 10:40] = np.inf
    buf = io.BytesIO()
    np.save(buf, hot)
    with pytest.raises(FrameError, match="NaN or infinite"):
        decode(buf.getvalue(), thermal=True)
    strip = io.BytesIO()
    np.save(strip, np.zeros((1, 2_000_000), np.uint8))  # its blur ran for minutes in the camera stage
    with pytest.raises(FrameError, match="no camera frame"):
        decode(strip.getvalue(), thermal=True, gain=0.01, offset=-10.0)


def test_the_store_writes_non_finite_evidence_as_null(store_url):
    """PostgreSQL refused `Infinity` in JSON: the refused notification was a RED fire that reached no one."""
    store = Store(store_url)
    store.migrate()
    finding = {"detector": "thermal", "device": "ir-1", "ts": NOW, "level": "red", "score": 1.0,
               "evidence": {"peak_c": float("inf"), "mean_c": float("nan")}}  # fmt: skip
    event = {"incident_id": "f1", "site": "S1", "hazard": "fire", "level": "red", "state": "firing",
             "opened_at": NOW, "updated_at": NOW, "score": 1.0, "action": "fired", "findings": [finding]}  # fmt: skip
    assert store.record([Notification(event, NOW, True, {"receivers": ["grid:g1"]})], ["log"]) == 1
    (stored,) = store.incident("f1")["findings"]  # type: ignore[index]
    assert stored["evidence"] == {"peak_c": None, "mean_c": None}


def test_an_incident_muted_by_a_silence_that_ends_is_told_then():
    """A RED that opened during a 15-second silence stayed silent after it."""
    from engine.incidents.silences import Silence

    cfg = config()
    tracker = IncidentTracker(cfg.incidents)
    desk = Dispatcher(cfg, tracker)
    desk.api_silences = [Silence(id="crew", site="S1", starts_at=NOW - 1, ends_at=NOW + 15)]
    (fired,) = desk.handle(tracker.apply([Finding("crack", "landslide", "S1", "c1", NOW, Level.RED, 1.0)]), NOW)
    assert not fired.notify and fired.detail["silenced_by"] == "crew"
    assert desk.tick(NOW + 10) == [], "still silenced"
    (told,) = desk.tick(NOW + 16)
    assert told.notify and told.detail["unmuted"] == "crew" and told.event["level"] == "red"
    assert desk.tick(NOW + 17) == [], "once"


def test_a_thermal_frame_of_more_pixels_than_a_thermal_core_has_is_refused():
    import cv2

    from engine.ingest.frames import FrameError, decode

    _ok, png = cv2.imencode(".png", np.full((2100, 2100), 2000, np.uint16))  # 4.4 MP: its blur took minutes
    with pytest.raises(FrameError, match="too_many_pixels"):
        decode(png.tobytes(), thermal=True, gain=0.01, offset=-10.0)
    assert decode(png.tobytes()).shape == (2100, 2100, 3), "as a visible frame it is fine"
