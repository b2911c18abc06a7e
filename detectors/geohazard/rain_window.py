"""Sliding-window rain totals per gauge, kept as rings of cumulative totals at the end of each time bin.

A window of ``D`` hours evaluated at a report at ``t`` holds exactly the reports with timestamps in
``(t - D, t]``: the ``D / bin_s`` bins that end with the bin of ``t`` (a report on a bin boundary closes the
bin before it). Its total is ``C(now) - C(start)``: one lookup per duration however long the window,
which is what lets one process hold 18 days of hourly rain for tens of thousands of gauges. Windows are
exact whenever each report falls in its own bin (``bin_s`` no longer than the reporting interval and
reports at a fixed phase, e.g. hourly gauges reporting at hh:59 or on the hour).

Missing data is tracked beside the rain: a report covers the bins since the gauge's previous report
when it came at most ``max_gap_s`` after it, else only its own bin; bins that no report covers (a
silent gauge, lost messages, the time before a gauge's first report) are *missing*. Every window total
comes with its count of missing bins, so a detector can say a window is incomplete and its
``gap_policy`` decide whether an incomplete window may still alarm.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import DeviceState, StateArray

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

NO_BIN = np.iinfo(np.int64).min
GapPolicy = Literal["lower_bound", "skip"]
GAP_POLICY_HELP = (
    "What a window with missing data (a silent gauge, lost reports, less history than the window) may do: "
    "`lower_bound` counts missing rain as none, so totals are lower bounds and may still alarm (the finding "
    "says `complete: false` and how many hours are missing); `skip` never evaluates an incomplete window "
    "(as the USGS program Thresh treats missing or insufficient data)."
)
# The config fields every detector reading rain windows has (rainfall_cumulative, rainfall_intensity_duration).
GapPolicyField = Annotated[GapPolicy, Field(description=GAP_POLICY_HELP)]
MaxGapField = Annotated[
    float | None,
    Field(
        gt=0,
        description="A report covers the time since the previous one if it came within this (s); longer gaps are "
        "missing data. Default 1.5 bins.",
    ),
]


class RainWindow:
    """Per-gauge rings of cumulative rain and covered bins at bin ends, bins of ``bin_s`` seconds.

    >>> rw = RainWindow(bin_s=3600, span_h=6)
    >>> st = DeviceState(rw.state_spec()); st.ensure(1)
    >>> s = np.array([0])
    >>> for h, mm in [(0, 2.0), (1, 3.0), (2, 4.0), (3, 1.0)]:
    ...     rw.add(st, s, np.array([h * 3600.0 + 3540]), np.array([mm]))
    >>> total, missing = rw.totals(st, s, (2.0, 6.0))  # 2 h: bins 2-3; 6 h: 2 bins before the first report
    >>> total.tolist(), missing.tolist()
    ([[5.0, 10.0]], [[0, 2]])
    """

    def __init__(self, bin_s: float, span_h: float, max_gap_s: float | None = None) -> None:
        self.bin_s = float(bin_s)
        self.max_gap_s = 1.5 * self.bin_s if max_gap_s is None else float(max_gap_s)
        self.bins = self.bins_of(span_h) + 2

    def bins_of(self, hours: float) -> int:
        """Bins in a window of ``hours`` (a window shorter than a bin is one bin)."""
        return max(1, math.ceil(round(hours * 3600.0 / self.bin_s, 9)))

    def state_spec(self) -> dict[str, StateArray]:
        return {
            "rain_total": StateArray(np.float64, 0.0),
            "rain_bin": StateArray(np.int64, NO_BIN),
            "rain_first_bin": StateArray(np.int64, NO_BIN),
            "rain_last_ts": StateArray(np.float64, np.nan),
            "rain_ring": StateArray(np.float64, 0.0, (self.bins,)),
            "covered_total": StateArray(np.int64, 0),
            # Covered bins counted from the gauge's first: int32 holds 245,000 years of hourly bins in half the bytes
            "covered_ring": StateArray(np.int32, 0, (self.bins,)),
        }

    def bin_of(self, ts: F64) -> I64:
        """The bin a report's rain fell in: a report at a bin boundary closes the bin before it."""
        return (np.ceil(ts / self.bin_s) - 1).astype(np.int64)

    def add(self, st: DeviceState, dev: I64, ts: F64, mm: F64) -> None:
        """Add one reading per gauge (``dev`` unique). Late readings count in the current bin."""
        b = self.bin_of(ts)
        cur = st["rain_bin"][dev]
        total = st["rain_total"][dev]
        covered = st["covered_total"][dev]
        last_ts = st["rain_last_ts"][dev]
        new = cur == NO_BIN
        if new.any():
            st["rain_first_bin"][dev[new]] = b[new]
            cur = np.where(new, b, cur)
        gap = np.where(new, 0, b - cur)
        with np.errstate(invalid="ignore"):
            continuous = ts - last_ts <= self.max_gap_s  # NaN (first report): not continuous
        closing = gap >= 1
        if closing.any():
            # Bins cur .. b-1 closed: rain as it stood before this reading; covered bins rising one a bin
            # while the reports were continuous (else only the report's own bin counts, below). Only the
            # ring slots of those bins are written (one for a gauge that reports every bin, at most the
            # whole ring after a long silence), not each gauge's whole ring.
            s, c, bb = dev[closing], cur[closing], b[closing]
            m = np.minimum(bb - c, self.bins)  # slots to write per gauge
            if bool((m == 1).all()):
                k = bb - 1
                flat = s * self.bins + k % self.bins
                rain_at = total[closing]
                cov_at = covered[closing] + np.where(continuous[closing], k - c, 0)
            else:
                first = np.cumsum(m) - m
                which = np.repeat(np.arange(m.shape[0]), m)
                k = bb[which] - 1 - (np.arange(which.shape[0]) - first[which])  # the newest m bins below b
                flat = s[which] * self.bins + k % self.bins
                rain_at = total[closing][which]
                cov_at = covered[closing][which] + np.where(continuous[closing][which], k - c[which], 0)
            st["rain_ring"].put(flat, rain_at)
            st["covered_ring"].put(flat, cov_at)
        newly = np.where(new, 1, np.where(gap >= 1, np.where(continuous, gap, 1), 0))
        st["covered_total"][dev] = covered + newly
        st["rain_total"][dev] = total + mm
        st["rain_bin"][dev] = np.maximum(cur, b)
        st["rain_last_ts"][dev] = np.where(np.isnan(last_ts), ts, np.maximum(last_ts, ts))

    def cumulative_before(self, st: DeviceState, dev: I64, bins_back: I64) -> tuple[F64, I64]:
        """Cumulative rain and covered bins at the end of bin ``current - n`` for each ``n`` of
        ``bins_back`` (a column each); zero before the gauge's first bin."""
        if int(bins_back.max()) + 2 > self.bins:
            raise ValueError(f"window of {int(bins_back.max())} bins is longer than the ring ({self.bins - 2})")
        start = st["rain_bin"][dev][:, None] - bins_back[None, :]
        flat = (dev * self.bins)[:, None] + start % self.bins
        before_first = start < st["rain_first_bin"][dev][:, None]
        rain = st["rain_ring"].reshape(-1).take(flat)
        cov = st["covered_ring"].reshape(-1).take(flat).astype(np.int64)
        rain[before_first] = 0.0
        cov[before_first] = 0
        return rain, cov

    def totals(self, st: DeviceState, dev: I64, hours: tuple[float, ...]) -> tuple[F64, I64]:
        """Rain over each window of ``hours`` ending with the gauge's current bin, and the bins of each
        window that no report covered: columns in the order of ``hours``."""
        nb = np.array([self.bins_of(h) for h in hours], dtype=np.int64)
        c0, cov0 = self.cumulative_before(st, dev, nb)
        total = np.round(st["rain_total"][dev][:, None] - c0, 9)  # sums of decimals: no 1e-15 residues
        missing = nb[None, :] - (st["covered_total"][dev][:, None] - cov0)
        return total, np.asarray(missing, dtype=np.int64)

    def cadence_problem(self, interval_s: float, hours: tuple[float, ...]) -> str | None:
        """Why windows of ``hours`` cannot be read from a gauge reporting every ``interval_s``."""
        if interval_s > self.max_gap_s:
            return (
                f"a report covers at most max_gap_s={self.max_gap_s:g} s, so every window misses hours between "
                f"reports: set bin_s and max_gap_s to at least {interval_s:g} s"
            )
        short = [h for h in hours if h * 3600.0 < interval_s]
        if short:
            return f"windows of {', '.join(f'{h:g} h' for h in short)} are shorter than the reporting interval"
        return None

    def missing_hours(self, missing_bins: I64) -> F64:
        return np.asarray(missing_bins * self.bin_s / 3600.0, dtype=np.float64)
