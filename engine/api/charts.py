"""What the operator page draws for a device: its readings and the thresholds its detectors apply.

Rain gauges: hourly rain, and the mean intensity over each of the I–D detector's durations ending now,
against the threshold curve ``I = alpha·D^-beta`` times each level's ratio. Displacement sensors: the
readings, the velocity (units/day over the detector's window) against its level lines, and the inverse
velocity with its straight-line fit and the forecast failure time (Fukuzono), as the detectors see them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.base import DetectorConfig
from detectors.geohazard.displacement_rate import DisplacementRateConfig
from detectors.geohazard.intensity_duration import RainfallIntensityDurationConfig
from detectors.geohazard.inverse_velocity import InverseVelocityConfig, fit_failure_time


def rain_chart(ts: list[float], rain: list[float], cfg: RainfallIntensityDurationConfig | None) -> dict[str, Any]:
    """Hourly totals and the I–D picture at the latest reading.

    >>> cfg = RainfallIntensityDurationConfig(durations_h=[1, 3], levels={"yellow": 1.0})
    >>> c = rain_chart([3600.0, 7200.0, 10800.0], [5.0, 10.0, 20.0], cfg)
    >>> c["observed_mm_h"], c["threshold_mm_h"]["yellow"]
    ([20.0, 11.666667], [14.82, 9.6554])
    """
    t, r = np.asarray(ts, float), np.asarray(rain, float)
    out: dict[str, Any] = {"kind": "rain", "hourly": []}
    if not t.size:
        return out
    hours = np.floor(t / 3600.0) * 3600.0
    uniq, inv = np.unique(hours, return_inverse=True)
    out["hourly"] = [[float(h), round(float(v), 3)] for h, v in zip(uniq, np.bincount(inv, weights=r), strict=True)]
    if cfg is None:
        return out
    durations = [float(d) for d in cfg.durations_h]
    now = float(t[-1])
    observed = [round(float(r[t > now - d * 3600.0].sum()) / d, 6) for d in durations]
    out.update(
        detector=cfg.name,
        durations_h=durations,
        observed_mm_h=observed,
        threshold_mm_h={
            level: [round(cfg.threshold_mm_h(d) * ratio, 4) for d in durations] for level, ratio in cfg.levels.items()
        },
    )
    return out


def slope_chart(
    ts: list[float],
    values: list[float],
    rate: DisplacementRateConfig | None,
    forecast: InverseVelocityConfig | None,
) -> dict[str, Any]:
    """Displacement, velocity against its level lines, inverse velocity and the failure-time forecast.

    >>> t = [3600.0 * k for k in range(13)]
    >>> c = slope_chart(t, [0.5 * k for k in range(13)], DisplacementRateConfig(window_h=2), None)
    >>> c["velocity_per_day"][-1], c["velocity_levels"]["red"]
    ([43200.0, 12.0], 100.0)
    """
    t, x = np.asarray(ts, float), np.asarray(values, float)
    out: dict[str, Any] = {"kind": "slope", "velocity_per_day": [], "inverse_velocity": []}
    if t.size < 2 or rate is None:
        return out
    window_s = rate.window_h * 3600.0
    start = np.searchsorted(t, t - window_s, side="left")
    span = t - t[start]
    ok = span >= window_s / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(ok, (x - x[start]) / span * 86400.0, np.nan)
    out["detector"] = rate.name
    out["velocity_per_day"] = [[float(a), round(float(b), 4)] for a, b in zip(t[ok], v[ok], strict=True)]
    out["velocity_levels"] = dict(rate.velocity_levels)
    if forecast is None:
        return out
    fast = ok & (v >= max(forecast.min_velocity_per_day, 1e-9))
    inv = np.where(fast, 1.0 / np.where(fast, v, 1.0), np.nan)
    out["inverse_velocity"] = [[float(a), round(float(b), 6)] for a, b in zip(t[fast], inv[fast], strict=True)]
    recent = fast & (t > t[-1] - forecast.fit_window_h * 3600.0)
    if int(recent.sum()) >= forecast.min_fit_points:
        rel_h = (t[recent] - t[-1]) / 3600.0
        fit = fit_failure_time(rel_h[None, :], inv[recent][None, :])
        t_fail = float(fit["t_fail_h"][0])
        if np.isfinite(t_fail) and t_fail > 0 and float(fit["r2"][0]) >= forecast.min_r2:
            out["forecast"] = {
                "detector": forecast.name,
                "failure_at": round(float(t[-1]) + t_fail * 3600.0, 1),
                "r2": round(float(fit["r2"][0]), 4),
                "fit_from": float(t[recent][0]),
            }
    return out


def device_chart(metric: str, ts: list[float], values: list[float], detectors: list[DetectorConfig]) -> dict[str, Any]:
    """The chart of one metric, with the first enabled detector of each kind that watches it."""
    if metric == "rain_mm":
        rain = next((d for d in detectors if isinstance(d, RainfallIntensityDurationConfig) and d.enabled), None)
        return {"metric": metric, "ts": ts, "values": values, **rain_chart(ts, values, rain)}
    rate = next(
        (d for d in detectors if isinstance(d, DisplacementRateConfig) and d.enabled and metric in d.metrics), None
    )
    if rate is not None:
        forecast = next(
            (d for d in detectors if isinstance(d, InverseVelocityConfig) and d.enabled and metric in d.metrics), None
        )
        return {"metric": metric, "ts": ts, "values": values, **slope_chart(ts, values, rate, forecast)}
    return {"metric": metric, "ts": ts, "values": values, "kind": "plain"}
