"""Sliding-window rain totals per gauge, kept as a ring of cumulative totals at the end of each time bin.

A window total over the last ``D`` hours is ``C(now) - C(start)``: one lookup per duration however long
the window, which is what lets one process hold 72 h or 18 days of rain for tens of thousands of gauges.
The window starts at the end of a whole bin, so it spans ``D`` hours plus the elapsed part of the current
bin; intensities divide by that exact span.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from detectors.base import DeviceState, StateArray

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

NO_BIN = np.iinfo(np.int64).min


class RainWindow:
    """Per-gauge ring of cumulative rain at bin ends, ``bins`` long, bins of ``bin_s`` seconds.

    >>> rw = RainWindow(bin_s=3600, span_h=3)
    >>> st = DeviceState(rw.state_spec()); st.ensure(1)
    >>> s = np.array([0])
    >>> for h, mm in [(0, 2.0), (1, 3.0), (2, 4.0), (3, 1.0)]:
    ...     rw.add(st, s, np.array([h * 3600.0 + 60]), np.array([mm]))
    >>> rw.total_since(st, s, np.array([3 * 3600.0 + 60]), 2.0)[0].tolist()  # hours 1, 2 and the current one
    [8.0]
    """

    def __init__(self, bin_s: float, span_h: float) -> None:
        self.bin_s = float(bin_s)
        self.bins = math.ceil(span_h * 3600.0 / self.bin_s) + 2

    def state_spec(self) -> dict[str, StateArray]:
        return {
            "rain_total": StateArray(np.float64, 0.0),
            "rain_bin": StateArray(np.int64, NO_BIN),
            "rain_first_bin": StateArray(np.int64, NO_BIN),
            "rain_ring": StateArray(np.float64, 0.0, (self.bins,)),
        }

    def bin_of(self, ts: F64) -> I64:
        """The bin a report's rain fell in: a report at a bin boundary closes the bin before it."""
        return (np.ceil(ts / self.bin_s) - 1).astype(np.int64)

    def add(self, st: DeviceState, dev: I64, ts: F64, mm: F64) -> None:
        """Add one reading per gauge (``dev`` unique). Late readings count in the current bin."""
        b = self.bin_of(ts)
        cur = st["rain_bin"][dev]
        total = st["rain_total"][dev]
        new = cur == NO_BIN
        if new.any():
            st["rain_first_bin"][dev[new]] = b[new]
            cur = np.where(new, b, cur)
        gap = np.where(new, 0, b - cur)
        # Bins cur .. b-1 closed with the total as it stood before this reading.
        one = gap == 1
        if one.any():
            st["rain_ring"][dev[one], cur[one] % self.bins] = total[one]
        many = gap > 1
        if many.any():
            s, c, g, tot = dev[many], cur[many], np.minimum(gap[many], self.bins), total[many]
            offset = (np.arange(self.bins)[None, :] - (c % self.bins)[:, None]) % self.bins
            ring = st["rain_ring"][s]
            st["rain_ring"][s] = np.where(offset < g[:, None], tot[:, None], ring)
        st["rain_total"][dev] = total + mm
        st["rain_bin"][dev] = np.maximum(cur, b)

    def window_starts(self, st: DeviceState, dev: I64, hours: tuple[float, ...]) -> tuple[F64, F64]:
        """Cumulative total at the start of each ``hours`` window, and the window's start time: a column
        a window, in the order of ``hours``."""
        nb = np.array([math.ceil(h * 3600.0 / self.bin_s) for h in hours], dtype=np.int64)
        if int(nb.max()) + 2 > self.bins:
            raise ValueError(f"window of {max(hours)} h is longer than the ring ({self.bins - 2} bins)")
        start_bin = st["rain_bin"][dev][:, None] - nb[None, :] - 1
        flat = (dev * self.bins)[:, None] + start_bin % self.bins
        c0 = st["rain_ring"].reshape(-1).take(flat)
        c0[start_bin < st["rain_first_bin"][dev][:, None]] = 0.0
        return c0, (start_bin + 1).astype(np.float64) * self.bin_s

    def total_since(self, st: DeviceState, dev: I64, ts: F64, hours: float) -> tuple[F64, F64]:
        """Rain over the last ``hours`` (whole bins) plus the current bin, and that span in hours."""
        total, span = self.totals_since(st, dev, ts, (hours,))
        return total[:, 0], span[:, 0]

    def totals_since(self, st: DeviceState, dev: I64, ts: F64, hours: tuple[float, ...]) -> tuple[F64, F64]:
        """``total_since`` for several windows at once: columns in the order of ``hours``."""
        c0, start = self.window_starts(st, dev, hours)
        return st["rain_total"][dev][:, None] - c0, np.maximum(ts[:, None] - start, self.bin_s) / 3600.0
