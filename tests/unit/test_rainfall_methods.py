"""The rainfall detectors hour by hour against brute-force implementations of the published methods.

Records are hourly rain in hundredths of an inch (as the Seattle gauges report, so totals land exactly on
thresholds now and then), with and without missing hours, fed as reports at hh:59 in batches of several
sizes; the hours each detector raises must be exactly the hours the method exceeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.geohazard.antecedent_water_index import (
    SEATTLE_ET_MM_PER_H,
    AntecedentWaterIndex,
    AntecedentWaterIndexConfig,
    WaterBalance,
)
from detectors.geohazard.cumulative_rainfall import (
    Accumulation,
    CumulativeThreshold,
    RainfallCumulative,
    RainfallCumulativeConfig,
)
from detectors.geohazard.intensity_duration import RainfallIntensityDuration, RainfallIntensityDurationConfig
from engine.core.batch import BatchBuilder
from engine.core.devices import DeviceIndex
from simulators.storm import hourly_record as record
from tests import rainfall_reference as ref
from tests.rainfall_reference import FIRST_HOUR, exceeded, findings_on, hour_of, raised_hours, report_ts

HUNDREDTH_IN = 0.254  # mm
SEATTLE_ALPHA_MM = 3.257 * 25.4


RECORDS = {f"gauge-{seed}": record(seed, 1200, holes=0 if seed % 2 else 2) for seed in range(4)}


@pytest.mark.parametrize("policy", ["skip", "lower_bound"])
@pytest.mark.parametrize("batch_size", [1, 700])
def test_usgs_cumulative_threshold_hours_equal_the_method(policy, batch_size):
    cfg = RainfallCumulativeConfig(accumulations=[], gap_policy=policy)  # Seattle: 3.5 in - 0.67 P15
    got = raised_hours(RainfallCumulative(cfg), RECORDS, batch_size)
    for device, p in RECORDS.items():
        want = exceeded(ref.usgs_cumulative(p, policy=policy), p)
        assert got[device] == want, device
    assert sum(map(len, got.values())) > 100, "the records should exceed the threshold for days"


@pytest.mark.parametrize("policy", ["skip", "lower_bound"])
def test_accumulation_hours_equal_the_window_sums(policy):
    cfg = RainfallCumulativeConfig(
        cumulative=None, accumulations=[Accumulation(hours=24, levels={"blue": 40.0})], gap_policy=policy
    )
    got = raised_hours(RainfallCumulative(cfg), RECORDS, 333)
    for device, p in RECORDS.items():
        want = exceeded([s is not None and s >= 40.0 for s in ref.window_sums(p, 24, policy)], p)
        assert got[device] == want, device
    assert sum(map(len, got.values())) > 20


@pytest.mark.parametrize("policy", ["skip", "lower_bound"])
@pytest.mark.parametrize("batch_size", [1, 500])
def test_seattle_storm_intensity_duration_hours_equal_the_method(policy, batch_size):
    cfg = RainfallIntensityDurationConfig(threshold_units="in", levels={"orange": 1.0}, gap_policy=policy)
    got = raised_hours(RainfallIntensityDuration(cfg), RECORDS, batch_size)
    for device, p in RECORDS.items():
        want = exceeded(
            [x is not None and x[0] for x in ref.usgs_storm_id(p, SEATTLE_ALPHA_MM, 1.13, policy=policy)], p
        )
        assert got[device] == want, device
    assert sum(map(len, got.values())) > 20, "some storms should exceed the Seattle threshold"


def test_storm_evidence_is_the_storm_s_duration_and_mean_intensity():
    p = RECORDS["gauge-1"]
    cfg = RainfallIntensityDurationConfig(threshold_units="in", levels={"orange": 1.0})
    found = findings_on(RainfallIntensityDuration(cfg), p)
    want = ref.usgs_storm_id(p, SEATTLE_ALPHA_MM, 1.13)
    assert found
    for f in found:
        i = hour_of(f.ts)
        entry = want[i]
        assert entry is not None
        _, duration, intensity = entry
        assert f.evidence["duration_h"] == pytest.approx(duration, abs=1e-3)
        assert f.evidence["intensity_mm_h"] == pytest.approx(intensity, abs=1e-3)
        assert f.evidence["complete"] is True


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.just(0.0), st.just(0.0), st.integers(1, 80).map(lambda n: n * HUNDREDTH_IN), st.just(math.nan)),
        min_size=1,
        max_size=80,
    ),
    st.sampled_from(["skip", "lower_bound"]),
    st.integers(1, 5),
)
def test_storm_tracking_equals_the_method_on_any_record(p, policy, gap):
    p = [0.0 if math.isnan(p[0]) else p[0], *p[1:]]  # a gauge's record starts with its first report
    # Caine's threshold with levels at fractions of it: many exceedances on short random records.
    cfg = RainfallIntensityDurationConfig(levels={"blue": 0.3}, storm_gap_h=gap, gap_policy=policy, clear=0.3)
    got = raised_hours(RainfallIntensityDuration(cfg), {"g": p}, 7)["g"]
    storms = ref.usgs_storm_id(p, 14.82, 0.39, gap=gap, policy=policy)
    want = exceeded([x is not None and round(x[2] / (14.82 * x[1] ** -0.39), 9) >= 0.3 for x in storms], p)
    assert got == want


@pytest.mark.parametrize("policy", ["skip", "lower_bound"])
def test_fixed_window_intensity_hours_equal_the_window_sums(policy):
    durations = [1, 3, 6, 24]
    cfg = RainfallIntensityDurationConfig(
        method="window", durations_h=durations, levels={"orange": 1.0}, gap_policy=policy
    )
    got = raised_hours(RainfallIntensityDuration(cfg), RECORDS, 250)
    for device, p in RECORDS.items():
        ratios = ref.fixed_window_id(p, durations, 14.82, 0.39, policy)
        want = exceeded([r is not None and round(r - 1.0, 9) > 0 for r in ratios], p)
        assert got[device] == want, device
    assert sum(map(len, got.values())) > 20


def test_one_hour_window_holds_one_hourly_report():
    # The 52 mm hour must read 52 mm/h, not the 58.1 mm/h of two reports over 1 h 59 min.
    cfg = RainfallIntensityDurationConfig(method="window", durations_h=[1.0], levels={"orange": 1.0})
    p = [6.1, 52.0]
    found = raised_hours(RainfallIntensityDuration(cfg), {"g": p}, 10)
    assert found["g"] == [1]  # 6.1 mm/h is under Caine's 14.82 mm/h
    assert findings_on(RainfallIntensityDuration(cfg), p)[-1].evidence["intensity_mm_h"] == 52.0


def test_awi_equals_the_hourly_recursion_with_the_monthly_et_table():
    p = RECORDS["gauge-0"]  # has missing hours: they are dry
    cfg = AntecedentWaterIndexConfig(levels={"blue": 20.0})
    found = findings_on(AntecedentWaterIndex(cfg), p)
    want = ref.usgs_awi(p, FIRST_HOUR, et_mm_per_h=SEATTLE_ET_MM_PER_H)
    assert [hour_of(f.ts) for f in found] == [i for i, a in enumerate(want) if a >= 20.0 and not math.isnan(p[i])]
    for f in found:
        i = hour_of(f.ts)
        assert f.evidence["awi_mm"] == pytest.approx(want[i], abs=1e-3)


def test_awi_over_a_long_silence_crosses_months_exactly():
    balance = WaterBalance(initial_mm=60.0)
    det_state = AntecedentWaterIndex(AntecedentWaterIndexConfig(balance=balance)).new_state()
    det_state.ensure(1)
    s = np.array([0])
    start = FIRST_HOUR
    got = []
    for hour, mm in [(0, 10.0), (1500, 0.0)]:  # 62 days of silence: drains, then dries month by month
        got.append(float(balance.update(det_state, s, np.array([(start + hour + 1) * 3600.0]), np.array([mm]))[0]))
    p = [10.0] + [math.nan] * 1499 + [0.0]
    want = ref.usgs_awi(p, start, et_mm_per_h=SEATTLE_ET_MM_PER_H, initial_mm=60.0)
    assert got == pytest.approx([want[0], want[1500]], abs=1e-9)


def test_awi_gated_storm_threshold_needs_wet_soil_like_thresh():
    p = RECORDS["gauge-1"]
    gate = WaterBalance()  # Seattle: wet from AWI 0.02 m
    cfg = RainfallIntensityDurationConfig(threshold_units="in", levels={"orange": 1.0}, awi_gate=gate)
    got = raised_hours(RainfallIntensityDuration(cfg), {"g": p}, 100)["g"]
    storms = ref.usgs_storm_id(p, SEATTLE_ALPHA_MM, 1.13)
    awi = ref.usgs_awi(p, FIRST_HOUR, et_mm_per_h=SEATTLE_ET_MM_PER_H)
    want = exceeded([x is not None and x[0] and awi[i] >= 20.0 for i, x in enumerate(storms)], p)
    ungated = exceeded([x is not None and x[0] for x in storms], p)
    assert want and len(want) < len(ungated), "the gate should hold some storm hours back"
    assert got == want


def test_an_incomplete_window_is_said_so_and_skip_holds_it_back():
    p = [10.0] * 30
    p[5:8] = [math.nan] * 3
    lower = RainfallCumulativeConfig(cumulative=None, accumulations=[Accumulation(hours=24, levels={"blue": 100})])
    first = findings_on(RainfallCumulative(lower), p)[0]
    assert first.evidence["rain_24h_mm"] == 100.0 and first.evidence["complete"] is False
    assert first.evidence["rain_24h_missing_h"] > 0
    skip = lower.model_copy(update={"gap_policy": "skip"})
    assert raised_hours(RainfallCumulative(skip), {"g": p}, 5)["g"] == []  # every 24 h window holds a gap


def test_a_config_that_still_says_units_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"threshold_units.*rain_in"):
        RainfallIntensityDurationConfig.model_validate({"type": "rainfall_intensity_duration", "units": "in"})
    with pytest.raises(ValueError, match="threshold_units"):
        CumulativeThreshold.model_validate({"units": "in"})


def test_cumulative_index_is_bounded_and_exact_at_the_threshold():
    # P15 = 0: the threshold is a = 3.5 in = 88.9 mm. Exactly at it: not exceeded (Thresh: deficit > 0).
    cfg = RainfallCumulativeConfig(accumulations=[], gap_policy="lower_bound")
    hours = [0.0] * 360 + [88.9 / 2, 88.9 / 2, 0.254]
    got = raised_hours(RainfallCumulative(cfg), {"g": hours}, 50)["g"]
    assert got == [362]
    worst = findings_on(RainfallCumulative(cfg), [0.0] * 360 + [5000.0])[-1]
    assert worst.evidence["index"] == pytest.approx(1 + (5000.0 - 88.9) / 88.9, rel=1e-6)  # ~57, not 1e8


def test_an_inch_gauge_reports_rain_in_and_is_converted_at_ingest():
    from engine.config.models import IngestConfig
    from engine.ingest.decode import SensorDecoder
    from engine.ingest.topics import Topic

    p = RECORDS["gauge-1"]
    devices = DeviceIndex()
    b = BatchBuilder(devices)
    decoder = SensorDecoder(IngestConfig(metric_aliases={"precip_in": "rain_mm"}), b)
    for i, mm in enumerate(p):
        ts = report_ts(i)
        name = "rain_in" if i % 2 else "precip_in"  # the unit in the name, or in an alias from config
        body = f'{{"ts": {ts}, "values": {{"{name}": {mm / 25.4!r}}}}}'.encode()
        assert decoder.decode(Topic("sensors", "S1", "g"), body, now=ts) == []
    cfg = RainfallIntensityDurationConfig(threshold_units="in", levels={"orange": 1.0})
    det = RainfallIntensityDuration(cfg)
    got = [hour_of(f.ts) for f in det.process(b.take(), det.new_state())]
    want = exceeded([x is not None and x[0] for x in ref.usgs_storm_id(p, SEATTLE_ALPHA_MM, 1.13)], p)
    assert want and got == want
    last = report_ts(len(p) - 1)
    refused = decoder.decode(Topic("sensors", "S1", "g"), b'{"ts": %d, "values": {"rain_ft": 1}}' % last, now=last)
    assert [r.reason for r in refused] == ["unknown_metric"]


def test_a_pause_counts_toward_the_storm_and_a_storm_s_last_dry_hours_raise_nothing():
    # Rain, one dry hour, rain, then dry: the dry hour inside the storm has the storm's duration up to it (3 h,
    # not 2 h to the rain before it) and is judged when the rain resumes; the three dry hours after the last
    # rain end the storm and have none (Thresh's post-storm correction).
    p = [10.0, 10.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0]
    cfg = RainfallIntensityDurationConfig(levels={"blue": 0.3}, clear=0.3)
    det = RainfallIntensityDuration(cfg)
    state, devices = det.new_state(), DeviceIndex()
    seen: list[tuple[int, int, float, bool]] = []  # (hour fed, hour of the finding, duration, pause)
    for i, v in enumerate(p):
        b = BatchBuilder(devices)
        b.add("S1", "g", report_ts(i), "rain_mm", v)
        seen += [
            (i, hour_of(f.ts), f.evidence["duration_h"], "pause" in f.evidence) for f in det.process(b.take(), state)
        ]
    assert seen == [(0, 0, 1.0, False), (1, 1, 2.0, False), (3, 2, 3.0, True), (3, 3, 4.0, False)]
    want = ref.usgs_storm_id(p, 14.82, 0.39)
    assert [w is not None for w in want] == [True, True, True, True, False, False, False, False]
    assert want[2] is not None and want[2][1] == 3.0
