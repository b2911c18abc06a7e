"""Robust rates from the recent readings of each channel: a ring of (time, value) and Theil's estimator.

GNSS positions carry millimetres of noise from one epoch to the next, so a raw difference of consecutive
readings is mostly noise. The rate here is Theil's (1950) estimator: the median of the slopes between
pairs of readings half the window apart, over the readings of the last ``window_h`` hours. A median has
a 29 % breakdown point: isolated spikes and multipath outliers do not move it.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray
from engine.core.quantities import METRIC_INDEX

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def row_median(x: npt.NDArray[np.float64], use: npt.NDArray[np.bool_]) -> F64:
    """Median of each row's non-NaN values (NaN for rows not in ``use`` or with none): one sort, no loops.

    >>> row_median(np.array([[3.0, np.nan, 1.0, 2.0], [np.nan] * 4]), np.array([True, True])).tolist()
    [2.0, nan]
    """
    out = np.full(x.shape[0], np.nan)
    valid = (~np.isnan(x)).sum(axis=1)
    use = use & (valid > 0)
    if not use.any():
        return out
    ordered = np.sort(x[use], axis=1)  # NaN sorts last
    m = valid[use]
    rows = np.arange(ordered.shape[0])
    out[use] = 0.5 * (ordered[rows, (m - 1) // 2] + ordered[rows, m // 2])
    return out


class TimeRing:
    """The last ``points`` readings of each (device, metric) channel, and robust rates over them.

    >>> ring = TimeRing("d", points=8, channels=1)
    >>> st = DeviceState(ring.state_spec()); st.ensure(1)
    >>> s, k = np.array([0]), np.array([0])
    >>> for h in range(8): ring.push(st, s, k, np.array([h * 3600.0]), np.array([2.0 * h + (5.0 if h == 3 else 0.0)]))
    >>> ring.rate_per_h(st, s, k, np.array([7 * 3600.0]), window_h=12.0, min_points=4).tolist()  # spike at h=3
    [2.0]
    """

    def __init__(self, name: str, points: int, channels: int) -> None:
        self.name = name
        self.points = points
        self.channels = channels

    def state_spec(self) -> dict[str, StateArray]:
        shape = (self.channels, self.points)
        return {
            f"{self.name}_t": StateArray(np.float64, np.nan, shape),
            f"{self.name}_v": StateArray(np.float64, np.nan, shape),
            f"{self.name}_n": StateArray(np.int64, 0, (self.channels,)),
        }

    def push(self, st: DeviceState, dev: I64, k: I64, ts: F64, values: F64) -> None:
        n = st[f"{self.name}_n"][dev, k]
        pos = n % self.points
        st[f"{self.name}_t"][dev, k, pos] = ts
        st[f"{self.name}_v"][dev, k, pos] = values
        st[f"{self.name}_n"][dev, k] = n + 1

    def recent(self, st: DeviceState, dev: I64, k: I64) -> tuple[F64, F64]:
        """Each channel's ring, oldest first (NaN where not yet filled)."""
        n = st[f"{self.name}_n"][dev, k]
        idx = (n[:, None] + np.arange(self.points)[None, :]) % self.points
        rows = np.arange(dev.shape[0])[:, None]
        t = st[f"{self.name}_t"][dev, k][rows, idx]
        v = st[f"{self.name}_v"][dev, k][rows, idx]
        return t, v

    def _at(self, st: DeviceState, suffix: str, base: I64, n: I64, j: npt.NDArray[np.int64]) -> F64:
        """Values at chronological index ``j`` (0 = oldest slot) of each channel's ring, by flat index."""
        flat = st[f"{self.name}_{suffix}"].reshape(-1)
        if j.ndim == 2:
            return flat.take(base[:, None] + (n[:, None] - self.points + j) % self.points)
        return flat.take(base + (n - self.points + j) % self.points)

    def rate_per_h(self, st: DeviceState, dev: I64, k: I64, now: F64, window_h: float, min_points: int) -> F64:
        """Theil's slope (units per hour) over readings of the last ``window_h``; NaN with too few.

        Only the readings in the window are touched: a binary search over the ring (times rise within a
        channel) finds the oldest one, then the pairs half the window apart are gathered directly.
        """
        m = dev.shape[0]
        n = st[f"{self.name}_n"][dev, k]
        base = (dev * self.channels + k) * self.points  # flat offset of each channel's ring
        filled = np.minimum(n, self.points)
        since = now - window_h * 3600.0
        lo = self.points - filled  # oldest filled slot, chronologically
        hi = np.full(m, self.points, dtype=np.int64)
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            t_mid = self._at(st, "t", base, n, np.minimum(mid, self.points - 1))
            inside = active & (t_mid >= since)
            hi = np.where(inside, mid, hi)
            lo = np.where(active & ~inside, mid + 1, lo)
        count = self.points - lo
        half = count // 2
        i = np.arange(max(self.points // 2, 1))[None, :]
        ok = i < half[:, None]
        a = np.minimum(lo[:, None] + i, self.points - 1)
        b = np.minimum(a + half[:, None], self.points - 1)
        t_a, t_b = self._at(st, "t", base, n, a), self._at(st, "t", base, n, b)
        v_a, v_b = self._at(st, "v", base, n, a), self._at(st, "v", base, n, b)
        dt = (t_b - t_a) / 3600.0
        ok &= dt > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            slopes = np.where(ok, (v_b - v_a) / np.where(ok, dt, 1.0), np.nan)
        # The readings must span at least half the window: a few early points are no velocity.
        oldest = self._at(st, "t", base, n, np.minimum(lo, self.points - 1))
        newest = self._at(st, "t", base, n, np.full(m, self.points - 1, dtype=np.int64))
        covered = (count > 0) & ((newest - oldest) >= window_h * 1800.0)
        return row_median(slopes, (count >= min_points) & covered)


class SlopeSensorConfig(DetectorConfig):
    """Fields shared by detectors that read velocity off cumulative displacement."""

    hazard: str = Field("landslide", description="Hazard name findings are filed under.")
    metrics: list[Literal["disp_mm", "crack_mm", "tilt_deg"]] = Field(
        ["crack_mm", "disp_mm"],
        min_length=1,
        description="Cumulative displacement metrics watched; rates are in their units per day.",
    )
    window_h: float = Field(6.0, gt=0, description="Readings of the last this many hours give the velocity.")
    points: int = Field(72, ge=4, le=1024, description="Readings kept per sensor (cover window_h at its rate).")
    min_points: int = Field(6, ge=3, description="No velocity from fewer readings than this in the window.")


S = TypeVar("S", bound=SlopeSensorConfig)


class SlopeSensorDetector(Detector[S], Generic[S]):
    """Base of the detectors that read velocity off cumulative displacement: its metrics and reading ring."""

    def __init__(self, config: S) -> None:
        super().__init__(config)
        self.metrics = tuple(config.metrics)  # type: ignore[misc]
        self.metric_ids = tuple(METRIC_INDEX[m] for m in self.metrics)
        self.ring = TimeRing("disp", config.points, len(self.metrics))

    def velocity_per_day(
        self, state: DeviceState, dev: I64, k: I64, ts: F64, window_h: float | None = None, min_points: int = 0
    ) -> F64:
        """Speed (units/day, sign dropped) over the last ``window_h`` (default: the config's window)."""
        cfg = self.config
        window = cfg.window_h if window_h is None else window_h
        return np.abs(self.ring.rate_per_h(state, dev, k, ts, window, min_points or cfg.min_points)) * 24.0
