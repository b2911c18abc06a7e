"""``rainfall_cumulative``: recent rain against antecedent rain (USGS), and plain N-hour accumulations.

Method: the USGS cumulative threshold for Seattle (Chleborad 2003, USGS OFR 03-463; Chleborad, Baum &
Godt 2006, OFR 2006-1064) relates the rain of the last 3 days, ``P3``, to the rain of the 15 days before
them, ``P15``: landslides become likely when ``P3 >= a - b * P15`` with ``a`` = 3.5 in (88.9 mm) and ``b``
= 0.67. The score is ``P3 / (a - b·P15)``; the level comes from that ratio (by default blue at 1: in
Seattle an exceedance means an 8 % chance of landslides that day, a call for closer watching).

Accumulations: rain over the last N hours against depths per level. The default (24 h: 50, 100, 175,
250 mm) follows the China Meteorological Administration's daily classes: rainstorm 50 mm, heavy
rainstorm 100 mm, extraordinary rainstorm 250 mm, with orange between the last two.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray, register
from detectors.decision import RequiredLevels, channel_steps, hysteresis_level, thresholds_array
from detectors.geohazard.rain_window import RainWindow
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.levels import LevelName
from engine.core.quantities import METRIC_INDEX

MM_PER_INCH = 25.4


class CumulativeThreshold(BaseModel):
    """The USGS recent-vs-antecedent threshold P_recent = a - b·P_antecedent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    units: Literal["mm", "in"] = Field("in", description="Units of `a`.")
    a: float = Field(3.5, gt=0, description="Recent rain needed after a dry antecedent period.")
    b: float = Field(0.67, ge=0, description="How much each unit of antecedent rain lowers that need.")
    recent_days: float = Field(3.0, gt=0, description="Length of the recent window (days).")
    antecedent_days: float = Field(15.0, gt=0, description="Length of the antecedent window before it (days).")
    levels: RequiredLevels = Field({"blue": 1.0}, description="Ratio of recent rain to the threshold per level.")


class Accumulation(BaseModel):
    """Rain total over a fixed number of hours against depths per level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: float = Field(gt=0, description="Window length (hours).")
    levels: RequiredLevels = Field(description="Rain depth (mm) per level.")


class RainfallCumulativeConfig(DetectorConfig):
    """Config of the ``rainfall_cumulative`` detector."""

    type: Literal["rainfall_cumulative"] = Field("rainfall_cumulative", description="Detector type.")
    hazard: str = Field("landslide", description="Hazard name findings are filed under.")
    cumulative: CumulativeThreshold | None = Field(
        default_factory=CumulativeThreshold, description="The USGS cumulative threshold; null to turn it off."
    )
    accumulations: list[Accumulation] = Field(
        [Accumulation(hours=24, levels={"blue": 50, "yellow": 100, "orange": 175, "red": 250})],
        description="Plain N-hour accumulation thresholds.",
    )
    bin_s: float = Field(3600.0, gt=0, description="Time resolution of the rain windows (seconds).")
    clear_fraction: float = Field(
        0.8, gt=0, le=1, description="A raised gauge clears once every score is below this share of its lowest level."
    )


@register
class RainfallCumulative(Detector[RainfallCumulativeConfig]):
    """Multi-day rain totals: the USGS P3/P15 threshold and N-hour accumulations, per gauge.

    >>> ct = CumulativeThreshold()
    >>> round(ct.a * MM_PER_INCH - ct.b * 100.0, 1)  # mm of 3-day rain needed after 100 mm in 15 days
    21.9
    """

    config_class = RainfallCumulativeConfig
    metrics = ("rain_mm",)

    def __init__(self, config: RainfallCumulativeConfig) -> None:
        super().__init__(config)
        self.tests: list[tuple[str, np.ndarray, float]] = []  # (name, level thresholds, clear) per score
        span_h = max([a.hours for a in config.accumulations], default=1.0)
        ct = config.cumulative
        if ct is not None:
            self.a_mm = ct.a * (MM_PER_INCH if ct.units == "in" else 1.0)
            span_h = max(span_h, 24.0 * (ct.recent_days + ct.antecedent_days))
            self._add_test("cumulative", ct.levels)
        for acc in config.accumulations:
            self._add_test(f"{acc.hours:g}h", acc.levels)
        if not self.tests:
            raise ValueError("rainfall_cumulative needs `cumulative` or at least one accumulation")
        self.window = RainWindow(config.bin_s, span_h)

    def _add_test(self, name: str, levels: dict[LevelName, float]) -> None:
        arr = thresholds_array(levels)
        self.tests.append((name, arr, float(np.nanmin(arr)) * self.config.clear_fraction))

    @classmethod
    def example_config(cls) -> RainfallCumulativeConfig:
        return RainfallCumulativeConfig(
            id="example-cumulative",
            cumulative=CumulativeThreshold(units="mm", a=88.9, b=0.67, recent_days=1, antecedent_days=2),
            accumulations=[Accumulation(hours=6, levels={"blue": 20, "yellow": 40})],
        )

    def state_spec(self) -> dict[str, StateArray]:
        return {**self.window.state_spec(), "active": StateArray(np.bool_, False, (len(self.tests),))}

    def scores(self, state: DeviceState, dev: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One score column per test, and the rain totals behind them (mm)."""
        cols: list[np.ndarray] = []
        totals: dict[str, np.ndarray] = {}
        ct = self.config.cumulative
        if ct is not None:
            total = state["rain_total"][dev]
            c0, _ = self.window.window_starts(
                state, dev, (ct.recent_days * 24.0, (ct.recent_days + ct.antecedent_days) * 24.0)
            )
            c_recent, c_ante = c0[:, 0], c0[:, 1]
            p_recent, p_ante = total - c_recent, c_recent - c_ante
            need = np.maximum(self.a_mm - ct.b * p_ante, 1e-9)
            cols.append(p_recent / need)
            totals["p_recent_mm"], totals["p_antecedent_mm"] = p_recent, p_ante
        accs = self.config.accumulations
        if accs:
            depths, _ = self.window.totals_since(state, dev, ts, tuple(acc.hours for acc in accs))
            for j, acc in enumerate(accs):
                cols.append(depths[:, j])
                totals[f"rain_{acc.hours:g}h_mm"] = depths[:, j]
        return np.stack(cols, axis=1), totals

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        rows = batch.rows_of(self.metrics)
        found: list[Finding] = []
        for r, dev, _ in channel_steps(batch.slot, batch.metric, rows, (METRIC_INDEX["rain_mm"],), state):
            self.window.add(state, dev, batch.ts[r], batch.value[r])
            score, totals = self.scores(state, dev, batch.ts[r])
            first = np.ones(r.shape[0], dtype=bool)
            level = np.zeros(r.shape[0], dtype=np.int8)
            which = np.zeros(r.shape[0], dtype=np.int64)
            for k, (_, thresholds, clear) in enumerate(self.tests):
                lv, active = hysteresis_level(score[:, k], thresholds, clear, first, state["active"][dev, k])
                state["active"][dev, k] = active
                which = np.where(lv > level, k, which)
                level = np.maximum(level, lv)
            for i in np.flatnonzero(level):
                k = int(which[i])
                name, thresholds, _ = self.tests[k]
                evidence = {"test": name, **{key: round(float(v[i]), 3) for key, v in totals.items()}}
                if name == "cumulative":
                    evidence["ratio"] = round(float(score[i, k]), 4)
                lowest = float(np.nanmin(thresholds))
                found.append(self.finding(batch, int(r[i]), int(level[i]), float(score[i, k]) / lowest, evidence))
        found.sort(key=lambda f: f.row)
        return found
