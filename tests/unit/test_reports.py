"""Grid reports: a person's report is checked, located, capped, and opens or joins an incident that only a
person closes."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.models import EngineConfig
from engine.core.findings import Finding
from engine.core.levels import Level
from engine.dispatch.actions import OperatorAction, apply_action
from engine.dispatch.dispatcher import Dispatcher
from engine.incidents.reports import GridReport, ReportError, accept, finding_of, mqtt_report
from engine.incidents.tracker import IncidentPolicy, IncidentTracker
from engine.ingest.topics import Topic

SITES = [
    dict(id="S1", lat=29.5, lon=106.5, grid="g1", town="t1", district="d1"),
    dict(id="S2", lat=29.5, lon=106.6, grid="g2", town="t1", district="d1"),
]


def config(**reports: object) -> EngineConfig:
    return EngineConfig.model_validate(
        {"sites": SITES, "routing": [dict(first="grid", ack_within_s=600, repeat_s=10_000)], "reports": reports}
    )


def jpeg() -> str:
    ok, buf = cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8))
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


def test_a_report_by_position_is_filed_under_the_nearest_site_and_its_photo_is_kept(tmp_path):
    report = GridReport(category="crack", text="new crack above the road", lat=29.5004, lon=106.5999, photo=jpeg())
    spec = accept(report, config(), "grid-worker-7", "api", 1000.0, tmp_path)
    assert (spec["site"], spec["hazard"], spec["level"], spec["ts"]) == ("S2", "landslide", "yellow", None)
    assert finding_of(spec, 77.0).ts == 77.0, "a report with no time of its own happens at the applying engine's clock"
    ev = spec["evidence"]
    assert ev["photo"] == f"/api/reports/photos/{ev['report_id']}.jpg"
    assert (tmp_path / f"{ev['report_id']}.jpg").read_bytes()[:2] == b"\xff\xd8"
    with pytest.raises(ReportError, match=r"no site within 2000 m .* \(nearest: S2, \d+ m\); name the site"):
        accept(GridReport(category="crack", lat=29.6, lon=106.6), config(), "r", "api", 0.0, None)


def test_a_report_is_refused_with_what_to_change():
    cfg = config()
    with pytest.raises(ReportError, match="unknown category 'meteor'; one of: crack, fire, flood"):
        accept(GridReport(category="meteor", site="S1"), cfg, "r", "api", 0.0, None)
    with pytest.raises(ReportError, match="no site 'S9'"):
        accept(GridReport(category="crack", site="S9"), cfg, "r", "api", 0.0, None)
    with pytest.raises(ReportError, match="the photo is not an image"):
        bad = base64.b64encode(b"MZ\x90\x00 an executable").decode()
        accept(GridReport(category="crack", site="S1", photo=bad), cfg, "r", "api", 0.0, None)
    with pytest.raises(ReportError, match="ahead of the engine clock"):
        accept(GridReport(category="crack", site="S1", ts=10_000.0), cfg, "r", "api", 0.0, None)
    with pytest.raises(ValueError, match="needs `site`, or `lat` and `lon`"):
        GridReport(category="crack")
    with pytest.raises(ValueError, match="default_level red is above max_level orange"):
        config(default_level="red")


def test_the_level_a_reporter_asks_for_is_capped_unless_an_operator_files_it():
    cfg = config()
    asked = GridReport(category="rockfall", site="S1", level="red")
    assert accept(asked, cfg, "resident", "mqtt", 0.0, None)["level"] == "orange"
    assert accept(asked, cfg, "ops", "api", 0.0, None, may_raise_to_red=True)["level"] == "red"


def test_a_reported_incident_fires_at_once_and_stays_open_until_a_person_resolves_it():
    cfg = config()
    tracker = IncidentTracker(IncidentPolicy(for_s=600, resolve_after_s=3600))
    desk = Dispatcher(cfg, tracker)
    spec = accept(GridReport(category="crack", site="S1", text="crack"), cfg, "gw-7", "api", 100.0, None)
    (fired,) = apply_action(desk, OperatorAction(kind="report", actor="gw-7", report=spec), 100.0)
    assert (fired.event["state"], fired.event["level"], fired.detail["receivers"]) == ("firing", "yellow", ["grid:g1"])
    iid = fired.event["incident_id"]
    # a sensor's finding joins it; then days of quiet data do not close it
    desk.handle(tracker.apply([Finding("crack", "landslide", "S1", "crack-1", 200.0, Level.YELLOW, 1.0)]), 200.0)
    assert desk.handle(tracker.advance(10 * 86400.0), 10 * 86400.0) == []
    assert tracker.get(iid) is not None and tracker.get(iid).state == "firing"  # type: ignore[union-attr]
    # a second report on the open incident is news to everyone who has it, with who reported
    stones = GridReport(category="rockfall", site="S1", text="stones on the road")
    more = accept(stones, cfg, "res-2", "api", 300.0, None)
    (joined,) = desk.report(finding_of(more, 300.0), 300.0)
    assert (joined.event["action"], joined.event["incident_id"], joined.event["actor"]) == ("reported", iid, "res-2")
    (done,) = desk.resolve(iid, "ops", 400.0)
    assert done.event["state"] == "resolved"
    # without the report, the sensor's incident resolves on quiet data as before
    t2 = IncidentTracker(IncidentPolicy(resolve_after_s=3600))
    t2.apply([Finding("crack", "landslide", "S1", "crack-1", 0.0, Level.YELLOW, 1.0)])
    assert [e["action"] for e in t2.advance(7200.0)] == ["resolved"]


def test_an_mqtt_report_takes_site_and_reporter_from_its_topic():
    cfg = config()
    body = orjson.dumps({"category": "smoke", "text": "smoke on the ridge", "ts": 50.0, "lat": 29.5, "lon": 106.6})
    spec = mqtt_report(Topic("reports", "_nearest", "resident-42"), body, cfg, 100.0, None)
    assert (spec["site"], spec["hazard"], spec["reporter"], spec["ts"]) == ("S2", "fire", "resident-42", None)
    assert spec["evidence"]["seen_at"] == 50.0, "when it was seen is kept; the incident starts when it arrives"
    assert spec["evidence"]["channel"] == "mqtt"
    named = mqtt_report(Topic("reports", "S1", "gw-1"), b'{"category": "flood"}', cfg, 100.0, None)
    assert (named["site"], named["hazard"], named["ts"]) == ("S1", "waterlogging", None)
    with pytest.raises(ReportError, match="the topic's"):
        mqtt_report(Topic("reports", "S1", "gw-1"), b'{"category": "flood", "site": "S2"}', cfg, 100.0, None)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["category", "text", "lat", "lon", "ts", "level", "photo", "x"]),
            st.one_of(
                st.none(), st.floats(allow_nan=True), st.text(max_size=20), st.integers(-(2**53), 2**53), st.booleans()
            ),
            max_size=6,
        ).map(orjson.dumps),
    ),
    st.sampled_from(["S1", "S9", "_nearest"]),
)
def test_the_mqtt_report_parser_accepts_or_refuses_with_a_reason_and_never_crashes(payload, site):
    try:
        spec = mqtt_report(Topic("reports", site, "who"), payload, config(), 1e6, None)
    except ReportError as exc:
        assert str(exc)
    else:
        assert spec["site"] in ("S1", "S2") and spec["level"] in ("blue", "yellow", "orange")


def test_a_report_through_the_bridge_moves_no_data_time_and_happens_at_the_owner_s_clock():
    from engine.incidents.reports import stamped
    from engine.runners.records import decode_findings_record, findings_record

    spec = mqtt_report(Topic("reports", "S1", "gw-1"), b'{"category": "crack"}', config(), 1e9, None)
    wm, ((f, at),) = decode_findings_record(findings_record([(finding_of(spec), None)], None))
    assert wm == at == f.ts == float("-inf")
    assert stamped(f, 500.0).ts == 500.0 and stamped(stamped(f, 500.0), 900.0).ts == 500.0
