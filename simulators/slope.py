"""Slope displacement: stable creep, and creep to failure following Voight's law."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def voight_displacement(t_h: F64, onset_h: float, failure_h: float, v0_mm_h: float) -> F64:
    """Cumulative displacement (mm) accelerating from ``onset_h`` to failure at ``failure_h``.

    Voight's law with alpha = 2 makes the inverse velocity fall linearly to zero at failure
    (Fukuzono 1985): ``v = v0 / (1 - (t - t0) / (tf - t0))``, integrated in closed form. Before the onset
    the slope creeps at ``v0``. Times at or past failure are clipped just short of it.

    >>> d = voight_displacement(np.array([0.0, 10.0, 15.0]), 10.0, 20.0, 0.1)
    >>> [round(float(x), 3) for x in d]
    [0.0, 1.0, 1.693]
    """
    span = failure_h - onset_h
    creep = v0_mm_h * np.minimum(t_h, onset_h)
    frac = np.clip((t_h - onset_h) / span, 0.0, 1.0 - 1e-6)
    accel = -v0_mm_h * span * np.log1p(-frac)
    return creep + np.where(t_h > onset_h, accel, 0.0)


def stable_creep(t_h: F64, v_mm_h: float, seasonal_mm: float = 0.0, period_h: float = 24 * 365) -> F64:
    """Constant creep with an optional seasonal wobble: the no-event baseline."""
    return v_mm_h * t_h + seasonal_mm * np.sin(2 * np.pi * t_h / period_h)


def rain_driven_creep(t_h: F64, v0_mm_h: float, rain_mm_h: F64, gain: float, memory_h: float) -> F64:
    """Creep that speeds up after rain: ``v = v0 + gain * r``, ``r`` the rain intensity smoothed over ``memory_h``.

    The seasonal response of a slow, stable landslide: faster in the wet season, never accelerating to
    failure, because the rate follows the (bounded) rain and not the displacement itself.

    >>> d = rain_driven_creep(np.arange(1.0, 5.0), 0.01, np.array([0.0, 10.0, 0.0, 0.0]), 0.01, 1.0)
    >>> bool(np.all(np.diff(d) > 0))
    True
    """
    dt = np.diff(t_h, prepend=t_h[0] - (t_h[1] - t_h[0] if t_h.shape[0] > 1 else 1.0))
    smoothed = np.empty_like(rain_mm_h)
    level = 0.0
    for i, (r, step) in enumerate(zip(rain_mm_h.tolist(), dt.tolist(), strict=True)):
        level += (r - level) * (1.0 - np.exp(-step / memory_h))
        smoothed[i] = level
    return np.cumsum((v0_mm_h + gain * smoothed) * dt)
