"""Theil velocity with the pair slopes kept between readings equals computing every pair afresh: on any
reporting pattern (regular, jittered, gaps, repeated times, late readings, a window that changes its number
of pairs), several channels per step, rings that wrap, and sensors whose state is reset."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import DeviceState
from detectors.geohazard.displacement_rate import DisplacementRate, DisplacementRateConfig
from detectors.geohazard.inverse_velocity import InverseVelocity, InverseVelocityConfig
from detectors.geohazard.velocity import TimeRing
from engine.core.batch import ReadingBatch
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


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([-5.0, 0.0, 1.0, 1.0, 2.0, 600.0])), max_size=40))
def test_pushing_a_batch_at_once_leaves_the_ring_as_pushing_one_at_a_time(readings):
    ring = TimeRing("d", points=5, channels=1, slopes=True)
    at_once, one_by_one = DeviceState(ring.state_spec()), DeviceState(ring.state_spec())
    at_once.ensure(3)
    one_by_one.ensure(3)
    clock = np.zeros(3)
    dev, ts = [], []
    for d, dt in readings:
        clock[d] += dt
        dev.append(d)
        ts.append(clock[d])
    if not dev:
        return
    dev_a, ts_a = np.array(dev, dtype=np.int64), np.array(ts)
    values = np.arange(len(dev), dtype=np.float64)
    k = np.zeros(len(dev), dtype=np.int64)
    half = len(dev) // 2  # two batches: the second pushes onto rings the first left
    for part in (slice(0, half), slice(half, None)):
        ring.push_all(at_once, dev_a[part], k[part], ts_a[part], values[part])
        for i in range(len(dev))[part]:
            ring.push(one_by_one, dev_a[i : i + 1], k[i : i + 1], ts_a[i : i + 1], values[i : i + 1])
    for name in ("d_t", "d_v", "d_n", "d_d"):
        assert np.array_equal(at_once[name], one_by_one[name], equal_nan=True), name


mixed_stream = st.lists(
    st.tuples(
        st.integers(0, 3),  # device: 0-1 read every second, 2-3 every ten minutes (rated)
        st.sampled_from([1.0, 1.0, 1.0, 0.0, -3.0, 5.0]),  # time step in the device's own unit
        st.floats(-0.5, 3.0),  # movement since the last reading
    ),
    min_size=1,
    max_size=150,
)


@settings(max_examples=60, deadline=None)
@given(mixed_stream, st.sampled_from([1, 7, 40, 1000]))
def test_channels_without_a_velocity_taken_in_at_once_change_nothing(plan, batch_size):
    # Sensors whose readings cannot span half the window (one-second crack meters) are taken in without the
    # step loop: findings and every state array but the kept-slope cache as when every reading is stepped.
    cfg = DisplacementRateConfig(metrics=["crack_mm"], window_h=1.0, points=12, min_points=3, baseline_h=2.0)
    rows, clock, disp = [], np.full(4, 1.8e9), np.zeros(4)
    for d, step_, move in plan:
        clock[d] += step_ * (1.0 if d < 2 else 600.0)
        disp[d] += move
        rows.append((float(clock[d]), "S1", f"crack-{d}", "crack_mm", float(disp[d])))

    class Stepped(DisplacementRate):
        def without_unrated(self, batch: ReadingBatch, state: DeviceState, rows: np.ndarray) -> np.ndarray:
            return rows

    def run(det: DisplacementRate) -> tuple[list[object], DeviceState]:
        state = det.new_state()
        out: list[object] = []
        for b in batches(rows, DeviceIndex(), batch_size):
            out += [(f.device, f.ts, int(f.level), f.score, sorted(f.evidence.items())) for f in det.process(b, state)]
        return out, state

    got, got_state = run(DisplacementRate(cfg))
    want, want_state = run(Stepped(cfg))
    assert got == want
    for name in ("disp_t", "disp_v", "disp_n", "disp_d", "base_sum", "base_n", "base_start", "active"):
        assert np.array_equal(got_state[name], want_state[name], equal_nan=True), name


@settings(max_examples=60, deadline=None)
@given(mixed_stream, st.sampled_from([1, 7, 40, 1000]))
def test_readings_that_sample_no_velocity_taken_in_at_once_change_no_forecast(plan, batch_size):
    # The failure forecast samples a velocity once per sample_h bin: sensors with no reading due here (a
    # one-second crack meter between its hourly samples) only push theirs, all at once, as the steps would.
    cfg = InverseVelocityConfig(
        metrics=["crack_mm"], window_h=0.5, points=12, min_points=3, sample_h=0.25, fit_window_h=3.0,
        min_fit_points=3, min_r2=0.0, max_t_stat=0.1, min_speedup=1.0,
    )  # fmt: skip
    rows, clock, disp, speed = [], np.full(4, 1.8e9), np.zeros(4), np.ones(4)
    for d, step_, move in plan:
        clock[d] += step_ * (1.0 if d < 2 else 600.0)
        speed[d] *= 1.1 if move > 0 else 1.0  # accelerating, mostly
        disp[d] += speed[d]
        rows.append((float(clock[d]), "S1", f"crack-{d}", "crack_mm", float(disp[d])))

    class Stepped(InverseVelocity):
        def without_undue(self, batch: ReadingBatch, state: DeviceState, rows: np.ndarray) -> np.ndarray:
            return rows

    def run(det: InverseVelocity) -> tuple[list[object], DeviceState]:
        state = det.new_state()
        out: list[object] = []
        for b in batches(rows, DeviceIndex(), batch_size):
            out += [(f.device, f.ts, int(f.level), f.score, sorted(f.evidence.items())) for f in det.process(b, state)]
        return out, state

    got, got_state = run(InverseVelocity(cfg))
    want, want_state = run(Stepped(cfg))
    assert got == want
    for name in got_state.arrays:
        assert np.array_equal(got_state[name], want_state[name], equal_nan=True), name
