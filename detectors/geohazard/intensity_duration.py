"""``rainfall_intensity_duration``: rain intensity against an intensity–duration threshold I = alpha·D^-beta.

Methods (``method``):

* ``storm`` (the default): the published definition. Caine (1980) and the USGS Seattle threshold
  (Godt, Baum & Chleborad 2006) relate a storm's mean intensity ``I`` to its duration ``D``; storms are
  separated by ``storm_gap_h`` dry hours (3 in Seattle). ``D`` and ``I`` are those of the current
  storm as the USGS program Thresh tracks them (``storm``), and the threshold is exceeded when
  ``I / (alpha·D^-beta)`` is above 1. Thresh computes exactly this for Seattle.
* ``window``: for each duration ``D`` in ``durations_h``, the mean intensity over the reports with
  timestamps in ``(t - D, t]``; the score is the largest ratio over all durations. Quicker to react to a
  downpour inside a long wet spell, but it raises far more alarm hours than the published method.

Thresholds: Caine (1980, *Geografiska Annaler* 62A:23–27), the global shallow-landslide and debris-flow
threshold ``I = 14.82 D^-0.39`` (I in mm/h, D in h); and the USGS Seattle threshold of Godt, Baum &
Chleborad (2006), ``I = 3.257 D^-1.13`` with I in inches per hour (``threshold_units: in``; 82.73 mm/h in
mm). Readings are always mm (``rain_mm``). A ratio of 1 is the threshold itself, so by default the level
is orange above it.

Optionally gated by the antecedent water index (``awi_gate``), as in the Seattle decision tree: no
finding while the soil is drier than ``wet_mm``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray, register
from detectors.decision import PositiveLevels, channel_steps, hysteresis_level, thresholds_array
from detectors.geohazard.antecedent_water_index import WaterBalance
from detectors.geohazard.cumulative_rainfall import exceedance_index, refuse_units
from detectors.geohazard.rain_window import GapPolicyField, MaxGapField, RainWindow
from detectors.geohazard.storm import StormTracker
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.quantities import METRIC_INDEX

MM_PER_INCH = 25.4
DEFAULTS = {"mm": (14.82, 0.39), "in": (3.257, 1.13)}


class RainfallIntensityDurationConfig(DetectorConfig):
    """Config of the ``rainfall_intensity_duration`` detector."""

    type: Literal["rainfall_intensity_duration"] = Field("rainfall_intensity_duration", description="Detector type.")
    hazard: str = Field("landslide", description="Hazard name findings are filed under.")
    method: Literal["storm", "window"] = Field(
        "storm",
        description="`storm`: the current storm's mean intensity and duration (Caine 1980, USGS Seattle, as Thresh "
        "computes it); `window`: mean intensity over each of `durations_h` ending now.",
    )
    threshold_units: Literal["mm", "in"] = Field(
        "mm",
        description="Units of the threshold's intensity: mm/h (Caine 1980) or in/h (USGS Seattle); readings are mm.",
    )
    storm_gap_h: float = Field(3.0, gt=0, description="Dry hours that separate two storms (`storm` method; Seattle 3).")
    alpha: float | None = Field(None, gt=0, description="Scale of I = alpha·D^-beta; default 14.82 (mm) or 3.257 (in).")
    beta: float | None = Field(None, gt=0, description="Exponent of I = alpha·D^-beta; default 0.39 (mm) or 1.13 (in).")
    durations_h: list[float] = Field(
        [1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 72.0],
        min_length=1,
        description="Durations D (hours) over which mean intensity is tested (`window` method).",
    )
    bin_s: float = Field(
        3600.0,
        gt=0,
        description="Time resolution of the rain windows (s), at most the reporting interval; also the interval "
        "assumed before a gauge's first report.",
    )
    max_gap_s: MaxGapField = None
    gap_policy: GapPolicyField = "lower_bound"
    levels: PositiveLevels = Field(
        {"blue": 0.5, "yellow": 0.75, "orange": 1.0, "red": 1.5},
        description="Ratio of observed to threshold intensity per level.",
    )
    clear: float | None = Field(
        None, ge=0, description="A raised gauge clears below this ratio; default: lowest level."
    )
    awi_gate: WaterBalance | None = Field(
        None, description="When set, findings only while the antecedent water index is at least its wet_mm."
    )

    _refuse_units = model_validator(mode="before")(refuse_units)

    @model_validator(mode="after")
    def _check(self) -> RainfallIntensityDurationConfig:
        if any(d <= 0 for d in self.durations_h):
            raise ValueError("durations_h must all be positive")
        return self

    def threshold_mm_h(self, duration_h: float) -> float:
        """The threshold intensity for a duration, in mm/h."""
        alpha, beta = DEFAULTS[self.threshold_units]
        alpha = self.alpha if self.alpha is not None else alpha
        beta = self.beta if self.beta is not None else beta
        i = float(alpha * duration_h**-beta)
        return i * MM_PER_INCH if self.threshold_units == "in" else i


@register
class RainfallIntensityDuration(Detector[RainfallIntensityDurationConfig]):
    """Rain intensity against an intensity–duration threshold, per gauge, over several durations.

    >>> cfg = RainfallIntensityDurationConfig()
    >>> round(cfg.threshold_mm_h(1.0), 2), round(cfg.threshold_mm_h(24.0), 2)
    (14.82, 4.29)
    >>> round(RainfallIntensityDurationConfig(threshold_units="in").threshold_mm_h(1.0), 2)
    82.73
    """

    config_class = RainfallIntensityDurationConfig
    metrics = ("rain_mm",)

    def __init__(self, config: RainfallIntensityDurationConfig) -> None:
        super().__init__(config)
        self.durations = sorted(config.durations_h)
        self.threshold = np.array([config.threshold_mm_h(d) for d in self.durations])
        self.window = RainWindow(config.bin_s, self.durations[-1], config.max_gap_s)
        self.storm = StormTracker(config.storm_gap_h, self.window.max_gap_s, config.bin_s, config.gap_policy)
        self.levels = thresholds_array(config.levels)
        self.clear = config.clear if config.clear is not None else float(np.nanmin(self.levels))

    @classmethod
    def example_config(cls) -> RainfallIntensityDurationConfig:
        return RainfallIntensityDurationConfig(id="example-id", durations_h=[1, 3, 12, 24])

    def state_spec(self) -> dict[str, StateArray]:
        tracker = self.storm if self.config.method == "storm" else self.window
        spec = {**tracker.state_spec(), "active": StateArray(np.bool_, False)}
        if self.config.awi_gate is not None:
            spec.update(self.config.awi_gate.state_spec())
        return spec

    def cadence_problem(self, interval_s: float) -> str | None:
        cfg = self.config
        if cfg.method == "window":
            return self.window.cadence_problem(interval_s, tuple(self.durations))
        if interval_s > self.window.max_gap_s:
            return (
                f"a report {interval_s:g} s after the previous one counts as missing data (max_gap_s "
                f"{self.window.max_gap_s:g} s): set bin_s and max_gap_s to at least {interval_s:g} s"
            )
        if interval_s > cfg.storm_gap_h * 3600.0:
            return f"storms {cfg.storm_gap_h:g} h apart cannot be told apart in reports {interval_s:g} s apart"
        return None

    def storm_ratio(self, duration_h: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The threshold intensity at each duration (mm/h) and the observed intensity's ratio to it."""
        cfg = self.config
        alpha, beta = DEFAULTS[cfg.threshold_units]
        alpha = cfg.alpha if cfg.alpha is not None else alpha
        beta = cfg.beta if cfg.beta is not None else beta
        scale = MM_PER_INCH if cfg.threshold_units == "in" else 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            threshold = alpha * scale * np.where(duration_h > 0, duration_h, np.nan) ** -beta
            return threshold, intensity / threshold

    def storm_scores(
        self, state: DeviceState, dev: np.ndarray, ts: np.ndarray, mm: np.ndarray, awi: np.ndarray | None = None
    ) -> tuple[np.ndarray, Callable[[int], dict[str, object]], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Ratio of the current storm's intensity to the threshold at its duration (strictly above 1 only
        where it exceeds; -inf for a report not judged now: no storm, a skipped incomplete storm, or a dry
        report pending until the storm resumes or ends), the evidence of a report (built only for the
        reports that raise a level), the pending reports this one decides (``StormTracker.add``'s
        ``resolved``, with their ``score``), and the tracker's ``pending`` and ``dropped`` masks."""
        s = self.storm.add(state, dev, ts, mm, awi)
        dur = np.asarray(s["duration_h"], dtype=np.float64)
        intensity = np.asarray(s["intensity_mm_h"], dtype=np.float64)
        threshold, ratio = self.storm_ratio(dur, intensity)
        score = exceedance_index(ratio, np.ones_like(ratio), 1.0)
        missing = np.asarray(s["missing_h"], dtype=np.float64)
        usable = np.asarray(s["current"], dtype=bool) & ~np.asarray(s["pending"], dtype=bool) & (dur > 0)
        if self.config.gap_policy == "skip":
            usable &= missing == 0
        score = np.where(usable, score, -np.inf)
        resolved: dict[str, np.ndarray] = s["resolved"]
        r_threshold, r_ratio = self.storm_ratio(resolved["duration_h"], resolved["intensity_mm_h"])
        r_usable = np.isfinite(resolved["ts"]) & (resolved["duration_h"] > 0)
        if self.config.gap_policy == "skip":
            r_usable &= resolved["missing_h"] == 0
        r_score = exceedance_index(r_ratio.reshape(-1), np.ones(r_ratio.size), 1.0).reshape(r_ratio.shape)
        resolved.update(
            score=np.where(r_usable, r_score, -np.inf),
            threshold_mm_h=r_threshold,
            ratio=r_ratio,
            total_mm=np.broadcast_to((s["total_mm"] - mm)[resolved["rows"]][:, None], r_ratio.shape),
        )

        def evidence(i: int) -> dict[str, object]:
            if not usable[i]:
                return {}
            return {
                "method": "storm",
                "duration_h": round(float(dur[i]), 3),
                "intensity_mm_h": round(float(intensity[i]), 3),
                "threshold_mm_h": round(float(threshold[i]), 3),
                "storm_total_mm": round(float(s["total_mm"][i]), 3),
                "ratio": round(float(ratio[i]), 4),
                "missing_h": round(float(missing[i]), 3),
                "complete": bool(missing[i] == 0),
            }

        return score, evidence, resolved, {"pending": s["pending"], "dropped": s["dropped"]}

    def window_scores(
        self, state: DeviceState, dev: np.ndarray, ts: np.ndarray, mm: np.ndarray
    ) -> tuple[np.ndarray, Callable[[int], dict[str, object]]]:
        """The largest ratio of mean intensity over each duration to its threshold, and the evidence of a
        report (built only for the reports that raise a level)."""
        self.window.add(state, dev, ts, mm)
        total, missing = self.window.totals(state, dev, tuple(self.durations))
        intensity = total / np.array(self.durations)[None, :]
        ratio = intensity / self.threshold[None, :]
        if self.config.gap_policy == "skip":
            ratio = np.where(missing > 0, -np.inf, ratio)
        worst = np.argmax(ratio, axis=1)
        rows = np.arange(dev.shape[0])
        best = ratio[rows, worst]
        score = exceedance_index(best, np.ones_like(best), 1.0)

        def evidence(i: int) -> dict[str, object]:
            j = int(worst[i])
            gap_h = float(self.window.missing_hours(missing[i, j]))
            return {
                "method": "window",
                "duration_h": self.durations[j],
                "intensity_mm_h": round(float(intensity[i, j]), 3),
                "threshold_mm_h": round(float(self.threshold[j]), 3),
                "ratio": round(float(best[i]), 4),
                "missing_h": round(gap_h, 3),
                "complete": gap_h == 0,
            }

        return score, evidence

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        gate = self.config.awi_gate
        rows = batch.rows_of(self.metrics)
        found: list[Finding] = []
        storm = self.config.method == "storm"
        for r, dev, _ in channel_steps(batch.slot, batch.metric, rows, (METRIC_INDEX["rain_mm"],), state):
            ts, mm = batch.ts[r], batch.value[r]
            awi = gate.update(state, dev, ts, mm) if gate is not None else None
            judged = np.ones(r.shape[0], dtype=bool)
            if storm:
                score, evidence, resolved, masks = self.storm_scores(state, dev, ts, mm, awi)
                # The hours of a pause that the resumed rain decides come first, in their order; a pause that
                # was a storm's last hours clears the level as those hours would have; a report still pending
                # leaves it as it is.
                found.extend(self.pause_findings(batch, state, r, dev, resolved))
                state["active"][dev[masks["dropped"]]] = False
                judged = ~masks["pending"]
            else:
                score, evidence = self.window_scores(state, dev, ts, mm)
            if gate is not None and awi is not None:
                score = np.where(awi >= gate.wet_mm, score, -np.inf)
            first = np.ones(r.shape[0], dtype=bool)
            levels = np.zeros(r.shape[0], dtype=np.int8)
            carried = state["active"][dev[judged]]
            lv, active = hysteresis_level(score[judged], self.levels, self.clear, first[judged], carried)
            state["active"][dev[judged]] = active
            levels[judged] = lv
            for i in np.flatnonzero(levels):
                ev = evidence(int(i))
                if awi is not None:
                    ev["awi_mm"] = round(float(awi[i]), 3)
                found.append(self.finding(batch, int(r[i]), int(levels[i]), float(score[i]), ev))
        found.sort(key=lambda f: f.row)
        return found

    def pause_findings(
        self, batch: ReadingBatch, state: DeviceState, r: np.ndarray, dev: np.ndarray, resolved: dict[str, np.ndarray]
    ) -> list[Finding]:
        """Findings for the dry reports of a pause, judged now that the rain has resumed (at the resuming
        report's row, with the pause report's own time), one column of ``resolved`` after the other."""
        gate = self.config.awi_gate
        found: list[Finding] = []
        step_row = resolved["rows"]  # the resuming report of each row of ``resolved``
        for j in range(resolved["ts"].shape[1]):
            held = np.flatnonzero(np.isfinite(resolved["ts"][:, j]))
            if held.size == 0:
                break
            score = resolved["score"][held, j]
            if gate is not None:
                score = np.where(resolved["extra"][held, j] >= gate.wet_mm, score, -np.inf)
            first = np.ones(held.shape[0], dtype=bool)
            gauges = dev[step_row[held]]
            levels, active = hysteresis_level(score, self.levels, self.clear, first, state["active"][gauges])
            state["active"][gauges] = active
            for i in np.flatnonzero(levels):
                row = int(held[i])
                missing = float(resolved["missing_h"][row, j])
                ev: dict[str, object] = {
                    "method": "storm",
                    "duration_h": round(float(resolved["duration_h"][row, j]), 3),
                    "intensity_mm_h": round(float(resolved["intensity_mm_h"][row, j]), 3),
                    "threshold_mm_h": round(float(resolved["threshold_mm_h"][row, j]), 3),
                    "storm_total_mm": round(float(resolved["total_mm"][row, j]), 3),
                    "ratio": round(float(resolved["ratio"][row, j]), 4),
                    "missing_h": round(missing, 3),
                    "complete": missing == 0,
                    "pause": True,
                }
                if gate is not None:
                    ev["awi_mm"] = round(float(resolved["extra"][row, j]), 3)
                ts = float(resolved["ts"][row, j])
                at = int(r[step_row[row]])
                found.append(self.finding(batch, at, int(levels[i]), float(score[i]), ev, ts=ts))
        return found
