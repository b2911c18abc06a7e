"""Rainstorm hyetographs: rain per reporting interval for a storm of given depth and shape."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def triangular_hyetograph(
    t_h: npt.NDArray[np.float64], start_h: float, duration_h: float, depth_mm: float, peak_frac: float = 0.4
) -> npt.NDArray[np.float64]:
    """Rain intensity (mm/h) at times ``t_h`` for a triangular storm (the SCS/Yen–Chow shape).

    The intensity rises linearly to its peak at ``peak_frac`` of the duration and falls to zero; the area
    under it is ``depth_mm``.

    >>> t = np.arange(0, 10, 0.01)
    >>> round(float(triangular_hyetograph(t, 2, 6, 60).sum() * 0.01), 1)
    60.0
    """
    peak = 2.0 * depth_mm / duration_h
    x = (t_h - start_h) / duration_h
    rise = np.clip(x / peak_frac, 0, 1)
    fall = np.clip((1 - x) / (1 - peak_frac), 0, 1)
    return np.where((x >= 0) & (x <= 1), peak * np.minimum(rise, fall), 0.0)


def gauge_increments(
    intensity_mm_h: npt.NDArray[np.float64], step_h: float, rng: np.random.Generator, tip_mm: float = 0.2
) -> npt.NDArray[np.float64]:
    """What a tipping-bucket gauge reports per interval: rain rounded down to whole tips, remainder carried."""
    exact = intensity_mm_h * step_h * rng.lognormal(0.0, 0.15, intensity_mm_h.shape)
    total = np.floor(np.cumsum(exact) / tip_mm) * tip_mm
    return np.round(np.diff(total, prepend=0.0), 3)
