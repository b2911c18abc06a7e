"""Sweeps, scoring per level, the suggestion under a constraint, and live reload of detector state."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.base import registry
from engine.core.findings import Finding
from engine.core.levels import Level
from engine.evaluation import alarm_episodes, score_levels
from engine.ingest.replay_file import batches
from engine.runners.assembly import build_pipeline
from engine.runners.reload import apply_config, config_diff
from engine.tuning import Constraint, Point, Sweep, TuneError, best_point, set_path, sweep_points, yaml_patch
from tests.conftest import default_config

H = 3600.0


@given(st.integers(-50, 50), st.integers(0, 40), st.integers(1, 9))
def test_sweep_values_run_from_start_to_stop_in_steps(start, span, step):
    sw = Sweep.parse(f"levels.red={start}:{start + span}:{step}")
    assert sw.values[0] == start
    assert len(sw.values) == span // step + 1
    assert sw.values[-1] <= start + span
    assert np.allclose(np.diff(sw.values), step)


@pytest.mark.parametrize("bad", ["levels.red", "levels.red=1:2", "x=a:b:c", "x=2:1:1", "x=1:2:0"])
def test_bad_sweeps_say_how_to_write_one(bad):
    with pytest.raises(TuneError, match=r"PARAM=START:STOP:STEP|STEP must be positive"):
        Sweep.parse(bad)


def test_set_path_reaches_into_lists_and_mappings():
    data = {"rules": [{"levels": {"blue": 1.0}}]}
    set_path(data, "rules.0.levels.red", 5.0)
    assert data == {"rules": [{"levels": {"blue": 1.0, "red": 5.0}}]}
    with pytest.raises(TuneError, match="not an index"):
        set_path(data, "rules.3.levels.red", 1.0)


def test_invalid_sweep_points_are_kept_with_the_reason():
    det = registry.get("rainfall_intensity_duration").example_config()
    points = sweep_points(det, [Sweep.parse("levels.yellow=0.25:1:0.25")])
    bad = [p for p in points if p.config is None]
    assert [p.values["levels.yellow"] for p in bad] == [0.25]  # below blue (0.5)
    assert "levels" in bad[0].error and "must not decrease" in bad[0].error
    assert all(p.config.model_dump()["levels"]["yellow"] == p.values["levels.yellow"] for p in points if p.config)


def finding(site, ts, level):
    return Finding("d", "landslide", site, "crack-1", ts, Level.from_name(level), 1.0)


def test_scoring_by_level_on_a_hand_made_case():
    truth = [{"site": "A", "hazard": "landslide", "start": 0.0, "end": 100 * H}]
    found = [finding("A", 50 * H, "yellow"), finding("A", 90 * H, "red"), finding("B", 10 * H, "yellow")]
    s = score_levels(truth, found, "landslide", site_months=2.0)
    # Yellow-or-higher alarms: A at 50 h, A at 90 h (40 h apart: two alarms), B at 10 h (no event at B).
    assert s["yellow"]["alarms"] == 3 and s["yellow"]["hits"] == 1 and s["yellow"]["false_alarms"] == 1
    assert s["yellow"]["precision"] == pytest.approx(2 / 3) and s["yellow"]["recall"] == 1.0
    assert s["yellow"]["lead_h_median"] == 50.0  # first yellow-or-higher alarm at 50 h, failure at 100 h
    assert s["yellow"]["false_alarms_per_site_month"] == 0.5
    assert s["red"]["lead_h_median"] == 10.0 and s["red"]["false_alarms"] == 0
    assert s["orange"]["alarms"] == 1  # the red finding is an orange-or-higher alarm too


def test_findings_close_together_are_one_alarm():
    found = [finding("A", t * H, "blue") for t in (0, 1, 2, 20, 21)]
    assert [(e["start"], e["end"]) for e in alarm_episodes(found, Level.BLUE, 6 * H)] == [(0, 2 * H), (20 * H, 21 * H)]


def test_best_point_obeys_the_constraint():
    def pt(v, f1, fa):
        scores = {"f1": f1, "false_alarms_per_site_month": fa, "recall": 1.0, "lead_h_median": 5.0}
        return Point({"x": v}, None, scores={"yellow": scores})

    points = [pt(1, 0.9, 1.0), pt(2, 0.8, 0.1), pt(3, 0.5, 0.0)]
    best = best_point(points, "yellow", Constraint())
    assert best is not None and best.values["x"] == 1
    best = best_point(points, "yellow", Constraint(Constraint.parse_rate("2/site-year")))
    assert best is not None and best.values["x"] == 2
    assert best_point(points, "yellow", Constraint(min_recall=1.1)) is None
    with pytest.raises(TuneError, match="site-year"):
        Constraint.parse_rate("2/fortnight")


def test_a_tie_on_f1_goes_to_the_point_with_fewer_false_alarms():
    def pt(v: int, false_alarms: int, lead: float) -> Point:
        scores = {"f1": 0.8, "false_alarms": false_alarms, "false_alarms_per_site_month": 0.0, "recall": 1.0,
                  "lead_h_median": lead}  # fmt: skip
        return Point({"x": v}, None, scores={"yellow": scores})

    aggressive, cautious = pt(1, 5, 30.0), pt(2, 1, 20.0)  # the aggressive one warns earlier, and more often
    assert best_point([aggressive, cautious], "yellow", Constraint()) is cautious
    assert best_point([cautious, aggressive], "yellow", Constraint()) is cautious


def test_yaml_patch_names_only_what_changed():
    det = registry.get("displacement_rate").example_config()
    (point,) = sweep_points(det, [Sweep.parse("angle_min_velocity_per_day=3:3:1")])
    patch = yaml_patch(det, point)
    assert "id: example-displacement" in patch and "angle_min_velocity_per_day: 3.0" in patch
    assert "window_h" not in patch


def test_reload_keeps_state_where_the_layout_did_not_change(storm_rows):
    old = default_config()
    pipeline = build_pipeline(old)
    for b in batches(storm_rows[:3000], pipeline.devices, 500):
        pipeline.step(b)
    before = {d.name: s for d, s in zip(pipeline.detectors, pipeline.states, strict=True)}
    health = next(d for d in old.detectors if d.name == "device-health")
    changes: dict[str, dict[str, object]] = {
        "crack-velocity": {"angle_min_velocity_per_day": 4.0},
        "gnss-velocity": {"points": 200},
        # the same arrays, but each metric's column would hold another metric's state
        "device-health": {"metrics": list(reversed(health.metrics))},  # type: ignore[attr-defined]
    }
    # crack-velocity: same state layout; gnss-velocity: another ring size.
    new = old.model_copy(update={"detectors": [d.model_copy(update=changes.get(d.name, {})) for d in old.detectors]})
    result = apply_config(pipeline, old, new)
    after = {d.name: s for d, s in zip(pipeline.detectors, pipeline.states, strict=True)}
    assert after["crack-velocity"] is before["crack-velocity"]
    assert after["gnss-velocity"] is not before["gnss-velocity"] and after["gnss-velocity"].rows_used == 0
    assert "gnss-velocity" in result.reset_state and "crack-velocity" in result.kept_state
    assert "device-health" in result.reset_state, "reordered metrics: the state's meaning changed"
    assert any("angle_min_velocity_per_day" in c for c in result.changes)
    assert result.needs_restart == []
    assert pipeline.detectors[0].screens, "quality screens still run first"


def test_config_diff_reports_added_and_removed_keys():
    assert config_diff({"a": 1}, {"b": 2}) == ["a: removed", "b: added 2"]


def test_a_tied_plateau_suggests_its_middle_not_its_edge():
    """F1 1.0 from 0.125 to 0.97 (a smoke threshold): the suggestion is well inside, not the edge next to the
    false alarm; with two swept fields the centre of the tied region."""

    def pt(values: dict[str, float], f1: float, lead: float = 5.0) -> Point:
        scores = {"f1": f1, "false_alarms": 0, "false_alarms_per_site_month": 0.0, "recall": 1.0,
                  "lead_h_median": lead}  # fmt: skip
        return Point(values, None, scores={"red": scores})

    xs = [round(0.1 + 0.025 * k, 3) for k in range(37)]  # 0.1 .. 1.0
    points = [pt({"t": x}, 1.0 if 0.125 <= x <= 0.97 else 0.6, lead=10 - x) for x in xs]
    best = best_point(points, "red", Constraint())
    assert best is not None
    assert 0.4 <= best.values["t"] <= 0.7, best.values
    grid = [pt({"a": a, "b": b}, 1.0 if 1 <= a <= 5 and 1 <= b <= 5 else 0.5) for a in range(7) for b in range(7)]
    best = best_point(grid, "red", Constraint())
    assert best is not None and best.values == {"a": 3, "b": 3}


def test_a_tie_prefers_levels_that_differ():
    """Yellow at blue's threshold (0.5) scores as well as 0.6 on this data: the suggestion keeps two levels."""
    det = registry.get("rainfall_intensity_duration").example_config()
    points = [p for p in sweep_points(det, [Sweep.parse("levels.yellow=0.5:0.6:0.1")]) if p.config is not None]
    assert [p.values["levels.yellow"] for p in points] == [0.5, 0.6]
    for p in points:
        p.scores = {"yellow": {"f1": 1.0, "false_alarms_per_site_month": 0.0, "recall": 1.0, "lead_h_median": 1.0}}
    best = best_point(points, "yellow", Constraint())
    assert best is not None and best.values["levels.yellow"] == 0.6
