"""device_health takes in at once the sensors whose readings of a batch are all clean: the same findings,
flags, state and silence deadlines as stepping every reading, on any stream (faults of every kind, several
readings of a sensor in a batch, rain and displacement, learned, stated and configured intervals)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import DeviceState
from detectors.device_health import DeviceHealth, DeviceHealthConfig
from engine.core.batch import ReadingBatch
from engine.core.devices import DeviceIndex
from engine.ingest.replay_file import batches


class Stepped(DeviceHealth):
    """Every reading through the step loop (the reference)."""

    def _clean_at_once(
        self,
        batch: ReadingBatch,
        state: DeviceState,
        rows: np.ndarray,
        clock: np.ndarray,
        clock_before: np.ndarray,
        deadline_of_row: np.ndarray,
    ) -> np.ndarray:
        return rows


reading = st.tuples(
    st.integers(0, 3),  # device: 0-1 crack meters, 2 a rain gauge, 3 a GNSS station
    st.sampled_from([1.0, 1.0, 1.0, 1.0, 0.0, -2.0, 0.05, 30.0, 4000.0]),  # s since its last (0: a repeat)
    st.sampled_from(["same", "drift", "drift", "drift", "spike", "range"]),  # what the value does
)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(reading, min_size=1, max_size=160),
    st.sampled_from([1, 5, 30, 1000]),
    st.sampled_from([None, 1.0]),  # the detector's configured interval
    st.booleans(),  # the site config states device 1's interval
)
def test_clean_sensors_at_once_give_what_stepping_every_reading_gives(plan, batch_size, interval, stated):
    cfg = DeviceHealthConfig(expected_interval_s=interval, stuck_count=4, min_silence_s=5.0)
    names = [("crack-0", "crack_mm"), ("crack-1", "crack_mm"), ("rain-2", "rain_mm"), ("gnss-3", "disp_mm")]
    clock, value = np.full(4, 1.8e9), np.array([5.0, 5.0, 0.0, 100.0])
    rows = []
    for d, dt, what in plan:
        clock[d] += dt
        if what == "drift":
            value[d] += 0.001 * (d + 1)
        device, metric = names[d]
        v = {"same": value[d], "drift": value[d], "spike": value[d] + 500.0, "range": -9999.0}[what]
        if metric == "rain_mm":
            v = {"same": 0.2, "drift": 0.4, "spike": 390.0, "range": -1.0}[what]
        rows.append((float(clock[d]), "S1", device, metric, float(v)))

    def run(det: DeviceHealth) -> tuple[list[object], list[list[int]], DeviceState]:
        devices = DeviceIndex()
        if stated:
            devices.set_expected_interval(devices.slot("S1", "crack-1"), 1.0)
        state = det.new_state()
        found: list[object] = []
        flags: list[list[int]] = []
        for b in batches(rows, devices, batch_size):
            found += [(f.row, f.device, f.ts, sorted(f.evidence.items())) for f in det.process(b, state)]
            flags.append(b.flags.tolist())
        return found, flags, state

    got, got_flags, got_state = run(DeviceHealth(cfg))
    want, want_flags, want_state = run(Stepped(cfg))
    assert got == want
    assert got_flags == want_flags
    for name in want_state.arrays:
        assert np.array_equal(got_state[name], want_state[name], equal_nan=True), name


def test_a_clean_one_second_stream_is_not_stepped() -> None:
    # The gateway batch of the ingest benchmark: five crack meters, twenty one-second readings each.
    det = DeviceHealth(DeviceHealthConfig())
    state = det.new_state()
    devices = DeviceIndex()
    for second in (0, 20):
        rows = [
            (1.8e9 + second + j, "S1", f"crack-{d}", "crack_mm", 1.0 + 0.001 * j) for d in range(5) for j in range(20)
        ]
        batch = next(batches(rows, devices, 1000))
        left = det._clean_at_once(
            batch, state, batch.rows_of(det.metrics, include_suspect=True), batch.ts, batch.ts, np.full(100, np.inf)
        )
        assert left.size == 0  # every sensor taken in at once
