"""Differential test: the vectorized detectors against straightforward per-reading implementations."""

from __future__ import annotations

import pytest

from benchmarks.reference_detectors import ReferenceDisplacementRate, ReferenceIntensityDuration
from detectors.geohazard.displacement_rate import DisplacementRate, DisplacementRateConfig
from detectors.geohazard.intensity_duration import RainfallIntensityDuration, RainfallIntensityDurationConfig
from engine.core.devices import DeviceIndex
from engine.ingest.replay_file import batches

Found = tuple[str, str, float, int, float]


def vectorized(det, rows, batch_size: int, digits: int) -> list[Found]:
    """The detector's findings on ``rows`` in batches, as (site, device, ts, level, rounded score)."""
    state = det.new_state()
    got: list[Found] = []
    for b in batches(rows, DeviceIndex(), batch_size):
        got.extend((f.site, f.device, f.ts, int(f.level), round(f.score, digits)) for f in det.process(b, state))
    return got


@pytest.mark.parametrize("batch_size", [1, 1000])
@pytest.mark.parametrize("method", ["storm", "window"])
def test_intensity_duration_matches_the_per_reading_reference(storm_rows, batch_size, method):
    cfg = RainfallIntensityDurationConfig(
        method=method, bin_s=600.0, levels={"blue": 0.5, "yellow": 1.0, "orange": 1.5, "red": 2.5}, clear=0.3
    )
    rain = [r for r in storm_rows if r[3] == "rain_mm"]
    ref = ReferenceIntensityDuration(cfg)
    expected = []
    for ts, site, device, _, mm in rain:
        for at, level, score in ref.process(site, device, ts, mm):
            expected.append((site, device, at, level, round(score, 9)))
    assert expected, "the storm should raise the reference"
    assert vectorized(RainfallIntensityDuration(cfg), rain, batch_size, 9) == expected


@pytest.mark.parametrize("batch_size", [1, 777])
def test_displacement_rate_matches_the_per_reading_reference(storm_rows, batch_size):
    cfg = DisplacementRateConfig(
        metrics=["crack_mm", "disp_mm"],
        window_h=3.0,
        baseline_h=6.0,
        angle_min_velocity_per_day=1.0,
        velocity_levels={"yellow": 20.0, "red": 40.0},
    )
    rows = [r for r in storm_rows if r[3] in ("crack_mm", "disp_mm")]
    ref = ReferenceDisplacementRate(cfg)
    expected = []
    for ts, site, device, metric, value in rows:
        out = ref.process(site, device, metric, ts, value)
        if out is not None:
            expected.append((site, device, ts, out[0], round(out[1], 6)))
    assert len(expected) > 50, "the failing slope and the GNSS noise should raise the reference"
    assert sorted(vectorized(DisplacementRate(cfg), rows, batch_size, 6)) == sorted(expected)
