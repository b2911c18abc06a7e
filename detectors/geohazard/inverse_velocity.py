"""``inverse_velocity``: failure-time forecast by the inverse-velocity method (Fukuzono 1985).

Method: in the tertiary creep before a slope fails, Voight's (1988) law ``dv/dt = A v^alpha`` with
``alpha`` close to 2 makes the inverse velocity fall on a straight line that reaches zero at the failure
time (Fukuzono 1985, *Proc. 4th Int. Conf. Field Workshop on Landslides*, Tokyo, 145–150). Every
``sample_h`` the detector takes the sensor's robust velocity (as ``displacement_rate``), keeps the
samples of the last ``fit_window_h`` hours, and fits ``1/v = a + b·t`` by least squares. The failure
time is where the line crosses zero, ``t_f = -a / b``; its 95 % confidence interval comes from the fit's
covariance by the delta method (Student's t). No forecast while the slope is not accelerating: the fit
needs a significantly negative slope (t-statistic below ``-max_t_stat``), ``R² >= min_r2``, a velocity
of at least ``min_velocity_per_day``, the velocity must have grown by ``min_speedup`` over the fit
window, and the predicted failure must lie ahead: a line that reached zero in the past is an overdue,
broken forecast, never a red one (the velocity detectors still see the movement). The level comes from
the time left until the predicted failure. A slow sensor (a GNSS survey every few days) gets velocity
and fit windows widened to hold ``min_points`` readings and ``min_fit_points`` samples.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from detectors.base import DeviceState, StateArray, register
from detectors.decision import channel_steps, channels_repeat, metric_positions
from detectors.geohazard.velocity import SlopeSensorConfig, SlopeSensorDetector, TimeRing
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.levels import Level, LevelName

F64 = npt.NDArray[np.float64]
NO_SAMPLE = np.iinfo(np.int64).min
# Two-sided 95 % quantiles of Student's t for 1…30 degrees of freedom.
T975 = np.array(
    [
        12.706,
        4.303,
        3.182,
        2.776,
        2.571,
        2.447,
        2.365,
        2.306,
        2.262,
        2.228,
        2.201,
        2.179,
        2.160,
        2.145,
        2.131,
        2.120,
        2.110,
        2.101,
        2.093,
        2.086,
        2.080,
        2.074,
        2.069,
        2.064,
        2.060,
        2.056,
        2.052,
        2.048,
        2.045,
        2.042,
    ]
)


class InverseVelocityConfig(SlopeSensorConfig):
    """Config of the ``inverse_velocity`` detector."""

    type: Literal["inverse_velocity"] = Field("inverse_velocity", description="Detector type.")
    sample_h: float = Field(1.0, gt=0, description="Hours between the velocity samples that are fitted.")
    fit_window_h: float = Field(24.0, gt=0, description="Velocity samples of the last this many hours are fitted.")
    min_fit_points: int = Field(6, ge=3, description="No forecast from fewer samples than this.")
    min_velocity_per_day: float = Field(1.0, ge=0, description="No forecast below this velocity (units/day).")
    min_r2: float = Field(0.8, ge=0, le=1, description="No forecast from a worse straight-line fit of 1/v.")
    max_t_stat: float = Field(3.0, gt=0, description="The 1/v slope must be below -this many standard errors.")
    min_speedup: float = Field(1.5, ge=1, description="Velocity must have grown this much over the fit window.")
    remaining_h: dict[LevelName, float] = Field(
        {"yellow": 168.0, "orange": 48.0, "red": 12.0},
        description="Level when the predicted failure is less than this many hours away; blue beyond.",
    )

    @model_validator(mode="after")
    def _check(self) -> InverseVelocityConfig:
        hours = [self.remaining_h[k] for k in ("yellow", "orange", "red") if k in self.remaining_h]
        if any(b > a for a, b in itertools.pairwise(hours)):
            raise ValueError("remaining_h must shrink from yellow to red")
        return self


def fit_failure_time(t_h: F64, inv_v: F64) -> dict[str, F64]:
    """Least-squares line through (t, 1/v) per row (NaN = no sample) and where it reaches zero.

    Times are hours relative to now; returns slope, t-statistic, R², failure time and its 95 % interval.

    >>> t = np.array([[-4.0, -3.0, -2.0, -1.0, 0.0]])
    >>> fit = fit_failure_time(t, 0.5 - 0.1 * t)  # 1/v reaches zero 5 h from now
    >>> round(float(fit["t_fail_h"][0]), 6), round(float(fit["r2"][0]), 6)
    (5.0, 1.0)
    """
    ok = np.isfinite(t_h) & np.isfinite(inv_v)
    n = ok.sum(axis=1).astype(np.float64)
    t = np.where(ok, t_h, 0.0)
    y = np.where(ok, inv_v, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mt = t.sum(axis=1) / n
        my = y.sum(axis=1) / n
        dt = np.where(ok, t - mt[:, None], 0.0)
        dy = np.where(ok, y - my[:, None], 0.0)
        sxx = (dt * dt).sum(axis=1)
        sxy = (dt * dy).sum(axis=1)
        syy = (dy * dy).sum(axis=1)
        b = sxy / sxx
        a = my - b * mt
        ssr = np.maximum(syy - b * sxy, 0.0)
        r2 = np.where(syy > 0, 1.0 - ssr / syy, 1.0)
        s2 = ssr / np.maximum(n - 2, 1)
        var_b = s2 / sxx
        var_a = s2 * (1.0 / n + mt * mt / sxx)
        cov_ab = -mt * s2 / sxx
        t_fail = -a / b
        var_tf = (var_a + t_fail**2 * var_b + 2 * t_fail * cov_ab) / (b * b)
        df = np.clip(n - 2, 1, None).astype(np.int64)
        q = np.where(df <= T975.shape[0], T975[np.minimum(df, T975.shape[0]) - 1], 1.96 + 2.5 / df)
        half = q * np.sqrt(np.maximum(var_tf, 0.0))
        # A perfect fit has no scatter: its t-statistic is capped at 1e9 (not -inf) so evidence stays a number.
        t_stat = np.clip(b / np.sqrt(np.maximum(var_b, (1e-9 * np.abs(b)) ** 2)), -1e9, 1e9)
    return {
        "slope": b,
        "t_stat": t_stat,
        "r2": r2,
        "t_fail_h": t_fail,
        "ci_low_h": t_fail - half,
        "ci_high_h": t_fail + half,
        "n": n,
    }


@register
class InverseVelocity(SlopeSensorDetector[InverseVelocityConfig]):
    """Predicts the failure time of an accelerating slope from the straight line of 1/v against time.

    See ``fit_failure_time`` for the fit; the level follows the time left (yellow < 7 days, orange < 48 h,
    red < 12 h by default).
    """

    config_class = InverseVelocityConfig

    def __init__(self, config: InverseVelocityConfig) -> None:
        super().__init__(config)
        self.samples = TimeRing("vel", math.ceil(config.fit_window_h / config.sample_h) + 1, len(self.metrics))
        self.remaining = [
            (Level.from_name(name), hours) for name, hours in sorted(config.remaining_h.items(), key=lambda kv: -kv[1])
        ]

    @classmethod
    def example_config(cls) -> InverseVelocityConfig:
        return InverseVelocityConfig(id="example-inverse-velocity", metrics=["crack_mm"], fit_window_h=12.0)

    def state_spec(self) -> dict[str, StateArray]:
        k = len(self.metrics)
        return {
            **self.ring.state_spec(),
            **self.samples.state_spec(),
            "sample_bin": StateArray(np.int64, NO_SAMPLE, (k,)),
        }

    def without_undue(self, batch: ReadingBatch, state: DeviceState, rows: np.ndarray) -> np.ndarray:
        """The rows left after taking in those of sensors that take no velocity sample in this batch.

        A sensor samples its velocity at its first reading of each ``sample_h`` bin; one whose readings here
        all fall in bins it has sampled (a crack meter read every second, sampled once an hour) only pushes
        them onto its ring: done here for all of them at once, exactly as the step would.
        """
        if rows.size == 0:
            return rows
        k = metric_positions(batch.metric[rows], self.metric_ids)
        dev = state.rows_for(batch.slot[rows])
        ts = batch.ts[rows]
        channel = dev * len(self.metrics) + k
        if not channels_repeat(channel):
            return rows  # one reading a sensor: one step, as cheap as this
        uniq, inv = np.unique(channel, return_inverse=True)
        newest_bin = np.full(uniq.shape[0], np.iinfo(np.int64).min)
        np.maximum.at(newest_bin, inv, np.floor(ts / (self.config.sample_h * 3600.0)).astype(np.int64))
        # A reading is due where its bin is past every bin sampled before it: some reading of the batch is due
        # exactly where the channel's newest bin here is past the one sampled last.
        sampled = newest_bin <= state["sample_bin"].reshape(-1).take(uniq)
        quiet = sampled[inv]
        if quiet.any():
            self.ring.push_all(state, dev[quiet], k[quiet], ts[quiet], batch.value[rows[quiet]])
        kept: np.ndarray = rows[~quiet]
        return kept

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        cfg = self.config
        rows = self.without_undue(batch, state, batch.rows_of(self.metrics))
        found: list[Finding] = []
        for r, dev, k in channel_steps(batch.slot, batch.metric, rows, self.metric_ids, state):
            ts = batch.ts[r]
            self.ring.push(state, dev, k, ts, batch.value[r])
            sample_bin = np.floor(ts / (cfg.sample_h * 3600.0)).astype(np.int64)
            due = sample_bin > state["sample_bin"][dev, k]
            if not due.any():
                continue
            r, dev, k, ts = r[due], dev[due], k[due], ts[due]  # noqa: PLW2901 (only the rows due)
            state["sample_bin"][dev, k] = sample_bin[due]
            v, window_h = self.velocity_and_window(state, dev, k, ts)
            moving = np.isfinite(v) & (v > 0)
            # A window's robust slope is the velocity of the window's middle, not of its newest reading.
            mid = ts - window_h * 1800.0
            self.samples.push(state, dev[moving], k[moving], mid[moving], v[moving])
            t_s, v_s = self.samples.recent(state, dev, k)
            # A slow sensor's fit window widens to hold its last min_fit_points samples, as its velocity window.
            fit_s = self.samples.window_s(state, dev, k, ts, cfg.fit_window_h, cfg.min_fit_points, cfg.max_window_h)
            with np.errstate(invalid="ignore", divide="ignore"):
                in_fit = t_s >= (ts - fit_s)[:, None]
                t_h = np.where(in_fit, (t_s - ts[:, None]) / 3600.0, np.nan)
                fit = fit_failure_time(t_h, 1.0 / v_s)
                v_first = v_s[np.arange(v_s.shape[0]), np.argmax(in_fit, axis=1)]
                accelerating = (
                    moving
                    & (fit["t_fail_h"] > 0)  # a failure time already past is no forecast (never a red one)
                    & (fit["n"] >= cfg.min_fit_points)
                    & (v >= cfg.min_velocity_per_day)
                    & (fit["t_stat"] < -cfg.max_t_stat)
                    & (fit["r2"] >= cfg.min_r2)
                    & (v >= cfg.min_speedup * v_first)
                )
            for i in np.flatnonzero(accelerating):
                left = float(fit["t_fail_h"][i])
                level = Level.BLUE
                for lv, hours in self.remaining:
                    if left < hours:
                        level = lv
                t0 = float(ts[i])
                evidence = {
                    "metric": self.metrics[int(k[i])],
                    "velocity_per_day": round(float(v[i]), 4),
                    "predicted_failure_ts": round(t0 + left * 3600.0, 1),
                    "failure_ci95_ts": [
                        round(t0 + float(fit["ci_low_h"][i]) * 3600.0, 1),
                        round(t0 + float(fit["ci_high_h"][i]) * 3600.0, 1),
                    ],
                    "hours_to_failure": round(left, 3),
                    "r2": round(float(fit["r2"][i]), 4),
                    "t_stat": round(float(fit["t_stat"][i]), 3),
                    "fit_points": int(fit["n"][i]),
                    "fit_window_h": round(float(fit_s[i]) / 3600.0, 3),
                }
                found.append(self.finding(batch, int(r[i]), int(level), 1.0 / max(left, 1e-3), evidence))
        found.sort(key=lambda f: f.row)
        return found
