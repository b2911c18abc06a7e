"""``rainfall_intensity_duration``: mean rain intensity over sliding durations against I = alpha·D^-beta.

Method: for each duration ``D`` in the config, the mean intensity ``I`` over the last ``D`` hours is
compared with the intensity–duration threshold ``alpha * D**-beta``; the detector's score is the largest
ratio of observed to threshold intensity over all durations, and the level comes from that ratio.
Thresholds: Caine (1980, *Geografiska Annaler* 62A:23–27), the global shallow-landslide and debris-flow
threshold ``I = 14.82 D^-0.39`` (I in mm/h, D in h); and the USGS Seattle threshold of Godt, Baum &
Chleborad (2006), ``I = 3.257 D^-1.13`` with I in inches per hour (``units: in``; 82.73 mm/h in mm).
A ratio of 1 is the threshold itself, so by default the level is orange there.

Optionally gated by the antecedent water index (``awi_gate``), as in the Seattle decision tree: no
finding while the soil is drier than ``wet_mm``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray, register
from detectors.decision import RequiredLevels, channel_steps, hysteresis_level, thresholds_array
from detectors.geohazard.antecedent_water_index import WaterBalance
from detectors.geohazard.rain_window import RainWindow
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.quantities import METRIC_INDEX

MM_PER_INCH = 25.4
DEFAULTS = {"mm": (14.82, 0.39), "in": (3.257, 1.13)}


class RainfallIntensityDurationConfig(DetectorConfig):
    """Config of the ``rainfall_intensity_duration`` detector."""

    type: Literal["rainfall_intensity_duration"] = Field("rainfall_intensity_duration", description="Detector type.")
    hazard: str = Field("landslide", description="Hazard name findings are filed under.")
    units: Literal["mm", "in"] = Field(
        "mm", description="Units of the threshold's intensity: mm/h (Caine 1980) or in/h (USGS Seattle)."
    )
    alpha: float | None = Field(None, gt=0, description="Scale of I = alpha·D^-beta; default 14.82 (mm) or 3.257 (in).")
    beta: float | None = Field(None, gt=0, description="Exponent of I = alpha·D^-beta; default 0.39 (mm) or 1.13 (in).")
    durations_h: list[float] = Field(
        [1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 72.0],
        min_length=1,
        description="Durations D (hours) over which mean intensity is tested.",
    )
    bin_s: float = Field(600.0, gt=0, description="Time resolution of the rain windows (seconds).")
    levels: RequiredLevels = Field(
        {"blue": 0.5, "yellow": 0.75, "orange": 1.0, "red": 1.5},
        description="Ratio of observed to threshold intensity per level.",
    )
    clear: float | None = Field(
        None, ge=0, description="A raised gauge clears below this ratio; default: lowest level."
    )
    awi_gate: WaterBalance | None = Field(
        None, description="When set, findings only while the antecedent water index is at least its wet_mm."
    )

    @model_validator(mode="after")
    def _check(self) -> RainfallIntensityDurationConfig:
        if any(d <= 0 for d in self.durations_h):
            raise ValueError("durations_h must all be positive")
        return self

    def threshold_mm_h(self, duration_h: float) -> float:
        """The threshold intensity for a duration, in mm/h."""
        alpha, beta = DEFAULTS[self.units]
        alpha = self.alpha if self.alpha is not None else alpha
        beta = self.beta if self.beta is not None else beta
        i = float(alpha * duration_h**-beta)
        return i * MM_PER_INCH if self.units == "in" else i


@register
class RainfallIntensityDuration(Detector[RainfallIntensityDurationConfig]):
    """Rain intensity against an intensity–duration threshold, per gauge, over several durations.

    >>> cfg = RainfallIntensityDurationConfig()
    >>> round(cfg.threshold_mm_h(1.0), 2), round(cfg.threshold_mm_h(24.0), 2)
    (14.82, 4.29)
    >>> round(RainfallIntensityDurationConfig(units="in").threshold_mm_h(1.0), 2)
    82.73
    """

    config_class = RainfallIntensityDurationConfig
    metrics = ("rain_mm",)

    def __init__(self, config: RainfallIntensityDurationConfig) -> None:
        super().__init__(config)
        self.durations = sorted(config.durations_h)
        self.threshold = np.array([config.threshold_mm_h(d) for d in self.durations])
        self.window = RainWindow(config.bin_s, self.durations[-1])
        self.levels = thresholds_array(config.levels)
        self.clear = config.clear if config.clear is not None else float(np.nanmin(self.levels))

    @classmethod
    def example_config(cls) -> RainfallIntensityDurationConfig:
        return RainfallIntensityDurationConfig(id="example-id", durations_h=[1, 3, 12, 24])

    def state_spec(self) -> dict[str, StateArray]:
        spec = {**self.window.state_spec(), "active": StateArray(np.bool_, False)}
        if self.config.awi_gate is not None:
            spec.update(self.config.awi_gate.state_spec())
        return spec

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        gate = self.config.awi_gate
        rows = batch.rows_of(self.metrics)
        found: list[Finding] = []
        for r, dev, _ in channel_steps(batch.slot, batch.metric, rows, (METRIC_INDEX["rain_mm"],), state):
            ts, mm = batch.ts[r], batch.value[r]
            self.window.add(state, dev, ts, mm)
            total, span_h = self.window.totals_since(state, dev, ts, tuple(self.durations))
            intensity = total / span_h
            ratio = intensity / self.threshold[None, :]
            worst = np.argmax(ratio, axis=1)
            score = ratio[np.arange(r.shape[0]), worst]
            if gate is not None:
                awi = gate.update(state, dev, ts, mm)
                score = np.where(awi >= gate.wet_mm, score, 0.0)
            first = np.ones(r.shape[0], dtype=bool)
            levels, active = hysteresis_level(score, self.levels, self.clear, first, state["active"][dev])
            state["active"][dev] = active
            for i in np.flatnonzero(levels):
                j = int(worst[i])
                evidence = {
                    "duration_h": self.durations[j],
                    "intensity_mm_h": round(float(intensity[i, j]), 3),
                    "threshold_mm_h": round(float(self.threshold[j]), 3),
                    "ratio": round(float(score[i]), 4),
                }
                if gate is not None:
                    evidence["awi_mm"] = round(float(awi[i]), 3)
                found.append(self.finding(batch, int(r[i]), int(levels[i]), float(score[i]), evidence))
        found.sort(key=lambda f: f.row)
        return found
