"""``level_threshold``: water level, soil moisture and pore pressure against levels and rates of rise.

Method: each rule compares a level-like quantity with thresholds per warning level, and its rate of
rise (Theil's robust slope over the last ``rate_window_h`` hours, in units per hour) with thresholds of
its own; the higher level wins. Waterlogging shows as a water level rising fast before it is high;
saturation as soil moisture or pore pressure near their site-specific critical values. Both tests hold
their level until the value falls below ``clear`` (hysteresis). The thresholds are site-specific: take
them from the gauge's flood stages, the soil's saturated water content, or the pore pressure at which a
slope stability analysis gives a factor of safety of 1.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray, register
from detectors.decision import LevelThresholds, channel_steps, hysteresis_level, thresholds_array
from detectors.geohazard.velocity import TimeRing
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.quantities import METRIC_INDEX, METRIC_NAMES


class LevelRule(BaseModel):
    """One quantity's value and rate-of-rise thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description=f"Sensor metric, one of: {', '.join(METRIC_NAMES)}.")
    levels: LevelThresholds = Field(default_factory=dict, description="Value per level (metric's unit).")
    rise_per_h: LevelThresholds = Field(
        default_factory=dict, description="Rate of rise per level (metric's unit per hour)."
    )
    rate_window_h: float = Field(1.0, gt=0, description="Readings of the last this many hours give the rate.")
    clear: float | None = Field(None, description="A raised value clears below this; default: lowest level.")
    clear_rise_per_h: float | None = Field(None, description="A raised rate clears below this; default: lowest.")

    @model_validator(mode="after")
    def _check(self) -> LevelRule:
        if self.metric not in METRIC_INDEX:
            raise ValueError(f"unknown metric {self.metric!r}; use one of {', '.join(METRIC_NAMES)}")
        if not self.levels and not self.rise_per_h:
            raise ValueError("a rule needs `levels`, `rise_per_h` or both")
        return self


class LevelThresholdConfig(DetectorConfig):
    """Config of the ``level_threshold`` detector."""

    type: Literal["level_threshold"] = Field("level_threshold", description="Detector type.")
    hazard: str = Field("waterlogging", description="Hazard name findings are filed under.")
    rules: list[LevelRule] = Field(min_length=1, description="One rule per metric.")
    points: int = Field(24, ge=4, le=1024, description="Readings kept per sensor for the rate of rise.")

    @model_validator(mode="after")
    def _unique(self) -> LevelThresholdConfig:
        metrics = [r.metric for r in self.rules]
        if len(set(metrics)) != len(metrics):
            raise ValueError("one rule per metric: split repeated metrics into separate detectors")
        return self


@register
class LevelThreshold(Detector[LevelThresholdConfig]):
    """Levels from how high a water level, moisture or pressure is and how fast it rises.

    >>> from engine.core.devices import DeviceIndex
    >>> from engine.core.batch import BatchBuilder
    >>> rule = LevelRule(metric="water_level_m", levels={"yellow": 3.0}, rise_per_h={"blue": 0.5})
    >>> det = LevelThreshold(LevelThresholdConfig(rules=[rule])); st = det.new_state(); b = BatchBuilder(DeviceIndex())
    >>> for m, lv in [(0, 1.0), (10, 1.0), (20, 1.1), (30, 1.3), (40, 1.6), (50, 2.0), (60, 3.2)]:
    ...     b.add("S1", "wl-1", m * 60.0, "water_level_m", lv)
    >>> [f.level.label for f in det.process(b.take(), st)]
    ['blue', 'blue', 'blue', 'yellow']
    """

    config_class = LevelThresholdConfig

    def __init__(self, config: LevelThresholdConfig) -> None:
        super().__init__(config)
        self.rules = config.rules
        self.metrics = tuple(r.metric for r in self.rules)  # type: ignore[misc]
        self.metric_ids = tuple(METRIC_INDEX[m] for m in self.metrics)
        self.ring = TimeRing("level", config.points, len(self.rules))
        self.tests: list[list[tuple[np.ndarray, float] | None]] = []
        for rule in self.rules:
            pair: list[tuple[np.ndarray, float] | None] = []
            for levels, clear in ((rule.levels, rule.clear), (rule.rise_per_h, rule.clear_rise_per_h)):
                if not levels:
                    pair.append(None)
                    continue
                arr = thresholds_array(levels)
                pair.append((arr, clear if clear is not None else float(np.nanmin(arr))))
            self.tests.append(pair)

    @classmethod
    def example_config(cls) -> LevelThresholdConfig:
        return LevelThresholdConfig(
            id="example-level",
            hazard="landslide",
            rules=[
                LevelRule(
                    metric="crack_mm", levels={"blue": 2.0, "yellow": 6.0}, rise_per_h={"blue": 0.2}, rate_window_h=3.0
                )
            ],
        )

    def state_spec(self) -> dict[str, StateArray]:
        return {**self.ring.state_spec(), "active": StateArray(np.bool_, False, (len(self.rules), 2))}

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        rows = batch.rows_of(self.metrics)
        found: list[Finding] = []
        for r, dev, k in channel_steps(batch.slot, batch.metric, rows, self.metric_ids, state):
            ts, value = batch.ts[r], batch.value[r]
            self.ring.push(state, dev, k, ts, value)
            rise = np.full(r.shape[0], np.nan)
            level = np.zeros(r.shape[0], dtype=np.int8)
            for rule_k, rule in enumerate(self.rules):
                sel = np.flatnonzero(k == rule_k)
                if sel.size == 0:
                    continue
                s = dev[sel]
                if self.tests[rule_k][1] is not None:
                    rise[sel] = self.ring.rate_per_h(state, s, k[sel], ts[sel], rule.rate_window_h, 3)
                for j, x in enumerate((value[sel], rise[sel])):
                    test = self.tests[rule_k][j]
                    if test is None:
                        continue
                    first = np.ones(sel.shape[0], dtype=bool)
                    lv, active = hysteresis_level(
                        np.nan_to_num(x, nan=-np.inf), test[0], test[1], first, state["active"][s, rule_k, j]
                    )
                    state["active"][s, rule_k, j] = active
                    level[sel] = np.maximum(level[sel], lv)
            for i in np.flatnonzero(level):
                rule = self.rules[int(k[i])]
                evidence: dict[str, Any] = {"metric": rule.metric, "value": float(value[i])}
                if np.isfinite(rise[i]):
                    evidence["rise_per_h"] = round(float(rise[i]), 4)
                lowest = min([*rule.levels.values(), np.inf])
                score = float(value[i]) / lowest if np.isfinite(lowest) and lowest else float(level[i])
                found.append(self.finding(batch, int(r[i]), int(level[i]), score, evidence))
        found.sort(key=lambda f: f.row)
        return found
