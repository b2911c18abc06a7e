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
    history: deque[tuple[int, float]] = field(default_factory=deque)  # (bin, mm), oldest first
    current_bin: int | None = None
    active: bool = False


class ReferenceIntensityDuration:
    """``rainfall_intensity_duration`` (without the AWI gate), one reading at a time, plain Python."""

    def __init__(self, cfg: RainfallIntensityDurationConfig) -> None:
        self.cfg = cfg
        self.durations = sorted(cfg.durations_h)
        self.thresholds = [cfg.threshold_mm_h(d) for d in self.durations]
        self.levels = [cfg.levels.get(name) for name in LEVEL_NAMES]
        self.lowest = min(v for v in self.levels if v is not None)
        self.clear = cfg.clear if cfg.clear is not None else self.lowest
        self.gauges: dict[tuple[str, str], _Gauge] = {}

    def process(self, site: str, device: str, ts: float, mm: float) -> tuple[int, float] | None:
        """The (level, score) of a finding for this reading, or None."""
        g = self.gauges.setdefault((site, device), _Gauge())
        b = math.ceil(ts / self.cfg.bin_s) - 1
        g.current_bin = b if g.current_bin is None else max(g.current_bin, b)
        g.history.append((g.current_bin, mm))
        longest = math.ceil(self.durations[-1] * 3600.0 / self.cfg.bin_s)
        while g.history and g.history[0][0] < g.current_bin - longest:
            g.history.popleft()
        best = -1.0
        for d, threshold in zip(self.durations, self.thresholds, strict=True):
            nb = math.ceil(d * 3600.0 / self.cfg.bin_s)
            first = g.current_bin - nb
            total = sum(m for bin_, m in g.history if bin_ >= first)
            span_h = max(ts - first * self.cfg.bin_s, self.cfg.bin_s) / 3600.0
            best = max(best, total / span_h / threshold)
        if best >= self.lowest:
            g.active = True
        elif best < self.clear:
            g.active = False
        if not g.active:
            return None
        level = 1
        for i, t in enumerate(self.levels, start=1):
            if t is not None and best >= t:
                level = max(level, i)
        return level, best


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
        since = now - cfg.window_h * 3600.0
        pts = [p for p in ring if p[0] >= since]
        half = len(pts) // 2
        slopes = []
        for i in range(half):
            (t0, v0), (t1, v1) = pts[i], pts[i + half]
            if t1 > t0:
                slopes.append((v1 - v0) / ((t1 - t0) / 3600.0))
        covered = bool(pts) and pts[-1][0] - pts[0][0] >= cfg.window_h * 1800.0
        if len(pts) < cfg.min_points or not covered or not slopes:
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
