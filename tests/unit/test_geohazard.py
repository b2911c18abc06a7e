"""Hand-computed cases for the geohazard detectors and their shared pieces."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import DeviceState
from detectors.device_health import DeviceHealth, DeviceHealthConfig
from detectors.geohazard.antecedent_water_index import (
    AntecedentWaterIndex,
    AntecedentWaterIndexConfig,
    WaterBalance,
)
from detectors.geohazard.cumulative_rainfall import Accumulation, RainfallCumulative, RainfallCumulativeConfig
from detectors.geohazard.displacement_rate import DisplacementRate, DisplacementRateConfig
from detectors.geohazard.intensity_duration import RainfallIntensityDuration, RainfallIntensityDurationConfig
from detectors.geohazard.inverse_velocity import InverseVelocity, InverseVelocityConfig, fit_failure_time
from detectors.geohazard.level_threshold import LevelRule, LevelThreshold, LevelThresholdConfig
from detectors.geohazard.rain_window import RainWindow
from engine.core.batch import BatchBuilder
from engine.core.devices import DeviceIndex
from simulators.slope import voight_displacement


def run(det, readings, batch_size=None):
    """Feed (site, device, ts, metric, value) readings; returns (findings, flags of every reading)."""
    state = det.new_state()
    devices = DeviceIndex()
    found, flags = [], []
    size = batch_size or len(readings)
    for i in range(0, len(readings), size):
        b = BatchBuilder(devices)
        for site, device, ts, metric, value in readings[i : i + size]:
            b.add(site, device, ts, metric, value)
        batch = b.take()
        found.extend(det.process(batch, state))
        flags.extend(batch.flags.tolist())
    return found, flags


def rain(values_mm, step_s=600.0, site="S1", device="rain-1", t0=0.0):
    return [(site, device, t0 + step_s * (i + 1), "rain_mm", v) for i, v in enumerate(values_mm)]


# --- intensity-duration ---------------------------------------------------------------------------------


def test_caine_and_seattle_thresholds_at_known_points():
    caine = RainfallIntensityDurationConfig()
    assert caine.threshold_mm_h(1.0) == pytest.approx(14.82)
    assert caine.threshold_mm_h(10.0) == pytest.approx(14.82 * 10**-0.39)  # 6.03 mm/h
    seattle = RainfallIntensityDurationConfig(threshold_units="in")
    assert seattle.threshold_mm_h(1.0) == pytest.approx(3.257 * 25.4)
    assert seattle.threshold_mm_h(24.0) / 25.4 == pytest.approx(3.257 * 24**-1.13)  # 0.09 in/h


def test_intensity_duration_ratio_on_a_steady_downpour():
    # 20 mm/h for two hours in 10-minute reports; the 1-hour intensity is 20 mm/h: ratio 20 / 14.82 = 1.35.
    cfg = RainfallIntensityDurationConfig(
        method="window", bin_s=600.0, durations_h=[1.0], levels={"blue": 0.5, "orange": 1.0, "red": 1.5}
    )
    found, _ = run(RainfallIntensityDuration(cfg), rain([20 / 6] * 12))
    last = found[-1]
    assert last.evidence["duration_h"] == 1.0
    assert last.evidence["intensity_mm_h"] == pytest.approx(20.0, rel=0.01)
    assert last.score == pytest.approx(20.0 / 14.82, rel=0.01)
    assert last.level.label == "orange"


def test_awi_gate_holds_back_rain_on_dry_soil():
    burst = [0.0] * 6 + [8.0] * 3  # 24 mm in 30 minutes: far over Caine's 1-hour threshold
    gated = RainfallIntensityDurationConfig(awi_gate=WaterBalance(initial_mm=-100.0, wet_mm=-20.0))
    assert run(RainfallIntensityDuration(gated), rain(burst))[0] == []
    wet = RainfallIntensityDurationConfig(awi_gate=WaterBalance(initial_mm=-10.0, wet_mm=-20.0))
    assert run(RainfallIntensityDuration(wet), rain(burst))[0]


# --- antecedent water index -----------------------------------------------------------------------------


def test_awi_on_a_short_hand_computed_series():
    # ET 0.1 mm/h all year, k = 0.1/h: above field capacity the water decays by d = exp(-0.1) an hour.
    balance = WaterBalance(et_mm_per_h=(0.1,) * 12, drainage_per_h=0.1, initial_mm=-5.0)
    st_ = DeviceState(balance.state_spec())
    st_.ensure(1)
    s = np.array([0])
    series = []
    for hour, mm in [(0, 10.0), (1, 0.0), (3, 0.0), (4, 20.0)]:  # hour 2 has no report: dry
        series.append(float(balance.update(st_, s, np.array([hour * 3600.0 + 3599.0]), np.array([mm]))[0]))
    d = math.exp(-0.1)

    def drain(x: float, rain: float) -> float:
        return x * d + (rain - 0.1) * (1 - d) / 0.1

    h0 = -5.0 + 10.0 - 0.1  # below field capacity: rain minus ET
    h1 = drain(h0, 0.0)
    h3 = drain(drain(h1, 0.0), 0.0)
    assert series == pytest.approx([h0, h1, h3, drain(h3, 20.0)], abs=1e-12)


def test_awi_detector_levels_and_its_floor_at_minus_field_capacity():
    cfg = AntecedentWaterIndexConfig(
        balance=WaterBalance(field_capacity_mm=50.0, initial_mm=-10.0), levels={"blue": 0, "yellow": 25}
    )
    found, _ = run(AntecedentWaterIndex(cfg), rain([15.0, 15.0, 15.0], step_s=3600.0))
    assert [f.level.label for f in found] == ["blue", "blue", "yellow"]  # 5, then 19.9: drainage above 0
    dry = WaterBalance(field_capacity_mm=50.0, initial_mm=-49.99)
    st_ = DeviceState(dry.state_spec())
    st_.ensure(1)
    awi = dry.update(st_, np.array([0]), np.array([3600.0 * 24 * 400]), np.array([0.0]))
    assert float(awi[0]) == -50.0  # a long drought never dries the soil below minus field capacity


# --- cumulative -----------------------------------------------------------------------------------------


def test_usgs_cumulative_threshold_recent_against_antecedent():
    # Hourly gauge: 100 mm spread over days 1-15, then 30 mm in the last 3 days.
    # Threshold for P3 after P15 = 100 mm: 88.9 - 0.67 * 100 = 21.9 mm, so 30 mm gives ratio 1.37.
    hours = 18 * 24
    mm = np.zeros(hours)
    mm[: 15 * 24] = 100.0 / (15 * 24)
    mm[15 * 24 :] = 30.0 / (3 * 24)
    cfg = RainfallCumulativeConfig(accumulations=[])
    found, _ = run(RainfallCumulative(cfg), rain(mm.tolist(), step_s=3600.0))
    last = found[-1]
    assert last.evidence["p_recent_mm"] == pytest.approx(30.0, abs=0.5)
    assert last.evidence["p_antecedent_mm"] == pytest.approx(100.0, abs=0.5)
    threshold = 3.5 * 25.4 - 0.67 * last.evidence["p_antecedent_mm"]
    assert last.evidence["threshold_mm"] == pytest.approx(threshold, abs=1e-3)
    assert last.evidence["index"] == pytest.approx(1 + (last.evidence["p_recent_mm"] - threshold) / 88.9, abs=1e-4)


def test_accumulation_levels_follow_the_daily_total():
    cfg = RainfallCumulativeConfig(
        cumulative=None, accumulations=[Accumulation(hours=24, levels={"blue": 50, "yellow": 100, "red": 250})]
    )
    found, _ = run(RainfallCumulative(cfg), rain([10.0] * 12, step_s=3600.0))  # 120 mm in 12 h
    assert [f.level.label for f in found][:1] == ["blue"]
    assert found[-1].level.label == "yellow"
    assert found[-1].evidence["rain_24h_mm"] == pytest.approx(120.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 3000), st.floats(0, 20, allow_nan=False)), min_size=1, max_size=60),
    st.sampled_from([1.0, 2.0, 5.0]),
)
def test_rain_window_equals_brute_force(steps, hours):
    window = RainWindow(bin_s=600.0, span_h=6.0)
    state = DeviceState(window.state_spec())
    state.ensure(1)
    s = np.array([0])
    t, readings = 0.0, []

    def bin_of(ts: float) -> int:  # a report on a bin boundary closes the bin before it
        return math.ceil(ts / 600.0) - 1

    for dt, mm in steps:
        t += dt
        readings.append((t, mm))
        window.add(state, s, np.array([t]), np.array([mm]))
        total, missing = window.totals(state, s, (hours,))
        first_bin = bin_of(t) - round(hours * 6) + 1  # the window's bins: exactly `hours` of them
        expected = sum(m for ts, m in readings if bin_of(ts) >= first_bin)
        assert float(total[0, 0]) == pytest.approx(expected, abs=1e-6)
        # Covered bins: each report's own, and those since the previous report when it came within 900 s.
        covered = set()
        for (t0, _), (t1, _) in zip([(None, 0.0), *readings], readings, strict=False):
            b1 = bin_of(t1)
            covered |= set(range(bin_of(t0) + 1, b1 + 1)) if t0 is not None and t1 - t0 <= 900.0 else {b1}
        in_window = range(first_bin, bin_of(t) + 1)
        assert int(missing[0, 0]) == sum(1 for b in in_window if b not in covered)


# --- displacement and inverse velocity ------------------------------------------------------------------


def crack(series_mm, step_s=600.0, site="S1"):
    return [(site, "crack-1", step_s * (i + 1), "crack_mm", float(v)) for i, v in enumerate(series_mm)]


def test_displacement_velocity_and_tangent_angle():
    t_h = np.arange(1, 6 * 24 * 4) / 6.0  # 4 days every 10 minutes
    steady = 0.05 * t_h  # 1.2 mm/day
    cfg = DisplacementRateConfig(metrics=["crack_mm"], baseline_h=24.0, angle_min_velocity_per_day=1.0)
    found, _ = run(DisplacementRate(cfg), crack(steady))
    assert found, "a constant rate above the velocity floor sits at 45 degrees: blue"
    assert {f.level.label for f in found} == {"blue"}
    assert found[-1].evidence["velocity_per_day"] == pytest.approx(1.2, rel=1e-6)
    assert found[-1].evidence["tangent_angle_deg"] == pytest.approx(45.0, abs=0.01)
    # Twelve times the constant rate: atan(12) = 85.2 degrees, red.
    fast = np.concatenate([steady, steady[-1] + 0.6 * (t_h[: 6 * 8] + 1 / 6)])
    found, _ = run(DisplacementRate(cfg), crack(fast))
    assert found[-1].level.label == "red"
    assert found[-1].evidence["tangent_angle_deg"] == pytest.approx(math.degrees(math.atan(12.0)), abs=0.1)


def test_velocity_ignores_a_spike():
    series = 0.05 * np.arange(1, 100) / 6.0
    series[60] += 30.0
    cfg = DisplacementRateConfig(metrics=["crack_mm"], velocity_levels={"yellow": 5.0}, angle_levels={})
    assert run(DisplacementRate(cfg), crack(series))[0] == []


def test_fit_of_a_known_inverse_velocity_line():
    t = np.linspace(-10.0, 0.0, 11)[None, :]
    fit = fit_failure_time(t, 0.2 - 0.01 * t)  # 1/v = 0.2 - 0.01 t: zero 20 h from now
    assert fit["t_fail_h"][0] == pytest.approx(20.0)
    assert fit["r2"][0] == pytest.approx(1.0)
    assert fit["ci_low_h"][0] == pytest.approx(20.0) and fit["ci_high_h"][0] == pytest.approx(20.0)
    noisy = 0.2 - 0.01 * t + np.array([[0.004, -0.003, 0.002, -0.004, 0.003, 0.0, -0.002, 0.004, -0.003, 0.002, 0.0]])
    fit = fit_failure_time(t, noisy)
    assert fit["ci_low_h"][0] < 20.0 < fit["ci_high_h"][0]


def test_inverse_velocity_predicts_a_voight_failure():
    t_h = np.arange(1, 6 * 100) / 6.0  # 100 h; failure at 100.5 h after acceleration from 40 h
    disp = voight_displacement(t_h, 40.0, 100.5, 0.05)
    found, _ = run(InverseVelocity(InverseVelocityConfig(metrics=["crack_mm"])), crack(disp))
    assert found
    failure_ts = 100.5 * 3600.0
    last = found[-1]
    assert last.level.label == "red"
    assert abs(last.evidence["predicted_failure_ts"] - failure_ts) < 1800.0
    assert found[0].ts < failure_ts - 12 * 3600.0, "forecasts start well before the last 12 hours"


def test_inverse_velocity_stays_silent_on_steady_creep():
    t_h = np.arange(1, 6 * 100) / 6.0
    found, _ = run(InverseVelocity(InverseVelocityConfig(metrics=["crack_mm"])), crack(0.3 * t_h))
    assert found == []


# --- level threshold ------------------------------------------------------------------------------------


def test_water_level_rise_warns_before_the_level_is_high():
    levels = [1.0] * 6 + [1.0 + 0.1 * i for i in range(1, 10)]  # +0.6 m/h in 10-minute reports
    rule = LevelRule(metric="water_level_m", levels={"orange": 2.5}, rise_per_h={"yellow": 0.5})
    found, _ = run(LevelThreshold(LevelThresholdConfig(rules=[rule])), [
        ("S1", "wl-1", 600.0 * i, "water_level_m", v) for i, v in enumerate(levels)
    ])  # fmt: skip
    assert found and {f.level.label for f in found} == {"yellow"}
    assert found[-1].evidence["rise_per_h"] == pytest.approx(0.6)


# --- device health --------------------------------------------------------------------------------------


def test_each_fault_kind_is_reported_once_and_its_readings_flagged():
    steady = [("S1", "crack-1", 600.0 * i, "crack_mm", 1.0 + 0.001 * i) for i in range(1, 30)]
    other = [("S2", "crack-1", 600.0 * i + 1, "crack_mm", 2.0 + 0.001 * i) for i in range(1, 60)]
    s1 = list(steady)
    s1[10] = (*s1[10][:4], 90.0)  # jump
    s1[20] = (*s1[20][:4], -9999.0)  # out of range
    s1.insert(15, s1[14])  # duplicate
    feed = sorted(s1 + other, key=lambda r: r[2])  # S1 falls silent after 29 readings; S2 goes on
    found, flags = run(DeviceHealth(DeviceHealthConfig()), feed)
    kinds = [(f.site, f.evidence["fault"]) for f in found]
    assert kinds == [("S1", "jump"), ("S1", "duplicate"), ("S1", "out_of_range"), ("S1", "silent")]
    silent = found[-1]
    assert silent.ts == pytest.approx(29 * 600.0 + 3 * 600.0, abs=601.0)
    assert sum(flags) == 3


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=4), min_size=2, max_size=5),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
)
def test_silence_floor_misses_no_silence(gaps, cuts):
    """Skipping the fleet-wide deadline scan below the floor finds exactly what scanning every batch finds."""
    feed = []
    for d, pauses in enumerate(gaps):  # each sensor reports every 10 minutes, with pauses of 0-9 reports
        t = 600.0 + d
        for pause in pauses * 3:
            for _ in range(6):
                feed.append(("S1", f"crack-{d}", t, "crack_mm", 1.0 + 0.001 * t / 600.0))
                t += 600.0
            t += pause * 600.0
    feed.sort(key=lambda r: r[2])

    def silences(force_scan: bool) -> list[tuple[str, float]]:
        det = DeviceHealth(DeviceHealthConfig())
        state, devices, out, i = det.new_state(), DeviceIndex(), [], 0
        for size in cuts * len(feed):
            if i >= len(feed):
                break
            b = BatchBuilder(devices)
            for site, device, ts, metric, value in feed[i : i + size]:
                b.add(site, device, ts, metric, value)
            i += size
            if force_scan:
                state["silence_floor"][0] = -np.inf
            out += [(f.device, f.ts) for f in det.process(b.take(), state) if f.evidence["fault"] == "silent"]
        return out

    expected = silences(force_scan=True)
    assert silences(force_scan=False) == expected
    if any(p >= 4 for pauses in gaps for p in pauses):  # a pause of 4+ reports outlasts 3 learned intervals
        assert expected


def test_a_fast_sensor_forwarded_in_gateway_batches_is_not_silent_between_batches():
    # A 1 Hz crack meter whose gateway forwards 20 s of readings at a time, beside a sensor that reports
    # each second: between its batches the fleet clock runs 20 s past its last reading.
    feed = []
    for burst in range(30):  # 10 minutes
        for j in range(20):
            t = burst * 20.0 + j
            feed.append(("S2", "crack-1", t, "crack_mm", 2.0))
        feed += [("S1", "crack-1", burst * 20.0 + 20 + j + 0.5, "crack_mm", 1.0 + 0.001 * j) for j in range(20)]
    cfg = DeviceHealthConfig(stuck_count=10_000)
    found, _ = run(DeviceHealth(cfg), feed)
    assert [f.evidence["fault"] for f in found] == []
    # It stops: silent once the fleet clock is min_silence_s past its last reading, not 3 s.
    tail = [("S1", "crack-1", 620.5 + j, "crack_mm", 1.0) for j in range(400)]
    found, _ = run(DeviceHealth(cfg), feed + tail)
    silent = [f for f in found if f.evidence["fault"] == "silent"]
    assert [f.device for f in silent] == ["crack-1"] and silent[0].site == "S2"
    assert silent[0].ts == pytest.approx(599.5 + cfg.min_silence_s, abs=1.0)  # fleet clock at its last reading


def test_state_from_an_older_version_takes_up_arrays_it_lacks_at_their_initial_value():
    det = DeviceHealth(DeviceHealthConfig())
    state = det.new_state()
    run_rows = [("S1", "crack-1", 600.0 * i, "crack_mm", 1.0) for i in range(1, 4)]
    b = BatchBuilder(DeviceIndex())
    for site, device, ts, metric, value in run_rows:
        b.add(site, device, ts, metric, value)
    det.process(b.take(), state)
    old = {k: v for k, v in state.snapshot().items() if k != "silence_floor"}
    restored = det.new_state()
    restored.restore(old)
    assert restored["silence_floor"].tolist() == [-np.inf]
    np.testing.assert_array_equal(restored["last_ts"], state["last_ts"])
    assert np.nanmax(restored["last_ts"]) == 1800.0


def test_stuck_sensor_and_its_readings_are_kept_from_detectors():
    feed = [("S1", "crack-1", 600.0 * i, "crack_mm", 1.0 + 0.01 * min(i, 5)) for i in range(1, 30)]
    found, flags = run(DeviceHealth(DeviceHealthConfig(stuck_count=12)), feed)
    assert [f.evidence["fault"] for f in found] == ["stuck"]
    assert flags.index(1) == 4 + 11  # the 12th identical value
    assert all(flags[15:])


def test_clock_skew_against_the_fleet_clock():
    # Both gauges report every 10 minutes; from the 11th report on, S2's clock runs two hours behind.
    feed = []
    for i in range(1, 20):
        feed.append(("S1", "rain-1", 600.0 * i, "rain_mm", 0.0))
        feed.append(("S2", "rain-1", 600.0 * i - (7200.0 if i > 10 else 0.0), "rain_mm", 0.0))
    found, flags = run(DeviceHealth(DeviceHealthConfig()), feed)
    assert [(f.site, f.evidence["fault"]) for f in found] == [("S2", "clock_skew"), ("S2", "out_of_order")]
    assert found[0].ts == 600.0 * 11 - 7200.0
    assert sum(flags) == 9  # every skewed reading of S2 is kept from the detectors


@pytest.mark.parametrize("size", [1, 7, 50])
def test_health_findings_and_flags_do_not_depend_on_batching(size):
    feed = [("S1", "crack-1", 600.0 * i, "crack_mm", 1.0 if 10 < i < 25 else 0.01 * i) for i in range(1, 40)]
    feed += [("S2", "gnss-1", 600.0 * i + 5, "disp_mm", 5.0 + (80.0 if i == 7 else 0.0)) for i in range(1, 60)]
    feed.sort(key=lambda r: r[2])
    det = DeviceHealth(DeviceHealthConfig())
    whole = run(det, feed)
    found, flags = run(det, feed, size)
    assert [(f.site, f.evidence["fault"], f.ts, f.row if size == len(feed) else 0) for f in found] == [
        (f.site, f.evidence["fault"], f.ts, f.row if size == len(feed) else 0) for f in whole[0]
    ]
    assert flags == whole[1]


@pytest.mark.parametrize("size", [1, 13, 400])
def test_a_flooding_device_is_flagged_once_and_others_are_unaffected(size):
    # Both gauges report every 10 minutes; from 2 h on, S1's firmware runs away: a reading every 6 s for
    # 10 minutes (100 times its rate), then back to normal.
    feed = []
    for i in range(1, 31):
        feed.append(("S1", "rain-1", 600.0 * i, "rain_mm", 0.2))
        feed.append(("S2", "rain-1", 600.0 * i + 1, "rain_mm", 0.2))
    feed += [("S1", "rain-1", 7200.0 + 6.0 * j, "rain_mm", 0.2) for j in range(1, 100)]
    feed.sort(key=lambda r: r[2])
    found, flags = run(DeviceHealth(DeviceHealthConfig()), feed, size)
    assert [(f.site, f.evidence["fault"], f.level.label) for f in found] == [("S1", "flood", "yellow")]
    assert found[0].ts == 7206.0
    flagged = [r for r, flag in zip(feed, flags, strict=True) if flag]
    # kept from the alarms (the first regular report, 6 s after the last of the flood, with them); S2 untouched
    assert [r[2] for r in flagged] == [7200.0 + 6.0 * j for j in range(1, 101)] and {r[0] for r in flagged} == {"S1"}


def test_an_extreme_downpour_is_reported_but_kept_for_the_rain_detectors():
    # 180 mm in one hour (Zhengzhou 2021 saw 201.9 mm): above the 150 mm/h check, inside the 400 mm/h range.
    health = DeviceHealth(DeviceHealthConfig())
    readings = rain([2.0, 5.0, 180.0, 20.0], step_s=3600.0)
    found, flags = run(health, readings)
    assert [(f.evidence["fault"], f.evidence["reading_used"]) for f in found] == [("jump", True)]
    assert flags == [0, 0, 0, 0], "the extreme reading must reach the rain detectors"
    # The same 180 mm from a gauge that covers six hours is ordinary; 3000 mm in one hour is impossible.
    found, flags = run(DeviceHealth(DeviceHealthConfig()), rain([2.0, 5.0, 180.0], step_s=6 * 3600.0))
    assert found == [] and flags == [0, 0, 0]
    found, flags = run(DeviceHealth(DeviceHealthConfig()), rain([2.0, 5.0, 3000.0], step_s=3600.0))
    assert [f.evidence["fault"] for f in found] == ["out_of_range"] and flags == [0, 0, 1]
    # A daily gauge's 700 mm day (Linzhuang 1975: 1,060 mm) is no fault at all.
    found, flags = run(DeviceHealth(DeviceHealthConfig()), rain([10.0, 700.0], step_s=86400.0))
    assert found == [] and flags == [0, 0]


def test_a_sensor_surveyed_every_eleven_days_still_yields_a_velocity_and_a_forecast():
    # A GNSS survey every 11 days, the slope creeping 0.5 mm/day and then accelerating to fail on day 400.
    t_h = np.arange(1, 37, dtype=np.float64) * 11 * 24.0
    disp = voight_displacement(t_h, 150 * 24.0, 400 * 24.0, 0.5 / 24.0)
    rows = [("S1", "gnss-1", t * 3600.0, "disp_mm", float(v)) for t, v in zip(t_h, disp, strict=True)]
    rate = DisplacementRateConfig(metrics=["disp_mm"], velocity_levels={"blue": 0.3}, angle_levels={})
    found, _ = run(DisplacementRate(rate), rows)
    assert found and found[0].evidence["velocity_per_day"] == pytest.approx(0.5, rel=0.05)
    forecast = InverseVelocityConfig(metrics=["disp_mm"], window_h=24.0, min_velocity_per_day=0.1)
    found, _ = run(InverseVelocity(forecast), rows)
    assert found, "the accelerating slope must get a failure forecast from its surveys"
    last = found[-1]
    assert last.evidence["fit_window_h"] > 24.0 * 11 * 5  # widened to hold six surveys
    assert abs(last.evidence["predicted_failure_ts"] / 86400.0 - 400.0) < 30.0
    # With no widening the same sensor never yields a velocity.
    off = DisplacementRateConfig(metrics=["disp_mm"], velocity_levels={"blue": 0.3}, angle_levels={}, max_window_h=1.0)
    assert run(DisplacementRate(off), rows)[0] == []


def test_the_shipped_gnss_detectors_adapt_to_a_station_surveyed_every_eleven_days():
    # The shipped GNSS detectors want 24 readings in a day (10-minute epochs); 24 surveys 11 days apart span
    # 253 days, beyond max_window_h. Judged by its cadence, the station is rated on its last 6 surveys.
    from engine.config.loader import load_config
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "config" / "gridwatch.yaml")
    shipped = {d.name: d for d in cfg.detectors}
    rate, forecast = shipped["gnss-velocity"], shipped["gnss-failure-forecast"]
    assert isinstance(rate, DisplacementRateConfig) and isinstance(forecast, InverseVelocityConfig)
    assert rate.min_points == 24 and rate.slow_min_points < rate.min_points
    t_h = np.arange(1, 37, dtype=np.float64) * 11 * 24.0
    disp = voight_displacement(t_h, 150 * 24.0, 400 * 24.0, 0.5 / 24.0)
    rows = [("S1", "gnss-1", t * 3600.0, "disp_mm", float(v)) for t, v in zip(t_h, disp, strict=True)]
    det = DisplacementRate(rate.model_copy(update={"velocity_levels": {"blue": 0.3}, "angle_levels": {}}))
    found, _ = run(det, rows)
    assert found and found[0].evidence["velocity_per_day"] == pytest.approx(0.5, rel=0.05)
    found, _ = run(InverseVelocity(forecast.model_copy(update={"min_velocity_per_day": 0.1})), rows)
    assert found and abs(found[-1].evidence["predicted_failure_ts"] / 86400.0 - 400.0) < 30.0
    assert det.cadence_problem(11 * 86400.0) is None
    # A sensor too slow even for slow_min_points within max_window_h is named by check-config.
    assert "slow_min_points" in (det.cadence_problem(30 * 86400.0) or "")
    # So is one too fast for its ring: 160 GNSS epochs a second apart never span half a day.
    assert "raise points to" not in (det.cadence_problem(1.0) or "")
    assert "no velocity ever" in (det.cadence_problem(1.0) or "")
    assert "raise points to 361" in (det.cadence_problem(120.0) or "")
    assert det.cadence_problem(600.0) is None
    # Fast sensors keep their min_points: the same detector on 10-minute epochs is unchanged by the setting.
    fast = [("S1", "gnss-2", 600.0 * i, "disp_mm", 0.01 * i) for i in range(400)]
    off = DisplacementRate(det.config.model_copy(update={"slow_min_points": rate.min_points}))
    assert [(f.ts, f.level) for f in run(det, fast)[0]] == [(f.ts, f.level) for f in run(off, fast)[0]]


def test_a_forecast_whose_failure_time_has_passed_is_never_raised():
    # The slope accelerated towards a failure at 100.5 h but slowed down instead: at 101-110 h the fitted
    # line's zero lies in the past. Nothing may be rated red on it.
    t_h = np.arange(1, 6 * 110) / 6.0
    disp = voight_displacement(np.minimum(t_h, 99.0), 40.0, 100.5, 0.05) + 2.0 * np.maximum(t_h - 99.0, 0.0)
    found, _ = run(InverseVelocity(InverseVelocityConfig(metrics=["crack_mm"])), crack(disp))
    assert found
    assert all(f.evidence["hours_to_failure"] > 0 for f in found)
    assert all(f.evidence["predicted_failure_ts"] > f.ts for f in found)


def test_a_perfect_inverse_velocity_fit_has_a_finite_t_statistic():
    t = np.linspace(-10.0, 0.0, 11)[None, :]
    fit = fit_failure_time(t, 0.2 - 0.01 * t)
    assert np.isfinite(fit["t_stat"][0]) and fit["t_stat"][0] < -1e6
