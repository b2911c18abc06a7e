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
from detectors.geohazard.inverse_velocity import InverseVelocityConfig


def current_storm(t: np.ndarray, r: np.ndarray, cfg: RainfallIntensityDurationConfig) -> dict[str, float] | None:
    """The current storm's duration and mean intensity at the last reading, by the detector's ``StormTracker``
    over these readings (None when no storm is current).

    >>> cfg = RainfallIntensityDurationConfig()
    >>> current_storm(np.array([3600.0, 7200.0, 10800.0]), np.array([0.0, 6.0, 2.0]), cfg)  # from the record's start
    {'duration_h': 3.0, 'intensity_mm_h': 2.6667}
    """
    from detectors.base import DeviceState
    from detectors.geohazard.intensity_duration import RainfallIntensityDuration

    tracker = RainfallIntensityDuration(cfg).storm  # built as the detector builds it
    state = DeviceState(tracker.state_spec())
    state.ensure(1)
    dev = np.zeros(1, dtype=np.int64)
    s: dict[str, Any] = {}
    for ts, mm in zip(t.tolist(), r.tolist(), strict=True):
        s = tracker.add(state, dev, np.array([ts]), np.array([mm]))
    if not s or not bool(s["current"][0]):
        return None
    duration, intensity = float(s["duration_h"][0]), float(s["intensity_mm_h"][0])
    return {"duration_h": round(duration, 3), "intensity_mm_h": round(intensity, 4)}


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
    if cfg.method == "storm":  # what the detector judges: the current storm, tracked by the detector's own code
        out["storm"] = current_storm(t, r, cfg)
    out.update(
        method=cfg.method,
        detector=cfg.name,
        durations_h=durations,
        observed_mm_h=observed,
        threshold_mm_h={
            level: [round(cfg.threshold_mm_h(d) * ratio, 4) for d in durations] for level, ratio in cfg.levels.items()
        },
    )
    return out


def forecast_of(finding: dict[str, Any]) -> dict[str, Any]:
    """The failure-time forecast as the detector's finding states it (the one source the page shows).

    >>> f = {"detector": "ff", "ts": 3600.0, "level": "red", "evidence": {"predicted_failure_ts": 7200.0,
    ...      "failure_ci95_ts": [7000.0, 7500.0], "hours_to_failure": 1.0, "fit_window_h": 24.0, "r2": 0.97}}
    >>> forecast_of(f)["failure_at"], forecast_of(f)["ci95"], forecast_of(f)["fit_from"]
    (7200.0, [7000.0, 7500.0], -82800.0)
    """
    ev = finding["evidence"]
    return {
        "detector": finding["detector"],
        "level": finding.get("level"),
        "as_of": finding["ts"],
        "failure_at": ev["predicted_failure_ts"],
        "ci95": ev.get("failure_ci95_ts"),
        "hours_left": ev.get("hours_to_failure"),
        "r2": ev.get("r2"),
        "fit_from": finding["ts"] - float(ev.get("fit_window_h", 24.0)) * 3600.0,
    }


def slope_chart(
    ts: list[float],
    values: list[float],
    rate: DisplacementRateConfig | None,
    forecast: InverseVelocityConfig | None,
    findings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Displacement, velocity against its level lines, inverse velocity, and what the detectors found.

    The failure-time forecast is the inverse-velocity detector's own (its newest finding on this sensor,
    from ``findings``), never a refit here: the page shows one forecast, the one that raised the incident.
    ``fired`` is the newest velocity finding: which level fired and by which test (velocity or angle).

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
    fired = [f for f in sorted(findings or [], key=lambda f: f["ts"]) if f["detector"] == rate.name]
    if fired:
        ev = fired[-1]["evidence"]
        out["fired"] = {
            "level": fired[-1]["level"],
            "ts": fired[-1]["ts"],
            "velocity_per_day": ev.get("velocity_per_day"),
            "tangent_angle_deg": ev.get("tangent_angle_deg"),
        }
    if forecast is None:
        return out
    fast = ok & (v >= max(forecast.min_velocity_per_day, 1e-9))
    inv = np.where(fast, 1.0 / np.where(fast, v, 1.0), np.nan)
    out["inverse_velocity"] = [[float(a), round(float(b), 6)] for a, b in zip(t[fast], inv[fast], strict=True)]
    mine = sorted(findings or [], key=lambda f: f["ts"])
    forecasts = [f for f in mine if f["detector"] == forecast.name and "predicted_failure_ts" in f["evidence"]]
    if forecasts:
        out["forecast"] = forecast_of(forecasts[-1])
    return out


def device_chart(
    metric: str,
    ts: list[float],
    values: list[float],
    detectors: list[DetectorConfig],
    findings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The chart of one metric, with the first enabled detector of each kind that watches it and the findings
    of the device's open incidents."""
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
        mine = [f for f in findings or [] if f["evidence"].get("metric", metric) == metric]
        return {"metric": metric, "ts": ts, "values": values, **slope_chart(ts, values, rate, forecast, mine)}
    return {"metric": metric, "ts": ts, "values": values, "kind": "plain"}
