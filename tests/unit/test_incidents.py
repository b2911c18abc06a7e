"""The incident tracker: grouping, levels that only rise, pending, resolution; property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.core.findings import Finding
from engine.core.levels import Level
from engine.incidents.tracker import IncidentPolicy, IncidentTracker


def finding(ts, level, site="S1", hazard="landslide", device="d1"):
    return Finding("det", hazard, site, device, float(ts), Level(level), float(level))


def test_one_incident_per_site_and_hazard_with_rising_level():
    tr = IncidentTracker(IncidentPolicy(resolve_after_s=100))
    ev = tr.apply([finding(0, 1), finding(10, 3, device="d2"), finding(20, 2), finding(30, 4)])
    assert [(e["level"], e["state"]) for e in ev] == [("blue", "firing"), ("orange", "firing"), ("red", "firing")]
    assert len({e["incident_id"] for e in ev}) == 1
    assert {f["device"] for f in ev[-1]["findings"]} == {"d1", "d2"}


def test_pending_until_for_duration():
    tr = IncidentTracker(IncidentPolicy(for_s=60, resolve_after_s=600))
    assert tr.apply([finding(0, 2), finding(30, 2)]) == []
    (ev,) = tr.apply([finding(60, 2)])
    assert ev["state"] == "firing" and ev["opened_at"] == 0


def test_pending_that_never_fires_resolves_silently():
    tr = IncidentTracker(IncidentPolicy(for_s=60, resolve_after_s=100))
    assert tr.apply([finding(0, 2)], watermark=1000) == []
    assert not tr.open


def test_below_min_level_ignored():
    tr = IncidentTracker(IncidentPolicy(min_level="orange"))
    assert tr.apply([finding(0, 2)]) == []


levels = st.integers(1, 4)
gaps = st.floats(0, 500)


@given(
    st.lists(
        st.tuples(gaps, levels, st.sampled_from(["S1", "S2"]), st.sampled_from(["flood", "landslide"])), max_size=60
    )
)
def test_lifecycle_properties(seq):
    tr = IncidentTracker(IncidentPolicy(resolve_after_s=300))
    t = 0.0
    events = []
    for gap, lv, site, hz in seq:
        t += gap
        events += tr.apply([finding(t, lv, site, hz)])
    events += tr.advance(t + 10_000)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_id.setdefault(e["incident_id"], []).append(e)
    for evs in by_id.values():
        states = [e["state"] for e in evs]
        # fires once, rises only, resolves exactly once, at the end
        assert states.count("resolved") == 1 and states[-1] == "resolved"
        assert all(s == "firing" for s in states[:-1]) and states[0] == "firing"
        ranks = [Level.from_name(e["level"]) for e in evs]
        assert ranks == sorted(ranks)
        assert len({(e["site"], e["hazard"]) for e in evs}) == 1
    # no two open incidents for the same key at once
    opened = sorted(
        (evs[0]["opened_at"], evs[-1]["updated_at"], evs[0]["site"], evs[0]["hazard"]) for evs in by_id.values()
    )
    for i, a in enumerate(opened):
        for b in opened[i + 1 :]:
            if (a[2], a[3]) == (b[2], b[3]):
                assert b[0] >= a[1]
    # every finding is accounted for: the number of incidents equals the number of quiet gaps per key
    assert not tr.open


@given(
    st.lists(
        st.tuples(st.sampled_from(["S1", "S2", "S3", "S4"]), st.integers(0, 50_000), st.sampled_from([1, 2, 3, 4])),
        max_size=80,
    ),
    st.integers(0, 60_000),
)
def test_open_incidents_are_exactly_those_not_quiet_long_enough(seq, extra):
    """The resolve-deadline heap resolves what a scan of every open incident would, no more, no less."""
    quiet = 3600.0
    tr = IncidentTracker(IncidentPolicy(resolve_after_s=quiet))
    last_seen: dict[str, float] = {}
    wm = 0.0
    for site, t, level in sorted(seq, key=lambda x: x[1]):
        wm = float(t)
        for s_, last in list(last_seen.items()):
            if last + quiet <= wm:
                del last_seen[s_]  # what a full scan resolves before this finding
        tr.advance(wm)
        tr.observe(Finding("d", "landslide", site, "dev", wm, Level(level), 1.0))
        last_seen[site] = max(last_seen.get(site, wm), wm)
        assert {k[0] for k in tr.open} == set(last_seen)
    end = wm + extra
    resolved = [e for e in tr.advance(end) if e["action"] == "resolved"]
    assert {e["site"] for e in resolved} == {s_ for s_, last in last_seen.items() if last + quiet <= end}
    assert all(e["state"] == "resolved" for e in resolved)
    assert [e["updated_at"] for e in resolved] == sorted(e["updated_at"] for e in resolved)
