"""The rain window's incremental bookkeeping (only the ring slots of the bins that close are written) leaves
exactly the state, totals and missing bins of rewriting each gauge's whole ring, as the exact methods first
did; on any reporting pattern: every bin, sub-bin reports, gaps shorter and longer than ``max_gap_s``,
silences longer than the ring, late reports, several gauges in one step."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import DeviceState
from detectors.geohazard.rain_window import NO_BIN, RainWindow


def add_rewriting_whole_rings(rw: RainWindow, s: DeviceState, dev, ts, mm) -> None:
    """The first exact form of ``RainWindow.add``: each closing gauge's whole ring rewritten (the reference)."""
    b = rw.bin_of(ts)
    cur = s["rain_bin"][dev]
    total = s["rain_total"][dev]
    covered = s["covered_total"][dev]
    last_ts = s["rain_last_ts"][dev]
    new = cur == NO_BIN
    if new.any():
        s["rain_first_bin"][dev[new]] = b[new]
        cur = np.where(new, b, cur)
    gap = np.where(new, 0, b - cur)
    with np.errstate(invalid="ignore"):
        continuous = ts - last_ts <= rw.max_gap_s
    closing = gap >= 1
    if closing.any():
        d, c, bb = dev[closing], cur[closing], b[closing]
        j = np.arange(rw.bins)[None, :]
        k = (bb - 1)[:, None] - ((bb - 1)[:, None] - j) % rw.bins
        fill = k >= c[:, None]
        rain_ring, cov_ring = s["rain_ring"][d], s["covered_ring"][d]
        cov_k = covered[closing][:, None] + np.where(continuous[closing][:, None], k - c[:, None], 0)
        s["rain_ring"][d] = np.where(fill, total[closing][:, None], rain_ring)
        s["covered_ring"][d] = np.where(fill, cov_k, cov_ring)
    newly = np.where(new, 1, np.where(gap >= 1, np.where(continuous, gap, 1), 0))
    s["covered_total"][dev] = covered + newly
    s["rain_total"][dev] = total + mm
    s["rain_bin"][dev] = np.maximum(cur, b)
    s["rain_last_ts"][dev] = np.where(np.isnan(last_ts), ts, np.maximum(last_ts, ts))


# A step: for each of 3 gauges, None (no report) or (seconds since its previous report, rain). Steps of
# -1200 s are late reports; 200,000 s is longer than the 6 h ring.
steps = st.lists(
    st.lists(
        st.one_of(
            st.none(),
            st.tuples(st.sampled_from([-1200.0, 600.0, 3600.0, 3600.0, 3600.0, 7200.0, 14_400.0, 200_000.0]),
                      st.sampled_from([0.0, 0.2, 1.0, 7.5])),
        ),
        min_size=3,
        max_size=3,
    ),
    min_size=1,
    max_size=60,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(steps)
def test_incremental_rain_window_equals_rewriting_whole_rings(plan):
    rw = RainWindow(bin_s=3600.0, span_h=6.0)
    fast, slow = DeviceState(rw.state_spec()), DeviceState(rw.state_spec())
    fast.ensure(3)
    slow.ensure(3)
    clock = np.array([1_000_000 * 3600.0 - 60.0] * 3)
    hours = (1.0, 3.0, 6.0)
    for step in plan:
        dev = np.array([g for g, r in enumerate(step) if r is not None], dtype=np.int64)
        if not dev.size:
            continue
        clock[dev] += np.array([step[g][0] for g in dev])
        mm = np.array([step[g][1] for g in dev])
        rw.add(fast, dev, clock[dev].copy(), mm)
        add_rewriting_whole_rings(rw, slow, dev, clock[dev].copy(), mm)
        for name in rw.state_spec():
            assert np.array_equal(fast[name], slow[name], equal_nan=True), name
        got, want = rw.totals(fast, dev, hours), rw.totals(slow, dev, hours)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
