"""``threshold``: per-metric value and rate-of-change thresholds with four levels and a clear level."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray, register
from detectors.decision import RequiredLevels, hysteresis_level, previous_in_segment, sort_by_device, thresholds_array
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.levels import Level
from engine.core.quantities import METRIC_INDEX, METRIC_NAMES


class ThresholdRule(BaseModel):
    """One metric against level thresholds, on its value or on its rate of change per hour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description=f"Sensor metric, one of: {', '.join(METRIC_NAMES)}.")
    compare: Literal["value", "rate_per_h"] = Field(
        "value", description="Compare the reading itself, or its change per hour since the device's previous reading."
    )
    levels: RequiredLevels = Field(
        description="Threshold per level (blue, yellow, orange, red); at least one, finite, not decreasing."
    )
    clear: float | None = Field(
        None,
        allow_inf_nan=False,
        description="An active device clears only below this (hysteresis); default: the lowest threshold.",
    )

    @model_validator(mode="after")
    def _check(self) -> ThresholdRule:
        if self.metric not in METRIC_INDEX:
            raise ValueError(f"unknown metric {self.metric!r}; use one of {', '.join(METRIC_NAMES)}")
        if not self.levels:
            raise ValueError("levels needs at least one of blue, yellow, orange, red")
        thresholds_array(self.levels)
        if self.clear is not None and self.clear > min(self.levels.values()):
            raise ValueError("clear must not be above the lowest level threshold")
        return self


class ThresholdConfig(DetectorConfig):
    """Config of the ``threshold`` detector."""

    type: Literal["threshold"] = Field("threshold", description="Detector type.")
    rules: list[ThresholdRule] = Field(min_length=1, description="The metrics this detector watches.")


@register
class Threshold(Detector[ThresholdConfig]):
    """Raises a level when a metric's value (or rate per hour) crosses configured thresholds.

    The level holds, at least blue, until the value drops below ``clear``; the latch is per device and
    rule, kept in numpy state, so batch boundaries do not change the result.

    >>> from engine.core.devices import DeviceIndex
    >>> from engine.core.batch import BatchBuilder
    >>> cfg = ThresholdConfig(hazard="flood", rules=[{"metric": "water_level_m", "levels": {"blue": 2, "red": 3}}])
    >>> det = Threshold(cfg); st = det.new_state(); b = BatchBuilder(DeviceIndex())
    >>> for t, v in [(0, 1.5), (60, 2.2), (120, 3.1)]: b.add("S1", "wl-1", t, "water_level_m", v)
    >>> [f.level.label for f in det.process(b.take(), st)]
    ['blue', 'red']
    """

    config_class = ThresholdConfig

    def __init__(self, config: ThresholdConfig) -> None:
        super().__init__(config)
        self.rules = config.rules
        self._thresholds = [thresholds_array(r.levels) for r in self.rules]
        self._clear = [
            r.clear if r.clear is not None else float(np.nanmin(t))
            for r, t in zip(self.rules, self._thresholds, strict=True)
        ]
        self.metrics = tuple(sorted({r.metric for r in self.rules}))  # type: ignore[misc]

    @classmethod
    def example_config(cls) -> ThresholdConfig:
        return ThresholdConfig(
            id="example-threshold",
            hazard="landslide",
            rules=[
                ThresholdRule(metric="crack_mm", compare="rate_per_h", levels={"blue": 0.3, "red": 1.5}, clear=0.15),
                ThresholdRule(metric="rain_mm", levels={"blue": 2.0, "yellow": 4.0}),
            ],
        )

    def state_spec(self) -> dict[str, StateArray]:
        n = len(self.rules)
        return {
            "last_value": StateArray(np.float64, np.nan, (n,)),
            "last_ts": StateArray(np.float64, np.nan, (n,)),
            "active": StateArray(np.bool_, False, (n,)),
        }

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        findings: list[Finding] = []
        for k, rule in enumerate(self.rules):
            rows = batch.rows_of((rule.metric,))
            if rows.size == 0:
                continue
            order, first, last = sort_by_device(batch.slot[rows])
            rows = rows[order]
            slots = batch.slot[rows]
            dev = state.rows_for(slots)
            v = batch.value[rows]
            t = batch.ts[rows]
            if rule.compare == "value":
                x = v
            else:
                pv = previous_in_segment(v, first, state["last_value"][dev, k])
                pt = previous_in_segment(t, first, state["last_ts"][dev, k])
                dt_h = (t - pt) / 3600.0
                with np.errstate(invalid="ignore", divide="ignore"):
                    x = np.where(dt_h > 0, (v - pv) / dt_h, np.nan)
            levels, active = hysteresis_level(x, self._thresholds[k], self._clear[k], first, state["active"][dev, k])
            ends = dev[last]
            state["last_value"][ends, k] = v[last]
            state["last_ts"][ends, k] = t[last]
            state["active"][ends, k] = active[last]
            lowest = float(np.nanmin(self._thresholds[k]))
            for i in np.flatnonzero(levels):
                slot = int(slots[i])
                findings.append(
                    Finding(
                        detector=self.name,
                        hazard=self.config.hazard,
                        site=batch.devices.site_of_slot(slot),
                        device=batch.devices.device_of_slot(slot),
                        ts=float(t[i]),
                        level=Level(int(levels[i])),
                        score=float(x[i] / lowest) if lowest else float(x[i]),
                        evidence={"metric": rule.metric, rule.compare: round(float(x[i]), 6)},
                        row=int(rows[i]),
                    )
                )
        return findings
