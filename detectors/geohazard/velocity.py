"""Robust rates from the recent readings of each channel: a ring of (time, value) and Theil's estimator.

GNSS positions carry millimetres of noise from one epoch to the next, so a raw difference of consecutive
readings is mostly noise. The rate here is Theil's (1950) estimator: the median of the slopes between
pairs of readings half the window apart, over the readings of the last ``window_h`` hours. A median has
a 29 % breakdown point: isolated spikes and multipath outliers do not move it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import DetectorConfig, DeviceState, StateArray

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


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

    def rate_per_h(self, st: DeviceState, dev: I64, k: I64, now: F64, window_h: float, min_points: int) -> F64:
        """Theil's slope (units per hour) over readings of the last ``window_h``; NaN with too few."""
        t, v = self.recent(st, dev, k)
        with np.errstate(invalid="ignore"):
            inside = t >= (now - window_h * 3600.0)[:, None]
        # Readings in the window are the newest ones, so they sit at the end of each ring.
        count = inside.sum(axis=1)
        half = count // 2
        start = self.points - count
        i = np.arange(self.points // 2)[None, :]
        ok = i < half[:, None]
        a = np.minimum(start[:, None] + i, self.points - 1)
        b = np.minimum(a + half[:, None], self.points - 1)
        rows = np.arange(t.shape[0])[:, None]
        dt = (t[rows, b] - t[rows, a]) / 3600.0
        ok &= dt > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            slopes = np.where(ok, (v[rows, b] - v[rows, a]) / np.where(ok, dt, 1.0), np.nan)
        out = np.full(t.shape[0], np.nan)
        # The readings must span at least half the window: a few early points are no velocity.
        newest = t[:, -1]
        oldest = t[rows[:, 0], np.minimum(start, self.points - 1)]
        covered = (newest - oldest) >= window_h * 1800.0
        enough = (count >= min_points) & ok.any(axis=1) & covered
        if enough.any():
            out[enough] = np.nanmedian(slopes[enough], axis=1)
        return out


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
