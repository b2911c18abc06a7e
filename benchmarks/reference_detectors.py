"""Straightforward per-reading Python implementations of detector rules: the baselines of the benchmarks.

Each keeps its state in plain Python objects per gauge and handles one reading at a time, the way a
per-message engine would be written. They implement the same rules as the vectorized detectors, so the
benchmark (and a test) can check that both give the same findings.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from detectors.geohazard.displacement_rate import DisplacementRateConfig
from detectors.geohazard.intensity_duration import RainfallIntensityDurationConfig
from engine.core.levels import LEVEL_NAMES


@dataclass
class _Gauge:
    reports: deque[tuple[float, float]] = field(default_factory=deque)  # (ts, mm) of the longest window
    last_ts: float | None = None
    dry_from: float = 0.0
    start: float = 0.0
    end: float | None = None
    total: float = 0.0
    missing_s: float = 0.0
    pause: list[tuple[float, float]] = field(default_factory=list)  # dry reports after rain: (ts, missing_s)
    active: bool = False


class ReferenceIntensityDuration:
    """``rainfall_intensity_duration`` (without the AWI gate), one reading at a time, plain Python: the storm
    method (the storm's mean intensity and duration as Thresh reports them: a dry report after rain is
    judged when the rain resumes, as a pause, or never, if the storm ends) or fixed windows ``(t - D, t]``
    (``gap_policy`` ``lower_bound`` for windows)."""

    def __init__(self, cfg: RainfallIntensityDurationConfig) -> None:
        self.cfg = cfg
        self.durations = sorted(cfg.durations_h)
        self.thresholds = [cfg.threshold_mm_h(d) for d in self.durations]
        self.levels = [cfg.levels.get(name) for name in LEVEL_NAMES]
        self.lowest = min(v for v in self.levels if v is not None)
        self.clear = cfg.clear if cfg.clear is not None else self.lowest
        self.max_gap_s = cfg.max_gap_s if cfg.max_gap_s is not None else 1.5 * cfg.bin_s
        self.gauges: dict[tuple[str, str], _Gauge] = {}

    def storm_at(self, g: _Gauge, ts: float, total: float, missing_s: float) -> float:
        """The ratio of the storm's intensity to the threshold at a report at ``ts`` with ``total`` mm so far."""
        if self.cfg.gap_policy == "skip" and missing_s > 0:
            return -math.inf
        duration = (ts - g.start) / 3600.0
        if duration <= 0:
            return -math.inf
        return total / duration / self.cfg.threshold_mm_h(duration)

    def storm_judged(self, g: _Gauge, ts: float, mm: float) -> list[tuple[float, float]]:
        """The reports this one decides, in order, as (ts, ratio): -inf for no storm; none for a dry report
        that waits for the storm to resume or end."""
        cfg, interval, gap = self.cfg, self.cfg.bin_s, self.cfg.storm_gap_h * 3600.0
        new = g.last_ts is None
        if g.last_ts is None:
            g.start = g.dry_from = ts - interval
            prev = ts - interval
        else:
            hole = ts - g.last_ts > self.max_gap_s
            prev = ts - interval if hole else g.last_ts
            if hole:
                g.missing_s += ts - g.last_ts - interval
                if cfg.gap_policy == "skip":
                    g.dry_from = max(g.dry_from, prev)
        g.last_ts = ts
        had_rain = g.end is not None and g.total > 0
        out: list[tuple[float, float]] = []
        if mm > 0:
            if not new and prev - g.dry_from >= gap:  # a new storm: the pause was the last one's end
                out += [(t, -math.inf) for t, _ in g.pause]
                g.start, g.total, g.missing_s, g.end = prev, 0.0, 0.0, None
            elif had_rain:  # the rain resumes: the dry reports were a pause of the storm
                out += [(t, self.storm_at(g, t, g.total, missing)) for t, missing in g.pause]
            g.pause = []
            g.total += mm
            g.end = g.dry_from = ts
            out.append((ts, self.storm_at(g, ts, g.total, g.missing_s)))
            return out
        if not had_rain:
            return [(ts, -math.inf)]
        if ts - g.dry_from < gap:
            g.pause.append((ts, g.missing_s))
            return []
        if cfg.gap_policy == "skip":  # the storm may still go on across missing data: keep the hours
            g.pause.append((ts, g.missing_s))
        else:
            out += [(t, -math.inf) for t, _ in g.pause]
            g.pause = []
        return [*out, (ts, -math.inf)]

    def window_ratio(self, g: _Gauge, ts: float, mm: float) -> float:
        bin_s = self.cfg.bin_s
        g.reports.append((ts, mm))
        b = math.ceil(ts / bin_s) - 1
        best = -math.inf
        for d, threshold in zip(self.durations, self.thresholds, strict=True):
            first = b - max(1, math.ceil(round(d * 3600.0 / bin_s, 9))) + 1
            total = math.fsum(m for t, m in g.reports if math.ceil(t / bin_s) - 1 >= first)
            best = max(best, round(total, 9) / d / threshold)
        longest = max(1, math.ceil(self.durations[-1] * 3600.0 / bin_s))
        while g.reports and math.ceil(g.reports[0][0] / bin_s) - 1 < b - longest:
            g.reports.popleft()
        return best

    def process(self, site: str, device: str, ts: float, mm: float) -> list[tuple[float, int, float]]:
        """The findings this reading gives, as (ts, level, score): its own, and those of the dry reports
        before it that it decides (readings in time order)."""
        g = self.gauges.setdefault((site, device), _Gauge())
        storm = self.cfg.method == "storm"
        judged = self.storm_judged(g, ts, mm) if storm else [(ts, self.window_ratio(g, ts, mm))]
        out = []
        for at, best in judged:
            if best >= self.lowest:
                g.active = True
            elif best < self.clear:
                g.active = False
            if not g.active:
                continue
            level = 1
            for i, t in enumerate(self.levels, start=1):
                if t is not None and best >= t:
                    level = max(level, i)
            out.append((at, level, best))
        return out


@dataclass
class _Sensor:
    ring: deque[tuple[float, float]]
    base_start: float | None = None
    base_sum: float = 0.0
    base_n: int = 0
    active: list[bool] = field(default_factory=lambda: [False, False])


class ReferenceDisplacementRate:
    """``displacement_rate`` one reading at a time in plain Python: Theil velocity, baseline, angle, levels."""

    def __init__(self, cfg: DisplacementRateConfig) -> None:
        self.cfg = cfg
        self.tests = []
        for levels, clear in ((cfg.velocity_levels, 0.8), (cfg.angle_levels, 0.9)):
            ordered = [levels.get(name) for name in LEVEL_NAMES]
            lowest = min((v for v in ordered if v is not None), default=None)
            self.tests.append((ordered, lowest, lowest * clear if lowest is not None else None))
        self.sensors: dict[tuple[str, str, str], _Sensor] = {}

    def velocity_per_day(self, ring: deque[tuple[float, float]], now: float) -> float:
        cfg = self.cfg
        window_s, longest_s = cfg.window_h * 3600.0, max(cfg.max_window_h, cfg.window_h) * 3600.0
        need, few = cfg.min_points, min(cfg.min_points, cfg.slow_min_points)
        if few < need and 2 <= few <= len(ring):  # too slow for min_points within max_window_h: its last few
            step = (ring[-1][0] - ring[-few][0]) / (few - 1)
            if step * (need - 1) > longest_s:
                need = few
        if len(ring) >= need:  # a slow sensor: widen to hold its last `need` readings
            window_s = min(max(window_s, now - ring[-need][0]), longest_s)
        since = now - window_s
        pts = [p for p in ring if p[0] >= since]
        half = len(pts) // 2
        slopes = []
        for i in range(half):
            (t0, v0), (t1, v1) = pts[i], pts[i + half]
            if t1 > t0:
                slopes.append((v1 - v0) / ((t1 - t0) / 3600.0))
        covered = bool(pts) and pts[-1][0] - pts[0][0] >= window_s / 2.0
        if len(pts) < need or not covered or not slopes:
            return math.nan
        return abs(statistics.median(slopes)) * 24.0

    def process(self, site: str, device: str, metric: str, ts: float, value: float) -> tuple[int, float] | None:
        cfg = self.cfg
        s = self.sensors.setdefault((site, device, metric), _Sensor(deque(maxlen=cfg.points)))
        s.ring.append((ts, value))
        v = self.velocity_per_day(s.ring, ts)
        if cfg.baseline_per_day is not None:
            v0 = cfg.baseline_per_day
        else:
            if s.base_start is None and not math.isnan(v):
                s.base_start = ts
            learning = not math.isnan(v) and s.base_start is not None and ts - s.base_start <= cfg.baseline_h * 3600.0
            if learning:
                s.base_sum += v
                s.base_n += 1
            v0 = max(s.base_sum / s.base_n, cfg.min_baseline_per_day) if s.base_n > 0 and not learning else math.nan
        angle = math.nan
        if not math.isnan(v) and not math.isnan(v0) and v >= cfg.angle_min_velocity_per_day:
            angle = math.degrees(math.atan(v / v0))
        level = 0
        for j, raw_x in enumerate((v, angle)):
            ordered, lowest, clear = self.tests[j]
            if lowest is None or clear is None:
                continue
            x = -math.inf if math.isnan(raw_x) else raw_x
            if x >= lowest:
                s.active[j] = True
            elif x < clear:
                s.active[j] = False
            if s.active[j]:
                raw = max((i for i, t in enumerate(ordered, start=1) if t is not None and x >= t), default=0)
                level = max(level, raw, 1)
        if level == 0:
            return None
        return level, (angle / 45.0 if not math.isnan(angle) else v)
