"""``rainfall_cumulative``: recent rain against antecedent rain (USGS), and plain N-hour accumulations.

Method: the USGS cumulative threshold for Seattle (Chleborad 2003, USGS OFR 03-463; Chleborad, Baum &
Godt 2006, OFR 2006-1064) relates the rain of the last 3 days, ``P3``, to the rain of the 15 days before
them, ``P15``: landslides become likely when ``P3`` exceeds ``a - b * P15``, with ``a`` = 3.5 in (88.9 mm)
and ``b`` = 0.67. As in the USGS program that tracks it (Thresh, Baum and others, github.com/usgs/
landslides-thresholds), ``P3`` holds the 72 hourly reports with timestamps in ``(t - 72 h, t]``, ``P15``
the 360 before them, the threshold never falls below zero (``P15`` above ``a / b`` = 5.22 in leaves any
rain over the threshold), and it is exceeded when the deficit ``P3 - max(a - b * P15, 0)`` is positive.
The score is the bounded index ``1 + deficit / a``: 1 at the threshold, 2 when ``P3`` is a full ``a``
above it; the level comes from that index (by default blue above 1: in Seattle an exceedance means an
8 % chance of landslides that day, a call for closer watching). With ``clear_fraction`` 1 (the default)
a gauge is raised in exactly the hours the method exceeds.

Accumulations: rain over the last N hours against depths per level. The default (24 h: 50, 100, 175,
250 mm) follows the China Meteorological Administration's daily classes: rainstorm 50 mm, heavy
rainstorm 100 mm, extraordinary rainstorm 250 mm, with orange between the last two.

Missing data: each window knows how many of its hours no report covered; ``gap_policy`` decides
whether such a window may alarm (see ``rain_window``). Readings are millimetres (``rain_mm``); a gauge
that reports inches publishes ``rain_in``, which ingest converts.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray, register
from detectors.decision import PositiveLevels, RequiredLevels, channel_steps, hysteresis_level, thresholds_array
from detectors.geohazard.rain_window import GapPolicyField, MaxGapField, RainWindow
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.levels import LevelName
from engine.core.quantities import METRIC_INDEX

MM_PER_INCH = 25.4
UNITS_RENAMED = (
    "`units` is now `threshold_units`: it gives the units of the threshold's parameters only. Readings are "
    "always millimetres (rain_mm); publish an inch gauge's values as rain_in, which ingest converts to mm"
)


def refuse_units(data: Any) -> Any:
    """A config that still says ``units`` meant its readings too: stop with the fix, never guess."""
    if isinstance(data, dict) and "units" in data:
        raise ValueError(UNITS_RENAMED)
    return data


def exceedance_index(recent: np.ndarray, need: np.ndarray, scale: float) -> np.ndarray:
    """``1 + (recent - need) / scale``, strictly above 1 only where ``recent`` exceeds ``need`` (the
    published comparisons are strict: a total exactly at the threshold does not exceed it).

    >>> exceedance_index(np.array([2.0, 3.0, 4.0]), np.array([3.0, 3.0, 3.0]), 2.0).tolist()
    [0.5, 0.999999999999, 1.5]
    """
    deficit = np.round(recent - need, 9)
    index = 1.0 + deficit / scale
    return np.asarray(np.where(deficit > 0, index, np.minimum(index, 1.0 - 1e-12)), dtype=np.float64)


class CumulativeThreshold(BaseModel):
    """The USGS recent-vs-antecedent threshold: P_recent exceeds max(a - b·P_antecedent, 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold_units: Literal["mm", "in"] = Field(
        "in", description="Units of `a` (and so of the rain totals `b` applies to); readings are mm."
    )
    a: float = Field(3.5, gt=0, description="Recent rain needed after a dry antecedent period (3.5 in: Seattle).")
    b: float = Field(0.67, ge=0, description="How much each unit of antecedent rain lowers that need (0.67).")
    recent_days: float = Field(3.0, gt=0, description="Length of the recent window (days): 72 hourly reports.")
    antecedent_days: float = Field(
        15.0, gt=0, description="Length of the antecedent window before it (days): 360 hourly reports."
    )
    levels: RequiredLevels = Field(
        {"blue": 1.0},
        description="Index 1 + (P_recent - threshold) / a per level; above 1 the threshold is exceeded.",
    )

    _refuse_units = model_validator(mode="before")(refuse_units)


class Accumulation(BaseModel):
    """Rain total over a fixed number of hours against depths per level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: float = Field(gt=0, description="Window length (hours).")
    levels: PositiveLevels = Field(description="Rain depth (mm) per level.")


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
    bin_s: float = Field(
        3600.0, gt=0, description="Time resolution of the rain windows (seconds); at most the reporting interval."
    )
    max_gap_s: MaxGapField = None
    gap_policy: GapPolicyField = "lower_bound"
    clear_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="A raised gauge clears once every score is below this share of its lowest level (1: raised "
        "in exactly the hours the thresholds are exceeded, as the published methods count them).",
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
            self.a_mm = ct.a * (MM_PER_INCH if ct.threshold_units == "in" else 1.0)
            span_h = max(span_h, 24.0 * (ct.recent_days + ct.antecedent_days))
            self._add_test("cumulative", ct.levels)
        for acc in config.accumulations:
            self._add_test(f"{acc.hours:g}h", acc.levels)
        if not self.tests:
            raise ValueError("rainfall_cumulative needs `cumulative` or at least one accumulation")
        self.window = RainWindow(config.bin_s, span_h, config.max_gap_s)

    def _add_test(self, name: str, levels: dict[LevelName, float]) -> None:
        arr = thresholds_array(levels)
        self.tests.append((name, arr, float(np.nanmin(arr)) * self.config.clear_fraction))

    @classmethod
    def example_config(cls) -> RainfallCumulativeConfig:
        return RainfallCumulativeConfig(
            id="example-cumulative",
            cumulative=CumulativeThreshold(threshold_units="mm", a=88.9, b=0.67, recent_days=1, antecedent_days=2),
            accumulations=[Accumulation(hours=6, levels={"blue": 20, "yellow": 40})],
        )

    def state_spec(self) -> dict[str, StateArray]:
        return {**self.window.state_spec(), "active": StateArray(np.bool_, False, (len(self.tests),))}

    def cadence_problem(self, interval_s: float) -> str | None:
        return self.window.cadence_problem(interval_s, tuple(a.hours for a in self.config.accumulations))

    def scores(self, state: DeviceState, dev: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One score column per test (-inf where ``gap_policy: skip`` holds a window back), and the rain
        totals and missing hours behind them."""
        cols: list[np.ndarray] = []
        totals: dict[str, np.ndarray] = {}
        skip = self.config.gap_policy == "skip"
        ct, accs, w = self.config.cumulative, self.config.accumulations, self.window
        # Every window's start in one gather: the recent and antecedent ends, then each accumulation's.
        recent = w.bins_of(ct.recent_days * 24.0) if ct else 0
        ends = [recent, recent + w.bins_of(ct.antecedent_days * 24.0)] if ct else []
        nb = np.array([*ends, *(w.bins_of(acc.hours) for acc in accs)], dtype=np.int64)
        c0, cov0 = w.cumulative_before(state, dev, nb)
        total, covered = state["rain_total"][dev], state["covered_total"][dev]
        if ct is not None:
            p_recent = np.round(total - c0[:, 0], 9)
            p_ante = np.round(c0[:, 0] - c0[:, 1], 9)
            missing = (nb[0] - (covered - cov0[:, 0])) + (nb[1] - nb[0] - (cov0[:, 0] - cov0[:, 1]))
            need = np.maximum(self.a_mm - ct.b * p_ante, 0.0)
            index = exceedance_index(p_recent, need, self.a_mm)
            cols.append(np.where(skip & (missing > 0), -np.inf, index))
            totals["p_recent_mm"], totals["p_antecedent_mm"], totals["threshold_mm"] = p_recent, p_ante, need
            totals["missing_h"] = w.missing_hours(missing)
        for j, acc in enumerate(accs, start=len(ends)):
            # As RainWindow.totals: sums of decimals rounded (no 1e-15 residues), bins no report covered.
            depth = np.round(total - c0[:, j], 9)
            gaps = np.asarray(nb[j] - (covered - cov0[:, j]), dtype=np.int64)
            cols.append(np.where(skip & (gaps > 0), -np.inf, depth))
            totals[f"rain_{acc.hours:g}h_mm"] = depth
            totals[f"rain_{acc.hours:g}h_missing_h"] = w.missing_hours(gaps)
        return np.stack(cols, axis=1), totals

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        rows = batch.rows_of(self.metrics)
        found: list[Finding] = []
        for r, dev, _ in channel_steps(batch.slot, batch.metric, rows, (METRIC_INDEX["rain_mm"],), state):
            self.window.add(state, dev, batch.ts[r], batch.value[r])
            score, totals = self.scores(state, dev)
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
                evidence: dict[str, object] = {"test": name}
                evidence.update({key: round(float(v[i]), 3) for key, v in totals.items()})
                gap_key = "missing_h" if name == "cumulative" else f"rain_{name}_missing_h"
                evidence["complete"] = bool(totals[gap_key][i] == 0)
                if name == "cumulative":
                    evidence["index"] = round(float(score[i, k]), 4)
                lowest = float(np.nanmin(thresholds))
                found.append(self.finding(batch, int(r[i]), int(level[i]), float(score[i, k]) / lowest, evidence))
        found.sort(key=lambda f: f.row)
        return found
