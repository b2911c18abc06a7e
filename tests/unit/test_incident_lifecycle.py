"""The incident state machine under operator actions, fusion, silences and inhibition (property tests)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.fusion import FusionCondition, FusionRule, SiteFusion
from engine.core.findings import Finding
from engine.core.levels import Level
from engine.incidents.inhibition import InhibitRule, inhibited_by
from engine.incidents.silences import Silence
from engine.incidents.tracker import TRANSITIONS, IncidentError, IncidentPolicy, IncidentTracker

ops = st.one_of(
    st.tuples(st.just("finding"), st.floats(0, 900), st.integers(1, 4), st.sampled_from(["S1", "S2"])),
    st.tuples(st.just("ack"), st.floats(0, 60), st.integers(0, 3), st.just("")),
    st.tuples(st.just("resolve"), st.floats(0, 60), st.integers(0, 3), st.just("")),
    st.tuples(st.just("assign"), st.floats(0, 60), st.integers(0, 3), st.just("")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=80), st.floats(0, 300), st.floats(0, 1200))
def test_random_findings_and_operator_actions_keep_the_state_machine(seq, for_s, reopen):
    policy = IncidentPolicy(resolve_after_s=600, clear_after_s=300, for_s=for_s, reopen_within_s=reopen)
    tr = IncidentTracker(policy)
    t = 0.0
    events: list[dict] = []
    for op, gap, arg, site in seq:
        t += gap
        if op == "finding":
            f = Finding("det", "landslide", site, "d1", t, Level(arg), float(arg))
            events += tr.apply([f])
            inc = tr.open[(site, "landslide")]  # no finding is lost: it lands in the open incident of its key
            assert inc.findings[("det", "d1")] is f
            continue
        events += tr.advance(t)
        open_ids = sorted(i.incident_id for i in tr.open.values())
        if not open_ids:
            continue
        iid = open_ids[arg % len(open_ids)]
        try:
            if op == "ack":
                events += tr.acknowledge(iid, "ops", t)
            elif op == "resolve":
                events += tr.resolve(iid, "ops", t)
            else:
                events += tr.assign(iid, "crew-7", "ops", t)
        except IncidentError:
            assert tr.by_id[iid].state == "pending" and op != "resolve"  # a pending one is not acked or assigned
    events += tr.advance(t + 10_000)
    last_state: dict[str, str] = {}
    seqs: dict[str, list[int]] = {}
    for e in events:
        prev = last_state.get(e["incident_id"])
        if prev is not None and prev != e["state"]:
            assert (prev, e["state"]) in TRANSITIONS, (prev, e)
        if prev is None:
            assert e["state"] == "firing" and e["action"] == "fired"
        last_state[e["incident_id"]] = e["state"]
        seqs.setdefault(e["incident_id"], []).append(e["seq"])
    # none duplicated: every incident's events are numbered 1, 2, 3, … once each
    for numbers in seqs.values():
        assert numbers == list(range(1, len(numbers) + 1))
    assert all(s == "resolved" for s in last_state.values()) and not tr.open
    # one open incident per key at a time
    spans: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for iid in seqs:
        evs = [e for e in events if e["incident_id"] == iid]
        spans.setdefault((evs[0]["site"], evs[0]["hazard"]), []).append(
            (evs[0]["updated_at"], evs[-1]["updated_at"], iid)
        )
    for intervals in spans.values():
        intervals.sort()
        for a, b in itertools.pairwise(intervals):
            assert b[0] >= a[1]


def test_level_falls_only_after_the_clear_period_and_reopens_within_the_window():
    tr = IncidentTracker(IncidentPolicy(resolve_after_s=1000, clear_after_s=300, reopen_within_s=500))
    f = lambda t, lv: Finding("det", "landslide", "S1", "d1", float(t), Level(lv), 1.0)  # noqa: E731
    ev = tr.apply([f(0, 3), f(100, 1), f(200, 1), f(350, 1)])
    assert [(e["action"], e["level"]) for e in ev] == [("fired", "orange"), ("lowered", "blue")]
    assert ev[1]["updated_at"] == 300  # 300 s after the last orange finding
    ev = tr.advance(1350 + 1)
    assert [(e["action"], e["updated_at"]) for e in ev] == [("resolved", 1350)]
    ev = tr.apply([f(1700, 2)])
    assert [(e["action"], e["state"], e["incident_id"]) for e in ev] == [("reopened", "firing", ev[0]["incident_id"])]
    assert ev[0]["seq"] == 4 and ev[0]["incident_id"] in tr.by_id


def test_raise_after_acknowledgement_asks_again():
    tr = IncidentTracker(IncidentPolicy())
    (fired,) = tr.apply([Finding("det", "landslide", "S1", "d1", 0.0, Level.YELLOW, 1.0)])
    (ack,) = tr.acknowledge(fired["incident_id"], "ops", 10.0)
    assert ack["state"] == "acknowledged" and ack["actor"] == "ops"
    assert tr.acknowledge(fired["incident_id"], "ops", 11.0) == []
    (raised,) = tr.apply([Finding("det", "landslide", "S1", "d1", 20.0, Level.RED, 2.0)])
    assert (raised["action"], raised["state"]) == ("raised", "firing")
    with pytest.raises(IncidentError):
        tr.resolve("nope", "ops", 30.0)


def test_fusion_raises_landslide_on_rain_and_marks_faulty_evidence():
    rule = FusionRule(
        id="rain+slope", hazard="landslide", within_s=3600, raise_by=1,
        all_of=[FusionCondition(hazard="rainstorm", min_level="orange"), FusionCondition(hazard="landslide")],
    )  # fmt: skip
    fusion = SiteFusion([rule])
    rain = Finding("rain-intensity", "rainstorm", "S1", "rain-1", 0.0, Level.ORANGE, 3.0)
    slope = Finding("crack-velocity", "landslide", "S1", "crack-1", 600.0, Level.YELLOW, 1.5)
    out = fusion.apply([rain, slope])
    derived = out[-1]
    assert (derived.detector, derived.hazard, derived.level) == ("fusion:rain+slope", "landslide", Level.ORANGE)
    assert {c["detector"] for c in derived.evidence["contributors"]} == {"rain-intensity", "crack-velocity"}
    # too far apart: nothing derived; at another site: nothing derived
    late = Finding("crack-velocity", "landslide", "S1", "crack-1", 5000.0, Level.YELLOW, 1.5)
    other = Finding("crack-velocity", "landslide", "S2", "crack-1", 700.0, Level.YELLOW, 1.5)
    assert [f.detector for f in fusion.apply([other, late])] == ["crack-velocity", "crack-velocity"]
    # a device in fault makes its findings suspect; suspect-only evidence confirms nothing
    fault = Finding("device-health", "device_fault", "S3", "crack-1", 0.0, Level.YELLOW, 1.0)
    r3 = Finding("rain-intensity", "rainstorm", "S3", "rain-1", 10.0, Level.ORANGE, 3.0)
    s3 = Finding("crack-velocity", "landslide", "S3", "crack-1", 20.0, Level.RED, 3.0)
    out = fusion.apply([fault, r3, s3])
    assert out[2].evidence["suspect_device"] is True and out[-1].detector.startswith("fusion:")
    tr = IncidentTracker(IncidentPolicy())
    ev = tr.apply([out[2]])
    assert ev[0]["confidence"] == "low"


def test_silence_windows_and_matchers():
    sunday_2am = datetime(2026, 11, 22, 2, 0, tzinfo=UTC).timestamp()
    weekly = Silence(id="w", hazard="device_fault", cron="0 2 * * SUN", duration_s=3600)
    assert weekly.active(sunday_2am) and weekly.active(sunday_2am + 3599)
    assert not weekly.active(sunday_2am - 1) and not weekly.active(sunday_2am + 3600)
    assert weekly.active(sunday_2am + 7 * 86400 + 60)
    shanghai = Silence(id="s", cron="0 2 * * SUN", duration_s=3600, timezone="Asia/Shanghai")
    assert shanghai.active(sunday_2am - 8 * 3600) and not shanghai.active(sunday_2am)
    fixed = Silence(id="f", site="S0*", device="crack-*", starts_at=100, ends_at=200)
    assert fixed.active(150) and not fixed.active(200)
    assert fixed.matches("S01", "landslide", {"rain-1", "crack-2"}, "red")
    assert not fixed.matches("S11", "landslide", {"crack-2"}, "red")
    assert not fixed.matches("S01", "landslide", {"rain-1"}, "red")
    with pytest.raises(ValueError, match="cron"):
        Silence(id="bad", cron="every sunday", duration_s=60)
    with pytest.raises(ValueError, match="both"):
        Silence(id="bad", cron="0 2 * * SUN")


def test_red_landslide_inhibits_yellow_rain_at_the_same_site_only():
    rules = [InhibitRule(source_hazard="landslide", target_hazard="rainstorm")]
    assert inhibited_by(rules, ("S1", "rainstorm", "yellow"), [("S1", "landslide", "red")])
    assert not inhibited_by(rules, ("S1", "rainstorm", "orange"), [("S1", "landslide", "red")])
    assert not inhibited_by(rules, ("S1", "rainstorm", "yellow"), [("S1", "landslide", "orange")])
    assert not inhibited_by(rules, ("S2", "rainstorm", "yellow"), [("S1", "landslide", "red")])


def test_dispatch_reaches_each_receiver_once_refuses_a_resolved_incident_and_later_news_reaches_them_all():
    from engine.config.models import EngineConfig
    from engine.dispatch.dispatcher import Dispatcher

    site = dict(id="S1", lat=29.5, lon=106.5, grid="g1", town="t1", district="d1")
    cfg = EngineConfig(sites=[site], routing=[dict(first="grid", ack_within_s=600, repeat_s=10_000)])
    tracker = IncidentTracker(cfg.incidents)
    desk = Dispatcher(cfg, tracker)
    events = tracker.apply([Finding("d", "landslide", "S1", "crack-1", 0.0, Level.ORANGE, 1.0)])
    (fired,) = desk.handle(events, now=0.0)
    iid = fired.event["incident_id"]
    assert fired.detail["receivers"] == ["grid:g1"]
    (sent,) = desk.dispatch(iid, "ops", 10.0)
    assert sent.detail["receivers"] == ["grid:g1", "town:t1", "district:d1", "city:city"]
    assert desk.dispatch(iid, "ops", 20.0) == [], "pressing dispatch again reaches nobody twice"
    (ack,) = desk.acknowledge(iid, "ops", 30.0)
    assert ack.detail["receivers"] == ["grid:g1", "town:t1", "district:d1", "city:city"]
    (done,) = desk.resolve(iid, "ops", 40.0)
    assert done.detail["receivers"] == ["grid:g1", "town:t1", "district:d1", "city:city"], "every tier hears the end"
    with pytest.raises(IncidentError, match="only an open incident"):
        desk.dispatch(iid, "ops", 50.0)
