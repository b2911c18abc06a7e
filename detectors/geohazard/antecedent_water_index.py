"""``antecedent_water_index``: the hourly soil-water balance of the USGS Seattle system.

Method (Godt, Baum & Chleborad 2006, *Earth Surf. Process. Landforms* 31:97–110; Chleborad, Baum & Godt
2006, USGS OFR 2006-1064; as the USGS program Thresh computes it, github.com/usgs/landslides-thresholds):
the antecedent water index is an hourly water balance of the hillslope materials, zero at field capacity,
negative when the soil is drier, positive when water is held above field capacity. Hour ``h`` with rain
``P`` and the evapotranspiration ``ET`` of its calendar month::

    AWI(h) = AWI(h-1) + P - ET                                   while AWI(h-1) < 0
    AWI(h) = AWI(h-1)·d + (P - ET)·(1 - d) / k,  d = exp(-k)      while AWI(h-1) >= 0 (drainage)
    AWI(h) = max(AWI(h), -field_capacity)

starting at ``-field_capacity`` (oven-dry) when a gauge's record starts. The defaults are Seattle's
(Thresh's ``thresh_in.txt``): field capacity 0.18 m, drainage constant ``k`` = 0.01 per hour, the monthly
hourly ET table (0.054 … 0.72 hundredths of an inch per hour, January … December, here in mm), wet from
AWI 0.02 m. Months are calendar months of the hour's start at ``utc_offset_h`` from UTC. Reports that
fall in one hour are summed into that hour; hours without any report count as dry (their ET still
applies). The AWI a report carries is that of its hour as if the hour ended with it, which for hourly
reports is exactly the method's hourly value. Calibrate field capacity, ``k`` and ET for your own soils
and climate: the Seattle values stand for glacial deposits under a Pacific Northwest climate.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray, register
from detectors.decision import RequiredLevels, channel_steps, hysteresis_level, thresholds_array
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.quantities import METRIC_INDEX

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
NO_HOUR = np.iinfo(np.int64).min
MM_PER_HUNDREDTH_INCH = 0.254
# Thresh's Seattle table: hourly ET per month in hundredths of an inch, January … December.
SEATTLE_ET_HUNDREDTHS_IN_PER_H = (0.054, 0.11, 0.2, 0.43, 0.54, 0.68, 0.72, 0.71, 0.47, 0.17, 0.076, 0.045)
SEATTLE_ET_MM_PER_H = tuple(round(v * MM_PER_HUNDREDTH_INCH, 6) for v in SEATTLE_ET_HUNDREDTHS_IN_PER_H)
TABLE_FIRST_MONTH = np.datetime64("1900-01", "M")
TABLE_MONTHS = 12 * 300  # 1900 … 2199


@functools.lru_cache(maxsize=8)
def _month_table(et: tuple[float, ...], offset_h: int) -> tuple[I64, F64, F64]:
    """Start hour (epoch hours, UTC) of each month 1900-2199 in local time, its hourly ET, and the ET summed
    over every hour before it (so that the ET of any run of hours is one subtraction)."""
    months = TABLE_FIRST_MONTH + np.arange(TABLE_MONTHS + 1)
    start_h = months.astype("datetime64[h]").astype(np.int64) - offset_h
    rate = np.array(et, dtype=np.float64)[np.arange(TABLE_MONTHS + 1) % 12]
    cum = np.concatenate([[0.0], np.cumsum(np.diff(start_h) * rate[:-1])])
    return start_h, rate, cum


class WaterBalance(BaseModel):
    """Parameters of the antecedent water index (water depths in mm, Seattle defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field_capacity_mm: float = Field(
        180.0, gt=0, description="Field capacity (Seattle 0.18 m); AWI never falls below minus this (dry soil)."
    )
    drainage_per_h: float = Field(
        0.01, ge=0, lt=1, description="Drainage constant k: water above field capacity decays as exp(-k) an hour."
    )
    et_mm_per_h: tuple[float, ...] = Field(
        SEATTLE_ET_MM_PER_H,
        min_length=12,
        max_length=12,
        description="Evapotranspiration per hour of each month, January … December (mm/h); Seattle's by default.",
    )
    utc_offset_h: int = Field(0, ge=-12, le=14, description="Hours from UTC of the local time that picks the month.")
    initial_mm: float | None = Field(
        None, description="AWI of a gauge when its record starts; default minus the field capacity (as Thresh)."
    )
    wet_mm: float = Field(20.0, description="AWI from which the soil counts as wet (Seattle 0.02 m), used when gating.")

    def state_spec(self) -> dict[str, StateArray]:
        return {
            "awi_before": StateArray(np.float64, np.nan),  # AWI at the end of the hour before the open one
            "awi_hour": StateArray(np.int64, NO_HOUR),  # the open hour (epoch hours)
            "awi_rain": StateArray(np.float64, 0.0),  # rain reported so far in the open hour
        }

    def _table(self) -> tuple[I64, F64, F64]:
        return _month_table(tuple(self.et_mm_per_h), self.utc_offset_h)

    def et_of_hour(self, hour: I64) -> F64:
        start_h, rate, _ = self._table()
        return rate[np.searchsorted(start_h, hour, side="right") - 1]

    def et_before(self, hour: I64) -> F64:
        """ET summed over every hour before ``hour`` since 1900."""
        start_h, rate, cum = self._table()
        m = np.searchsorted(start_h, hour, side="right") - 1
        return np.asarray(cum[m] + (hour - start_h[m]) * rate[m], dtype=np.float64)

    def step(self, awi: F64, rain: F64, et: F64) -> F64:
        """One hour of the balance."""
        k = self.drainage_per_h
        if k > 0:
            d = np.exp(-k)
            draining = awi * d + (rain - et) * (1.0 - d) / k
        else:
            draining = awi + rain - et
        out = np.where(awi < 0, awi + rain - et, draining)
        return np.maximum(out, -self.field_capacity_mm)

    def dry_hours(self, awi: F64, first: I64, n: I64) -> F64:
        """``n`` hours without rain from hour ``first`` on: hour by hour while water drains above field
        capacity, then the ET of the remaining hours in one sum (below field capacity nothing else acts)."""
        awi, first, n = awi.copy(), first.copy(), n.copy()
        while True:
            draining = (n > 0) & (awi >= 0)
            if not draining.any():
                break
            awi[draining] = self.step(awi[draining], np.zeros(int(draining.sum())), self.et_of_hour(first[draining]))
            first[draining] += 1
            n[draining] -= 1
        dry = n > 0
        if dry.any():
            et = self.et_before(first[dry] + n[dry]) - self.et_before(first[dry])
            awi[dry] = np.maximum(awi[dry] - et, -self.field_capacity_mm)
        return awi

    def update(self, st: DeviceState, dev: I64, ts: F64, rain_mm: F64) -> F64:
        """Add each gauge's report (``dev`` unique) and return the AWI of its hour so far."""
        hour = (np.ceil(ts / 3600.0) - 1).astype(np.int64)  # a report on the hour closes the hour before
        before = st["awi_before"][dev]
        open_hour = st["awi_hour"][dev]
        rain = st["awi_rain"][dev]
        new = np.isnan(before)
        start = -self.field_capacity_mm if self.initial_mm is None else self.initial_mm
        before = np.where(new, start, before)
        open_hour = np.where(new, hour, open_hour)
        rain = np.where(new, 0.0, rain)
        later = hour > open_hour
        if later.any():
            closed = self.step(before[later], rain[later], self.et_of_hour(open_hour[later]))
            before[later] = self.dry_hours(closed, open_hour[later] + 1, hour[later] - open_hour[later] - 1)
            open_hour = np.where(later, hour, open_hour)
            rain = np.where(later, 0.0, rain)
        rain = rain + rain_mm  # a late report counts in the open hour
        st["awi_before"][dev] = before
        st["awi_hour"][dev] = open_hour
        st["awi_rain"][dev] = rain
        return self.step(before, rain, self.et_of_hour(open_hour))


class AntecedentWaterIndexConfig(DetectorConfig):
    """Config of the ``antecedent_water_index`` detector."""

    type: Literal["antecedent_water_index"] = Field("antecedent_water_index", description="Detector type.")
    hazard: str = Field("landslide", description="Hazard name findings are filed under.")
    balance: WaterBalance = Field(default_factory=WaterBalance, description="Water-balance parameters.")
    levels: RequiredLevels = Field(
        {"blue": 20.0},
        description="AWI (mm) per level: by default blue once the soil is wet by Seattle's 0.02 m.",
    )
    clear_mm: float | None = Field(None, description="A raised gauge clears below this AWI; default: lowest level.")


@register
class AntecedentWaterIndex(Detector[AntecedentWaterIndexConfig]):
    """Soil wetness from the rain record: AWI per gauge against level thresholds (mm).

    >>> from engine.core.devices import DeviceIndex
    >>> from engine.core.batch import BatchBuilder
    >>> cfg = AntecedentWaterIndexConfig(balance=WaterBalance(initial_mm=-5.0))  # January: ET 0.0137 mm/h
    >>> det = AntecedentWaterIndex(cfg); st = det.new_state(); b = BatchBuilder(DeviceIndex())
    >>> for h, mm in [(1, 10.0), (2, 30.0), (3, 0.0)]: b.add("S1", "rain-1", h * 3600.0, "rain_mm", mm)
    >>> [(f.level.label, f.evidence["awi_mm"]) for f in det.process(b.take(), st)]  # -5 + 10 - ET = 4.986, then drains
    [('blue', 34.774), ('blue', 34.414)]
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
            self.finding(
                batch,
                row,
                level,
                1.0 + (awi - self.balance.wet_mm) / self.balance.field_capacity_mm,
                {"awi_mm": round(awi, 3)},
            )
            for row, level, awi in found
        ]
