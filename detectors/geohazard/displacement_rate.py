"""``displacement_rate``: velocity, acceleration and the improved tangent angle of a moving slope.

Method: velocity is Theil's robust slope of cumulative displacement (``disp_mm``, ``crack_mm`` or
``tilt_deg``) over the last ``window_h`` hours, in units per day; acceleration is estimated from the
velocity over the last half window against the whole window. Levels come from two tests, the higher
wins:

* velocity thresholds (units per day), for slopes whose safe rate is known;
* the improved tangent angle of Xu, Zeng et al. (2008, *Chinese Journal of Rock Mechanics and
  Engineering* 27(9):1781–1790; Xu 2012): the displacement curve is rescaled by the slope's
  constant-rate velocity ``v0`` so that steady creep runs at 45°, and ``angle = atan(v / v0)``. Xu's
  stages: about 45° constant rate (blue), 45–80° initial acceleration (yellow), 80–85° medium
  acceleration (orange), above 85° imminent failure (red). Measurement noise scatters a constant rate
  both sides of 45°, so the default bands are 40° for blue (the constant-rate stage) and 60° for yellow.
  ``v0`` is configured or
  learned per sensor as its mean velocity over its first ``baseline_h`` hours, and the angle is only
  used while the velocity is at least ``angle_min_velocity_per_day`` (a stable slope that creeps at a
  fraction of a millimetre a day has no meaningful angle).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from detectors.base import DeviceState, StateArray, register
from detectors.decision import (
    LevelThresholds,
    channel_steps,
    channels_repeat,
    hysteresis_level,
    metric_positions,
    thresholds_array,
)
from detectors.geohazard.velocity import SlopeSensorConfig, SlopeSensorDetector
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding


class DisplacementRateConfig(SlopeSensorConfig):
    """Config of the ``displacement_rate`` detector."""

    type: Literal["displacement_rate"] = Field("displacement_rate", description="Detector type.")
    velocity_levels: LevelThresholds = Field(
        {"yellow": 20.0, "orange": 50.0, "red": 100.0},
        description="Velocity (units/day) per level; empty to rely on the tangent angle only.",
    )
    angle_levels: LevelThresholds = Field(
        {"blue": 40.0, "yellow": 60.0, "orange": 80.0, "red": 85.0},
        description="Improved tangent angle (degrees) per level; empty to turn the angle test off.",
    )
    baseline_per_day: float | None = Field(
        None, gt=0, description="Constant-rate velocity v0 (units/day); default: learned per sensor."
    )
    baseline_h: float = Field(24.0, gt=0, description="Hours of velocity averaged to learn v0.")
    min_baseline_per_day: float = Field(
        0.5, gt=0, description="Learned v0 is at least this, so noise on a still slope is no 'constant rate'."
    )
    angle_min_velocity_per_day: float = Field(
        1.0, ge=0, description="The angle test applies only while the velocity is at least this (units/day)."
    )

    @model_validator(mode="after")
    def _some_test(self) -> DisplacementRateConfig:
        if not self.velocity_levels and not self.angle_levels:
            raise ValueError("give velocity_levels, angle_levels or both: with neither the detector never alarms")
        return self


@register
class DisplacementRate(SlopeSensorDetector[DisplacementRateConfig]):
    """Velocity thresholds and the improved tangent angle on cumulative displacement, per sensor.

    >>> import math
    >>> round(math.degrees(math.atan(11.43)), 1)  # velocity 11.4x the constant rate: red
    85.0
    """

    config_class = DisplacementRateConfig
    reuse_slopes = True  # a velocity at every reading: its window shares all but one pair with the last one

    def __init__(self, config: DisplacementRateConfig) -> None:
        super().__init__(config)
        self.tests: list[tuple[np.ndarray, float]] = []
        for levels, clear in ((config.velocity_levels, 0.8), (config.angle_levels, 0.9)):
            arr = thresholds_array(levels)
            self.tests.append((arr, float(np.nanmin(arr)) * clear if levels else np.inf))

    @classmethod
    def example_config(cls) -> DisplacementRateConfig:
        return DisplacementRateConfig(id="example-displacement", metrics=["crack_mm"], baseline_h=12.0)

    def state_spec(self) -> dict[str, StateArray]:
        k = len(self.metrics)
        return {
            **self.ring.state_spec(),
            "base_sum": StateArray(np.float64, 0.0, (k,)),
            "base_n": StateArray(np.int64, 0, (k,)),
            "base_start": StateArray(np.float64, np.nan, (k,)),
            "active": StateArray(np.bool_, False, (k, 2)),
        }

    def baseline(self, state: DeviceState, dev: np.ndarray, k: np.ndarray, ts: np.ndarray, v: np.ndarray) -> np.ndarray:
        """v0 per sensor (units/day), NaN while it is still being learned."""
        cfg = self.config
        if cfg.baseline_per_day is not None:
            return np.full(dev.shape[0], cfg.baseline_per_day)
        channel = dev * len(self.metrics) + k  # rows are unique channels: flat takes and puts
        base_start, base_sum, base_n = (state[a].reshape(-1) for a in ("base_start", "base_sum", "base_n"))
        start = base_start.take(channel)
        has_v = np.isfinite(v)
        start = np.where(np.isnan(start) & has_v, ts, start)
        base_start[channel] = start
        learning = has_v & (ts - start <= cfg.baseline_h * 3600.0)
        total = base_sum.take(channel) + np.where(learning, v, 0.0)
        n = base_n.take(channel) + learning
        base_sum[channel] = total
        base_n[channel] = n
        learned = np.maximum(total / np.maximum(n, 1), cfg.min_baseline_per_day)
        return np.where((n > 0) & ~learning, learned, np.nan)

    def without_unrated(self, batch: ReadingBatch, state: DeviceState, rows: np.ndarray) -> np.ndarray:
        """The rows left after taking in those of channels that get no velocity at any reading of this batch.

        A velocity needs readings spanning half the window (``rate_per_h``); a sensor whose ring of ``points``
        readings spans less (a crack meter read every second keeps 72 s of a 6 h window) has none at any reading
        whose newest-to-oldest span stays short. For those the step would only push the readings, learn no
        baseline (no velocity) and clear the level latches: done here for all their readings at once, exactly.
        """
        if rows.size == 0:
            return rows
        k = metric_positions(batch.metric[rows], self.metric_ids)
        dev = state.rows_for(batch.slot[rows])
        if not channels_repeat(dev * len(self.metrics) + k):
            return rows  # one reading a sensor: one step, as cheap as this
        # Every window is at least window_h (``window_s``); a hair less covers its round trip through hours.
        short = self.ring.span_at_most(state, dev, k, batch.ts[rows]) < self.config.window_h * 3600.0 / 2.0 * (1 - 1e-9)
        if not short.any():
            return rows
        self.ring.push_all(state, dev[short], k[short], batch.ts[rows[short]], batch.value[rows[short]])
        for j, (thresholds, _clear) in enumerate(self.tests):
            if np.isfinite(thresholds).any():
                state["active"][dev[short], k[short], j] = False  # no velocity: below every clear level
        return rows[~short]

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        cfg = self.config
        rows = batch.rows_of(self.metrics)
        found: list[Finding] = []
        rows = self.without_unrated(batch, state, rows)
        for r, dev, k in channel_steps(batch.slot, batch.metric, rows, self.metric_ids, state):
            ts = batch.ts[r]
            self.ring.push(state, dev, k, ts, batch.value[r])
            v = self.velocity_per_day(state, dev, k, ts)
            v0 = self.baseline(state, dev, k, ts, v)
            with np.errstate(invalid="ignore", divide="ignore"):
                angle = np.degrees(np.arctan(v / v0))
                angle = np.where(v >= cfg.angle_min_velocity_per_day, angle, np.nan)
            first = np.ones(r.shape[0], dtype=bool)
            level = np.zeros(r.shape[0], dtype=np.int8)
            for j, x in enumerate((v, angle)):
                thresholds, clear = self.tests[j]
                if not np.isfinite(thresholds).any():
                    continue
                with np.errstate(invalid="ignore"):
                    lv, active = hysteresis_level(
                        np.nan_to_num(x, nan=-np.inf), thresholds, clear, first, state["active"][dev, k, j]
                    )
                state["active"][dev, k, j] = active
                level = np.maximum(level, lv)
            raised = np.flatnonzero(level)
            if raised.size == 0:
                continue
            # Acceleration is evidence only: estimated for the readings that raise a level.
            half_v = self.velocity_per_day(
                state, dev[raised], k[raised], ts[raised], cfg.window_h / 2, cfg.min_points // 2 + 1
            )
            accel = np.full(r.shape[0], np.nan)
            accel[raised] = 4.0 * (half_v - v[raised]) / (cfg.window_h / 24.0)
            for i in raised:
                evidence = {
                    "metric": self.metrics[int(k[i])],
                    "velocity_per_day": round(float(v[i]), 4),
                    "acceleration_per_day2": round(float(accel[i]), 4) if np.isfinite(accel[i]) else None,
                    "tangent_angle_deg": round(float(angle[i]), 2) if np.isfinite(angle[i]) else None,
                    "baseline_per_day": round(float(v0[i]), 4) if np.isfinite(v0[i]) else None,
                }
                score = float(angle[i]) / 45.0 if np.isfinite(angle[i]) else float(v[i])
                found.append(self.finding(batch, int(r[i]), int(level[i]), score, evidence))
        found.sort(key=lambda f: f.row)
        return found
