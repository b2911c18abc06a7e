"""Robust rates from the recent readings of each channel: a ring of (time, value) and Theil's estimator.

GNSS positions carry millimetres of noise from one epoch to the next, so a raw difference of consecutive
readings is mostly noise. The rate here is Theil's (1950) estimator: the median of the slopes between
pairs of readings half the window apart, over the readings of the last ``window_h`` hours. A median has
a 29 % breakdown point: isolated spikes and multipath outliers do not move it.
"""

from __future__ import annotations

import math
from typing import ClassVar, Generic, Literal, TypeVar

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
    ordered = np.sort(x if use.all() else x[use], axis=1)  # NaN sorts last
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

    # Kept slopes and bisection pay for their extra numpy calls only on a large step (a big batch's readings,
    # not the few channels of a step of one-second readings): fewer channels x points than this and the ring
    # is gathered and every pair computed, as without kept slopes (the same numbers either way).
    reuse_from = 32_768

    def __init__(self, name: str, points: int, channels: int, slopes: bool = False) -> None:
        self.name = name
        self.points = points
        self.channels = channels
        self.slopes = slopes

    def state_spec(self) -> dict[str, StateArray]:
        shape = (self.channels, self.points)
        spec = {
            f"{self.name}_t": StateArray(np.float64, np.nan, shape),
            f"{self.name}_v": StateArray(np.float64, np.nan, shape),
            f"{self.name}_n": StateArray(np.int64, 0, (self.channels,)),
        }
        if self.slopes:
            # Theil's pair slopes of the latest window, kept between readings: with the same number of pairs
            # ``_sh``, the window of the next reading shares all but one pair with this one. ``_s[slot of a]``
            # is the slope from reading ``a`` (the a-th pushed) to reading ``a + _sh``, held for the readings
            # ``a`` in ``[_s0, _s1)``.
            spec.update(
                {
                    f"{self.name}_s": StateArray(np.float64, np.nan, shape),
                    f"{self.name}_sh": StateArray(np.int64, -1, (self.channels,)),
                    f"{self.name}_s0": StateArray(np.int64, 0, (self.channels,)),
                    f"{self.name}_s1": StateArray(np.int64, 0, (self.channels,)),
                    # The latest reading that came earlier than the one before it (-1: none): while it has
                    # left the ring, the ring's times do not fall and a window is found by bisection.
                    f"{self.name}_d": StateArray(np.int64, -1, (self.channels,)),
                }
            )
        return spec

    def push(self, st: DeviceState, dev: I64, k: I64, ts: F64, values: F64) -> None:
        channel = dev * self.channels + k
        counts = st[f"{self.name}_n"].reshape(-1)
        n = counts.take(channel)
        at = channel * self.points + n % self.points
        if self.slopes:
            before = st[f"{self.name}_t"].reshape(-1).take(channel * self.points + (n - 1) % self.points)
            late = (n > 0) & (ts < before)
            if late.any():
                st[f"{self.name}_d"].reshape(-1)[channel[late]] = n[late]
        st[f"{self.name}_t"].reshape(-1)[at] = ts
        st[f"{self.name}_v"].reshape(-1)[at] = values
        counts[channel] = n + 1

    def push_all(self, st: DeviceState, dev: I64, k: I64, ts: F64, values: F64) -> None:
        """``push`` of readings of which a channel may have several, in arrival order: the state is as if they
        had been pushed one at a time (a channel's last ``points`` of them land in its ring).

        >>> ring = TimeRing("d", points=3, channels=1, slopes=True)
        >>> st = DeviceState(ring.state_spec()); st.ensure(2)
        >>> ring.push_all(st, np.array([0, 1, 0, 0, 0]), np.zeros(5, np.int64), np.array([1., 5, 2, 4, 3]), np.ones(5))
        >>> st["d_t"][:2, 0].tolist(), st["d_n"][:2, 0].tolist(), st["d_d"][:2, 0].tolist()  # 3 came late
        ([[3.0, 2.0, 4.0], [5.0, nan, nan]], [4, 1], [3, -1])
        """
        p = self.points
        channel = dev * self.channels + k
        order = np.argsort(channel, kind="stable")
        ch, t_sorted, v_sorted = channel[order], ts[order], values[order]
        first = np.ones(ch.shape[0], dtype=bool)
        first[1:] = ch[1:] != ch[:-1]
        idx = np.arange(ch.shape[0])
        start = np.maximum.accumulate(np.where(first, idx, 0))
        counts = st[f"{self.name}_n"].reshape(-1)
        n = counts.take(ch) + (idx - start)  # each reading's number in its channel
        t_ring = st[f"{self.name}_t"].reshape(-1)
        if self.slopes:
            before = np.empty_like(t_sorted)
            before[1:] = t_sorted[:-1]
            before[first] = t_ring.take(ch[first] * p + (n[first] - 1) % p)
            late = (n > 0) & (t_sorted < before)
            if late.any():
                np.maximum.at(st[f"{self.name}_d"].reshape(-1), ch[late], n[late])  # the latest late one
        last = np.ones(ch.shape[0], dtype=bool)
        last[:-1] = first[1:]
        end = idx[last]  # each channel's last row
        total = np.repeat(n[end] + 1, np.diff(np.r_[0, end + 1]))
        keep = n >= total - p  # older ones would be overwritten within this batch
        at = ch[keep] * p + n[keep] % p
        t_ring[at] = t_sorted[keep]
        st[f"{self.name}_v"].reshape(-1)[at] = v_sorted[keep]
        counts[ch[last]] = n[last] + 1

    def span_at_most(self, st: DeviceState, dev: I64, k: I64, ts: F64) -> F64:
        """Per row, a bound on the time its channel's readings span at any of these readings (pushed in
        order): the newest of them less the oldest time in the ring or among them."""
        p = self.points
        channel = dev * self.channels + k
        uniq, inv = np.unique(channel, return_inverse=True)
        n = st[f"{self.name}_n"].reshape(-1).take(uniq)
        t_state = st[f"{self.name}_t"].reshape(-1)
        # Where no late reading is in the ring its times rise: the oldest is the first reading it holds.
        oldest = t_state.take(uniq * p + np.maximum(n - p, 0) % p)
        if self.slopes:
            descent = st[f"{self.name}_d"].reshape(-1).take(uniq)
            jumbled = np.flatnonzero((descent >= 0) & (descent > n - p))
        else:
            jumbled = np.arange(uniq.shape[0])
        if jumbled.size:
            with np.errstate(invalid="ignore"):
                rings = t_state.reshape(-1, p).take(uniq[jumbled], axis=0)
                oldest[jumbled] = np.fmin.reduce(rings, axis=1)
        low = np.full(uniq.shape[0], np.inf)
        high = np.full(uniq.shape[0], -np.inf)
        np.minimum.at(low, inv, ts)
        np.maximum.at(high, inv, ts)
        return np.asarray((high - np.fmin(low, oldest))[inv], dtype=np.float64)

    def recent(self, st: DeviceState, dev: I64, k: I64) -> tuple[F64, F64]:
        """Each channel's ring, oldest first (NaN where not yet filled)."""
        p = self.points
        channel = dev * self.channels + k
        n = st[f"{self.name}_n"].reshape(-1).take(channel)
        at = (n % p)[:, None] + np.arange(p)[None, :]
        at -= p * (at >= p)
        at += (channel * p)[:, None]
        return st[f"{self.name}_t"].reshape(-1).take(at), st[f"{self.name}_v"].reshape(-1).take(at)

    def window_s(
        self, st: DeviceState, dev: I64, k: I64, now: F64, window_h: float, min_points: int, max_h: float
    ) -> F64:
        """The window each channel's rate is taken over: ``window_h``, or as much longer as it takes to hold
        the channel's last ``min_points`` readings (a slow sensor), at most ``max_h``."""
        p = self.points
        channel = dev * self.channels + k
        n = st[f"{self.name}_n"].reshape(-1).take(channel)
        if min_points > p:
            return np.full(dev.shape[0], window_h * 3600.0)
        oldest_needed = st[f"{self.name}_t"].reshape(-1).take(channel * p + (n - min_points) % p)
        with np.errstate(invalid="ignore"):
            need = np.where(n >= min_points, now - oldest_needed, 0.0)
        return np.asarray(
            np.clip(np.nan_to_num(need), window_h * 3600.0, max(max_h, window_h) * 3600.0), dtype=np.float64
        )

    def too_slow(self, st: DeviceState, dev: I64, k: I64, few: int, need: int, max_h: float) -> npt.NDArray[np.bool_]:
        """Channels whose cadence (the mean interval of their last ``few`` readings) would spread ``need``
        readings over more than ``max_h`` hours."""
        p = self.points
        channel = dev * self.channels + k
        n = st[f"{self.name}_n"].reshape(-1).take(channel)
        t = st[f"{self.name}_t"].reshape(-1)
        if few > p or few < 2:
            return np.zeros(dev.shape[0], dtype=bool)
        newest = t.take(channel * p + (n - 1) % p)
        oldest = t.take(channel * p + (n - few) % p)
        with np.errstate(invalid="ignore"):
            step = (newest - oldest) / (few - 1)
            return np.asarray((n >= few) & (step * (need - 1) > max_h * 3600.0), dtype=bool)

    def rate_per_h(
        self,
        st: DeviceState,
        dev: I64,
        k: I64,
        now: F64,
        window_h: float | F64,
        min_points: int | I64,
        reuse: bool = False,
    ) -> F64:
        """Theil's slope (units per hour) over readings of the last ``window_h`` (one for all channels or one
        each); NaN with fewer than ``min_points`` (one for all or one each).

        Each channel's ring is gathered once, as one contiguous row; times rise within a channel, so the
        readings inside the window are the newest ``count`` of them, and the pairs half the window apart
        are picked out of those rows by position (ring slot of the ``j``-th oldest: ``(n + j) % points``).
        With ``reuse`` (a ring made with ``slopes``, called for every reading with the same window rule),
        the pair slopes are kept between calls: a channel whose window has as many pairs as at its last
        reading computes only its newest pair and reads the others back (the same numbers, computed once).
        """
        p = self.points
        channel = dev * self.channels + k
        n = st[f"{self.name}_n"].reshape(-1).take(channel)
        window_s = np.asarray(window_h, dtype=np.float64) * 3600.0
        if reuse and self.slopes and dev.shape[0] * p >= self.reuse_from:
            t_state = st[f"{self.name}_t"].reshape(-1)
            count = self.count_since(st, channel, n, np.broadcast_to(now - window_s, n.shape))
            base = channel * p
            oldest = (n - count) % p
            span = t_state.take(base + (n - 1) % p) - t_state.take(base + oldest)
            use = (count >= min_points) & (count > 0) & (span >= window_s / 2.0)
            return row_median(self.kept_slopes(st, channel, n, count, count // 2, oldest), use)
        t = st[f"{self.name}_t"].reshape(-1, p).take(channel, axis=0)
        with np.errstate(invalid="ignore"):
            count = np.count_nonzero(t >= (now - window_s)[:, None], axis=1)  # NaN (empty) is never inside
        half = count // 2
        oldest = (n - count) % p  # ring slot of the oldest reading in the window
        rows = np.arange(dev.shape[0]) * p
        t_flat = t.reshape(-1)
        # The readings must span at least half the window: a few early points are no velocity.
        span = t_flat.take(rows + (n - 1) % p) - t_flat.take(rows + oldest)
        covered = (count > 0) & (span >= window_s / 2.0)
        use = (count >= min_points) & covered
        v = st[f"{self.name}_v"].reshape(-1, p).take(channel, axis=0)
        return row_median(self.pair_slopes(t_flat, v.reshape(-1), rows, oldest, half), use)

    def count_since(self, st: DeviceState, channel: I64, n: I64, since: F64) -> I64:
        """How many of each channel's readings are stamped ``since`` or later: by bisection where the ring's
        times do not fall (the usual case: no late reading in it), else by comparing the whole ring."""
        p = self.points
        t_state = st[f"{self.name}_t"].reshape(-1)
        descent = st[f"{self.name}_d"].reshape(-1).take(channel)
        ordered = (descent < 0) | (descent <= n - p)
        count = np.zeros(channel.shape[0], dtype=np.int64)
        if not bool(ordered.all()):
            r = np.flatnonzero(~ordered)
            t = t_state.reshape(-1, p).take(channel[r], axis=0)
            with np.errstate(invalid="ignore"):
                count[r] = np.count_nonzero(t >= since[r][:, None], axis=1)
        if ordered.any():
            r = np.flatnonzero(ordered)
            base, last, cut = channel[r] * p, n[r], since[r]
            lo, hi = np.maximum(last - p, 0), last.copy()  # the first reading at or after `since` is in [lo, hi]
            for _ in range(max(p, 1).bit_length()):
                open_ = lo < hi
                if not open_.any():
                    break
                mid = (lo + hi) // 2
                inside = t_state.take(base + mid % p) >= cut
                hi = np.where(open_ & inside, mid, hi)
                lo = np.where(open_ & ~inside, mid + 1, lo)
            count[r] = last - lo
        return count

    def pair_slopes(self, t_flat: F64, v_flat: F64, rows: I64, oldest: I64, half: I64) -> F64:
        """The slopes between the readings ``half`` apart in each gathered row (row ``r`` at ``rows[r]`` of
        ``t_flat``/``v_flat``), NaN beyond a row's ``half`` pairs or where time does not advance."""
        p = self.points
        i = np.arange(max(int(half.max(initial=0)), 1))  # as many pairs as the fullest window needs
        a = oldest[:, None] + i[None, :]
        a -= p * (a >= p)
        b = ((oldest + half) % p)[:, None] + i[None, :]
        b -= p * (b >= p)
        a += rows[:, None]
        b += rows[:, None]
        dt = (t_flat.take(b) - t_flat.take(a)) / 3600.0
        dv = v_flat.take(b) - v_flat.take(a)
        with np.errstate(invalid="ignore", divide="ignore"):
            if bool((half == i.shape[0]).all()) and bool((dt > 0).all()):  # every window full and in order
                return np.asarray(dv / dt, dtype=np.float64)
            return np.asarray(np.where((i[None, :] < half[:, None]) & (dt > 0), dv / dt, np.nan), dtype=np.float64)

    def kept_slopes(self, st: DeviceState, channel: I64, n: I64, count: I64, half: I64, oldest: I64) -> F64:
        """``pair_slopes`` of each channel's window, read back from the slopes kept in the state where they
        are there (computing the newest pair where only it is missing), computed and kept where not."""
        p, name = self.points, self.name
        s_flat, v_state = st[f"{name}_s"].reshape(-1), st[f"{name}_v"].reshape(-1)
        t_state = st[f"{name}_t"].reshape(-1)
        kept_h, s0_all, s1_all = (st[f"{name}_{x}"].reshape(-1) for x in ("sh", "s0", "s1"))
        first = n - count  # the window's oldest reading (the first-th pushed)
        s0, s1 = s0_all.take(channel), s1_all.take(channel)
        same = (kept_h.take(channel) == half) & (s0 <= first) & (half > 0)
        newest = first + half - 1  # the window's newest pair starts here
        one_more = same & (s1 == newest)
        steady = bool(one_more.all())  # the usual case: every window moved on by one reading
        if steady or one_more.any():
            r = slice(None) if steady else np.flatnonzero(one_more)
            a, b = newest[r] % p, (newest[r] + half[r]) % p
            base = channel[r] * p
            dt = (t_state.take(base + b) - t_state.take(base + a)) / 3600.0
            dv = v_state.take(base + b) - v_state.take(base + a)
            with np.errstate(invalid="ignore", divide="ignore"):
                s_flat.put(base + a, np.where(dt > 0, dv / dt, np.nan))
            s1_all[channel[r]] = newest[r] + 1
        kept = np.ones(channel.shape[0], dtype=bool) if steady else same & (s1_all.take(channel) > newest)
        width = max(int(half.max(initial=0)), 1)
        i = np.arange(width)
        if steady and bool((half == width).all()):  # every window as wide: its slopes are the whole rows
            at = (first % p)[:, None] + i[None, :]
            at -= p * (at >= p)
            return np.asarray(s_flat.take((channel * p)[:, None] + at), dtype=np.float64)
        out = np.full((channel.shape[0], width), np.nan)
        if kept.any():
            r = np.flatnonzero(kept)
            at = (first[r] % p)[:, None] + i[None, :]
            at -= p * (at >= p)
            got = s_flat.take((channel[r] * p)[:, None] + at)
            out[r] = np.where(i[None, :] < half[r][:, None], got, np.nan)
        fresh = ~kept & (half > 0)
        if fresh.any():
            r = np.flatnonzero(fresh)
            v = v_state.reshape(-1, p).take(channel[r], axis=0)
            t = t_state.reshape(-1, p).take(channel[r], axis=0)
            slopes = self.pair_slopes(t.reshape(-1), v.reshape(-1), np.arange(r.shape[0]) * p, oldest[r], half[r])
            out[r, : slopes.shape[1]] = slopes
            # Keep them: slot of reading first + j holds the pair (first + j, first + j + half).
            held = i[None, : slopes.shape[1]] < half[r][:, None]
            at = (first[r] % p)[:, None] + i[None, : slopes.shape[1]]
            at -= p * (at >= p)
            s_flat.put(((channel[r] * p)[:, None] + at)[held], slopes[held])
            kept_h[channel[r]] = half[r]
            s0_all[channel[r]] = first[r]
            s1_all[channel[r]] = first[r] + half[r]
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
    max_window_h: float = Field(
        2160.0,
        gt=0,
        description="A slow sensor's window widens to hold its last `min_points` readings (a GNSS survey every 11 "
        "days gets a 55-day window), up to this many hours; 0 < it <= window_h turns widening off.",
    )
    slow_min_points: int = Field(
        6,
        ge=3,
        description="A sensor whose cadence (the mean interval of its last readings) spreads `min_points` readings "
        "over more than `max_window_h` gets its velocity from its last this many instead, in a window widened to "
        "hold them (still at most `max_window_h`): GNSS surveyed every 11 days is rated on 6 surveys (55 days) "
        "where 24 would need 253. At least `min_points` turns this off.",
    )


S = TypeVar("S", bound=SlopeSensorConfig)


class SlopeSensorDetector(Detector[S], Generic[S]):
    """Base of the detectors that read velocity off cumulative displacement: its metrics and reading ring."""

    # Keep Theil's pair slopes between readings (a detector that takes a velocity at every reading).
    reuse_slopes: ClassVar[bool] = False

    def __init__(self, config: S) -> None:
        super().__init__(config)
        self.metrics = tuple(config.metrics)  # type: ignore[misc]
        self.metric_ids = tuple(METRIC_INDEX[m] for m in self.metrics)
        self.ring = TimeRing("disp", config.points, len(self.metrics), slopes=self.reuse_slopes)

    def velocity_per_day(
        self, state: DeviceState, dev: I64, k: I64, ts: F64, window_h: float | None = None, min_points: int = 0
    ) -> F64:
        """Speed (units/day, sign dropped) over the last ``window_h`` (default: the config's window, whose
        pair slopes are kept between readings where ``reuse_slopes``)."""
        return self.velocity_and_window(state, dev, k, ts, window_h, min_points)[0]

    def velocity_and_window(
        self, state: DeviceState, dev: I64, k: I64, ts: F64, window_h: float | None = None, min_points: int = 0
    ) -> tuple[F64, F64]:
        """``velocity_per_day`` and the window (hours) it was taken over, adapted to each sensor's cadence."""
        window = self.config.window_h if window_h is None else window_h
        window_s, points = self.adapted_window(state, dev, k, ts, window, min_points or self.config.min_points)
        reuse = self.reuse_slopes and window_h is None and not min_points
        velocity = np.abs(self.ring.rate_per_h(state, dev, k, ts, window_s / 3600.0, points, reuse)) * 24.0
        return velocity, window_s / 3600.0

    def adapted_window(
        self, state: DeviceState, dev: I64, k: I64, ts: F64, window_h: float, min_points: int
    ) -> tuple[F64, I64]:
        """The window (s) and the readings each sensor's velocity needs, adapted to its cadence: ``window_h``
        with ``min_points``, widened to hold the last ``min_points`` readings of a slow sensor, and for one too
        slow for that within ``max_window_h`` the last ``slow_min_points`` readings (bounded the same way)."""
        cfg = self.config
        window_s = self.ring.window_s(state, dev, k, ts, window_h, min_points, cfg.max_window_h)
        points = np.full(dev.shape[0], min_points, dtype=np.int64)
        few = min(min_points, cfg.slow_min_points)
        if few < min_points:
            slow = self.ring.too_slow(state, dev, k, few, min_points, max(cfg.max_window_h, window_h))
            if slow.any():
                wide = self.ring.window_s(state, dev, k, ts, window_h, few, cfg.max_window_h)
                window_s = np.where(slow, wide, window_s)
                points = np.where(slow, few, points)
        return window_s, points

    def cadence_problem(self, interval_s: float) -> str | None:
        cfg = self.config
        longest_h = max(cfg.max_window_h, cfg.window_h)
        fewest = min(cfg.min_points, cfg.slow_min_points)
        need_h = interval_s * (fewest - 1) / 3600.0
        if need_h > longest_h:
            return (
                f"{fewest} readings {interval_s:g} s apart span more than max_window_h={longest_h:g} h: no "
                f"velocity ever; raise max_window_h to {need_h:g} or lower slow_min_points"
            )
        if cfg.min_points > cfg.points:
            return f"points={cfg.points} cannot hold min_points={cfg.min_points} readings"
        span_s = interval_s * (cfg.points - 1)
        if span_s < cfg.window_h * 3600.0 / 2.0:  # a rate needs readings spanning half its window
            need = math.ceil(cfg.window_h * 3600.0 / 2.0 / interval_s) + 1
            fix = (
                f"raise points to {need}"
                if need <= 1024
                else f"send a reading every {math.ceil(cfg.window_h * 1800.0 / 1023)} s or less often"
            )
            return (
                f"points={cfg.points} readings {interval_s:g} s apart span {span_s:g} s, less than half the "
                f"{cfg.window_h:g} h window: no velocity ever; {fix}, or lower window_h"
            )
        return None

    def window_h(self, state: DeviceState, dev: I64, k: I64, ts: F64) -> F64:
        """The window (hours) each sensor's velocity is taken over, adapted to its cadence."""
        cfg = self.config
        return self.adapted_window(state, dev, k, ts, cfg.window_h, cfg.min_points)[0] / 3600.0
