"""``antecedent_water_index``: a running soil-water balance from hourly rain (USGS, Seattle).

Method (Godt, Baum & Chleborad 2006, *Earth Surf. Process. Landforms* 31:97–110; Chleborad, Baum & Godt
2006, USGS OFR 2006-1064): the antecedent water index is an hourly water balance of the hillslope
materials, zero at field capacity, negative when the soil is drier, positive when water is held above
field capacity::

    AWI(h) = clip(AWI(h-1) + P(h) - ET - k_d * max(AWI(h-1), 0),  awi_min_mm, awi_max_mm)

with ``P`` the rain in hour ``h``, ``ET`` a constant evapotranspiration per hour (from a daily rate) and
``k_d`` the share of the water above field capacity that drains each hour. In the Seattle system a
landslide warning needs both a wet soil (AWI above a threshold near field capacity) and an exceeded
rainfall intensity–duration threshold. Rain is added as it arrives; the losses of each whole hour are
applied when the hour ends. The defaults here (AWI in mm: ET 1 mm/day, ``k_d`` 0.02 per hour, start at
-50 mm, range -200…+100 mm, wet from -20 mm) are this engine's reading of that method for a generic
hillslope soil; calibrate them against soil-moisture records of your own sites.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray, register
from detectors.decision import RequiredLevels, channel_steps, hysteresis_level, thresholds_array
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.quantities import METRIC_INDEX

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
NO_HOUR = np.iinfo(np.int64).min


class WaterBalance(BaseModel):
    """Parameters of the antecedent water index (all water depths in mm)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    et_mm_per_day: float = Field(1.0, ge=0, description="Evapotranspiration, taken off evenly every hour.")
    drainage_per_h: float = Field(
        0.02, ge=0, lt=1, description="Share of the water above field capacity (AWI > 0) that drains each hour."
    )
    initial_mm: float = Field(-50.0, description="AWI of a gauge when its first reading arrives.")
    awi_min_mm: float = Field(-200.0, description="Driest value: AWI does not fall below this.")
    awi_max_mm: float = Field(100.0, description="Saturation: AWI does not rise above this.")
    wet_mm: float = Field(-20.0, description="AWI from which the soil counts as wet (used when gating).")

    @model_validator(mode="after")
    def _check(self) -> WaterBalance:
        if not self.awi_min_mm <= self.initial_mm <= self.awi_max_mm:
            raise ValueError("initial_mm must lie between awi_min_mm and awi_max_mm")
        return self

    def state_spec(self) -> dict[str, StateArray]:
        return {"awi": StateArray(np.float64, np.nan), "awi_hour": StateArray(np.int64, NO_HOUR)}

    def update(self, st: DeviceState, dev: I64, ts: F64, rain_mm: F64) -> F64:
        """Advance each gauge's AWI to ``ts`` and add its rain; returns the new AWI (``dev`` unique)."""
        hour = (np.ceil(ts / 3600.0) - 1).astype(np.int64)  # a report on the hour closes the hour before
        awi = st["awi"][dev]
        last = st["awi_hour"][dev]
        new = np.isnan(awi)
        awi = np.where(new, self.initial_mm, awi)
        elapsed = np.where(new, 0, np.maximum(hour - last, 0)).astype(np.float64)
        # Dry hours in closed form: drainage decays the surplus geometrically, ET takes a constant amount.
        surplus = np.maximum(awi, 0.0) * (1.0 - self.drainage_per_h) ** elapsed
        awi = np.where(awi > 0, surplus, awi) - self.et_mm_per_day / 24.0 * elapsed
        awi = np.clip(awi + rain_mm, self.awi_min_mm, self.awi_max_mm)
        st["awi"][dev] = awi
        st["awi_hour"][dev] = np.where(new, hour, np.maximum(hour, last))
        return awi


class AntecedentWaterIndexConfig(DetectorConfig):
    """Config of the ``antecedent_water_index`` detector."""

    type: Literal["antecedent_water_index"] = Field("antecedent_water_index", description="Detector type.")
    hazard: str = Field("landslide", description="Hazard name findings are filed under.")
    balance: WaterBalance = Field(default_factory=WaterBalance, description="Water-balance parameters.")
    levels: RequiredLevels = Field(
        {"blue": -20.0, "yellow": 0.0},
        description="AWI (mm) per level: by default wet soil is blue, at or above field capacity yellow.",
    )
    clear_mm: float | None = Field(None, description="A raised gauge clears below this AWI; default: lowest level.")


@register
class AntecedentWaterIndex(Detector[AntecedentWaterIndexConfig]):
    """Soil wetness from the rain record: AWI per gauge against level thresholds (mm).

    >>> from engine.core.devices import DeviceIndex
    >>> from engine.core.batch import BatchBuilder
    >>> det = AntecedentWaterIndex(AntecedentWaterIndexConfig()); st = det.new_state(); b = BatchBuilder(DeviceIndex())
    >>> for h, mm in [(0, 10.0), (1, 30.0), (2, 20.0)]: b.add("S1", "rain-1", h * 3600.0, "rain_mm", mm)
    >>> [(f.level.label, f.evidence["awi_mm"]) for f in det.process(b.take(), st)]
    [('blue', -10.042), ('yellow', 9.917)]
    """

    config_class = AntecedentWaterIndexConfig
    metrics = ("rain_mm",)

    def __init__(self, config: AntecedentWaterIndexConfig) -> None:
        super().__init__(config)
        self.balance = config.balance
        self.thresholds = thresholds_array(config.levels)
        self.clear = config.clear_mm if config.clear_mm is not None else float(np.nanmin(self.thresholds))

    @classmethod
    def example_config(cls) -> AntecedentWaterIndexConfig:
        return AntecedentWaterIndexConfig(id="example-awi", levels={"blue": -20.0, "yellow": 0.0, "orange": 40.0})

    def state_spec(self) -> dict[str, StateArray]:
        return {**self.balance.state_spec(), "active": StateArray(np.bool_, False)}

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        rows = batch.rows_of(self.metrics)
        found: list[tuple[int, int, float]] = []
        for r, dev, _ in channel_steps(batch.slot, batch.metric, rows, (METRIC_INDEX["rain_mm"],), state):
            awi = self.balance.update(state, dev, batch.ts[r], batch.value[r])
            first = np.ones(r.shape[0], dtype=bool)
            levels, active = hysteresis_level(awi, self.thresholds, self.clear, first, state["active"][dev])
            state["active"][dev] = active
            found.extend((int(r[i]), int(levels[i]), float(awi[i])) for i in np.flatnonzero(levels))
        found.sort()
        return [
            self.finding(batch, row, level, awi - self.balance.wet_mm, {"awi_mm": round(awi, 3)})
            for row, level, awi in found
        ]
