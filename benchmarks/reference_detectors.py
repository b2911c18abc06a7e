"""Straightforward per-reading Python implementations of detector rules: the baselines of the benchmarks.

Each keeps its state in plain Python objects per gauge and handles one reading at a time, the way a
per-message engine would be written. They implement the same rules as the vectorized detectors, so the
benchmark (and a test) can check that both give the same findings.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

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
