"""Theil velocity with the pair slopes kept between readings equals computing every pair afresh: on any
reporting pattern (regular, jittered, gaps, repeated times, late readings, a window that changes its number
of pairs), several channels per step, rings that wrap, and sensors whose state is reset."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import DeviceState
from detectors.geohazard.displacement_rate import DisplacementRate, DisplacementRateConfig
from detectors.geohazard.velocity import TimeRing
from engine.core.devices import DeviceIndex
from engine.ingest.replay_file import batches

step = st.tuples(
    st.lists(st.booleans(), min_size=3, max_size=3),  # which of 3 channels report
    st.sampled_from([-900.0, 0.0, 300.0, 600.0, 600.0, 600.0, 610.0, 1800.0, 7200.0]),  # s since the last (< 0: late)
    st.sampled_from([6.0, 6.0, 6.0, 3.0, 12.0]),  # the window asked for
    st.booleans(),  # reset channel 0's state (a detector that raised)
)


@settings(max_examples=200, deadline=None)
@given(st.lists(step, min_size=1, max_size=120), st.integers(0, 2**31 - 1))
def test_kept_pair_slopes_give_the_same_velocity_as_fresh_ones(plan, seed):
    rng = np.random.default_rng(seed)
    ring = TimeRing("d", points=16, channels=1, slopes=True)
    ring.reuse_from = 0  # kept slopes however few channels a step has
    kept, fresh = DeviceState(ring.state_spec()), DeviceState(ring.state_spec())
    kept.ensure(3)
    fresh.ensure(3)
    clock = 0.0
    for who, dt, window_h, reset in plan:
        clock += dt
        dev = np.flatnonzero(np.array(who)).astype(np.int64)
        if reset:
            kept.forget(np.array([0]))
            fresh.forget(np.array([0]))
        if not dev.size:
            continue
        k = np.zeros(dev.shape[0], dtype=np.int64)
        ts = np.full(dev.shape[0], clock)
        values = clock / 3600.0 + rng.normal(0.0, 0.5, dev.shape[0])
        ring.push(kept, dev, k, ts, values)
        ring.push(fresh, dev, k, ts, values)
        got = ring.rate_per_h(kept, dev, k, ts, window_h, 3, reuse=True)
        want = ring.rate_per_h(fresh, dev, k, ts, window_h, 3)
        assert np.array_equal(got, want, equal_nan=True)


def test_the_displacement_detector_finds_the_same_with_and_without_kept_slopes(storm_rows):
    cfg = DisplacementRateConfig(metrics=["crack_mm", "disp_mm"], window_h=3.0, velocity_levels={"blue": 1.0})
    rows = [r for r in storm_rows if r[3] in ("crack_mm", "disp_mm")]

    def found(det: DisplacementRate) -> list[tuple[str, float, int, float, object]]:
        state = det.new_state()
        out: list[tuple[str, float, int, float, object]] = []
        for b in batches(rows, DeviceIndex(), 500):
            out += [(f.device, f.ts, int(f.level), f.score, sorted(f.evidence.items())) for f in det.process(b, state)]
        return out

    class Afresh(DisplacementRate):
        reuse_slopes = False

    kept = DisplacementRate(cfg)
    kept.ring.reuse_from = 0
    with_kept = found(kept)
    assert with_kept and with_kept == found(Afresh(cfg))


def test_late_readings_in_small_rings_give_the_same_window_counts():
    # Small rings and many late readings: a late reading at every position of the ring as it moves through.
    rng = np.random.default_rng(7)
    for points in (4, 5, 6):
        ring = TimeRing("d", points=points, channels=1, slopes=True)
        ring.reuse_from = 0
        kept, fresh = DeviceState(ring.state_spec()), DeviceState(ring.state_spec())
        kept.ensure(1)
        fresh.ensure(1)
        dev, k, clock = np.array([0]), np.array([0]), 0.0
        for _ in range(400):
            clock += float(rng.choice([-900.0, 0.0, 600.0, 600.0, 1200.0]))
            ts, value = np.array([clock]), np.array([clock / 3600.0 + rng.normal()])
            ring.push(kept, dev, k, ts, value)
            ring.push(fresh, dev, k, ts, value)
            for window_h in (0.5, 1.0, 3.0):
                got = ring.rate_per_h(kept, dev, k, ts, window_h, 2, reuse=True)
                assert np.array_equal(got, ring.rate_per_h(fresh, dev, k, ts, window_h, 2), equal_nan=True)
