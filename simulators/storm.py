"""Rainstorm hyetographs: rain per reporting interval for a storm of given depth and shape."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


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


def idf_intensity(duration_min: F64, return_period_y: float, a: float, c: float, b: float, n: float) -> F64:
    """Mean intensity (mm/min) of the storm of a return period and duration from an IDF formula.

    The Chinese storm-intensity formula ``i = a (1 + c lg T) / (t + b)^n`` (GB 50014 "Code for design of
    outdoor wastewater engineering"); its four constants are fitted per city from rain-gauge records.

    >>> round(float(idf_intensity(np.array([60.0]), 10.0, 16.9, 0.775, 12.8, 0.77)[0] * 60), 1)  # mm/h
    66.3
    """
    out: F64 = a * (1.0 + c * np.log10(return_period_y)) / (duration_min + b) ** n
    return out


def alternating_block(
    t_h: F64, start_h: float, duration_h: float, return_period_y: float, peak_frac: float = 0.4,
    idf: tuple[float, float, float, float] = (16.9, 0.775, 12.8, 0.77), block_min: float = 10.0,
) -> F64:  # fmt: skip
    """Intensity (mm/h) at ``t_h`` of a design storm by the alternating-block method (Chow et al. 1988).

    The depth of every duration k·Δt is taken from the IDF curve; the increments are ranked and placed
    alternately either side of the peak at ``peak_frac`` of the storm, so that every window around the
    peak holds exactly the design depth of its duration.

    >>> t = np.arange(0, 3, 1 / 60)
    >>> i = alternating_block(t, 0.0, 2.0, 10.0)
    >>> round(float(i.max()), 1), round(float(i.sum() / 60), 1)  # peak mm/h, depth mm
    (162.0, 83.4)
    """
    blocks = max(round(duration_h * 60.0 / block_min), 1)
    d_min = block_min * np.arange(1, blocks + 1, dtype=np.float64)
    depth = idf_intensity(d_min, return_period_y, *idf) * d_min
    increments = np.sort(np.diff(depth, prepend=0.0))[::-1]
    peak = min(int(peak_frac * blocks), blocks - 1)
    order = [peak]
    left, right = peak - 1, peak + 1
    while len(order) < blocks:
        if right < blocks:
            order.append(right)
            right += 1
        if left >= 0 and len(order) < blocks:
            order.append(left)
            left -= 1
    hyeto = np.zeros(blocks)
    hyeto[order] = increments
    k = np.floor((t_h - start_h) * 60.0 / block_min).astype(np.int64)
    inside = (k >= 0) & (k < blocks)
    return np.where(inside, hyeto[np.clip(k, 0, blocks - 1)] * 60.0 / block_min, 0.0)


def hourly_record(seed: int, hours: int, holes: int = 0) -> list[float]:
    """A gauge's hourly rain record (mm) in hundredths of an inch, as the Seattle gauges report: storms of
    one hour to two days with 80 % wet hours, some heavy, between dry spells of 3 hours to a week, and
    ``holes`` runs of one to seven missing hours (``nan``); the first hour is never missing.

    >>> r = hourly_record(1, 500, holes=2)
    >>> len(r), r[0] == r[0], all(v != v or round(v / 0.254, 6).is_integer() for v in r)
    (500, True, True)
    """
    rng = np.random.default_rng(seed)
    p = np.zeros(hours)
    t = 0
    while t < hours:
        t += int(rng.integers(3, 160))  # dry spell
        length = int(rng.integers(1, 48))
        heavy = rng.random() < 0.3
        counts = rng.poisson(25 if heavy else 6, size=length) * (rng.random(length) < 0.8)
        p[t : t + length] = counts[: max(0, min(length, hours - t))] * 0.254
        t += length
    for _ in range(holes):
        at, length = int(rng.integers(0, hours)), int(rng.integers(1, 8))
        p[max(at, 1) : at + length] = np.nan
    return [round(float(v), 6) if np.isfinite(v) else math.nan for v in p]
