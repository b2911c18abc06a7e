"""Brute-force implementations of the published rainfall methods, hour by hour, for checking the detectors.

Each function takes an hourly record ``P`` (mm per hour, ``nan`` for an hour with no report) whose hour
``i`` ends at ``(first_hour + i + 1) * 3600`` and walks it hour by hour in plain Python, written from the
method's definition (and, for the USGS methods, from how the USGS program Thresh counts them: positions
in the hourly record, a missing value is not zero). They share no code with the detectors: a test that
compares the two can fail.

``policy`` is the detectors' ``gap_policy``: ``lower_bound`` reads a missing hour as zero rain; ``skip``
evaluates nothing whose window or storm holds a missing hour (or reaches before the record).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from engine.core.batch import BatchBuilder
from engine.core.devices import DeviceIndex

MM_PER_INCH = 25.4
FIRST_HOUR = 482_000  # 2024-12-26: records cross a year and a month boundary (ET changes)


def _filled(p: list[float], policy: str) -> list[float]:
    return [0.0 if (math.isnan(v) and policy == "lower_bound") else v for v in p]


def window_sums(p: list[float], hours: int, policy: str) -> list[float | None]:
    """Rain of the ``hours`` reports ending at each hour, ``(t - hours, t]``; None where not evaluated."""
    out: list[float | None] = []
    for i in range(len(p)):
        lo = i - hours + 1
        values = [p[j] if j >= 0 else math.nan for j in range(lo, i + 1)]
        if policy == "skip" and any(math.isnan(v) for v in values):
            out.append(None)
        else:
            out.append(math.fsum(0.0 if math.isnan(v) else v for v in values))
    return out


def usgs_cumulative(
    p: list[float],
    a_mm: float = 3.5 * MM_PER_INCH,
    b: float = 0.67,
    recent: int = 72,
    antecedent: int = 360,
    policy: str = "skip",
) -> list[bool]:
    """Hours in which the recent/antecedent threshold is exceeded: ``P_recent - max(a - b P_ante, 0) > 0``."""
    out = []
    for i in range(len(p)):
        rec = [p[j] if j >= 0 else math.nan for j in range(i - recent + 1, i + 1)]
        ante = [p[j] if j >= 0 else math.nan for j in range(i - recent - antecedent + 1, i - recent + 1)]
        if policy == "skip" and any(math.isnan(v) for v in rec + ante):
            out.append(False)
            continue
        p_rec = math.fsum(0.0 if math.isnan(v) else v for v in rec)
        p_ante = math.fsum(0.0 if math.isnan(v) else v for v in ante)
        threshold = a_mm - b * p_ante if p_ante < a_mm / b else 0.0
        out.append(round(p_rec - threshold, 9) > 0)
    return out


def usgs_storm_id(
    p: list[float], alpha_mm: float, beta: float, gap: int = 3, policy: str = "skip"
) -> list[tuple[bool, float, float] | None]:
    """Per hour: (exceeded, duration h, intensity mm/h) of the storm as Thresh reports it, or None.

    Reading ``i`` is stamped at the end of its hour, time ``i + 1`` (hours). A storm begins with rain
    after ``gap`` readings of exactly zero, at the time of the reading before. While it lasts, an hour has
    duration = time since the storm began (a dry hour inside the storm counts) and intensity = the storm's
    rain so far over that time. A storm has ended once ``gap`` readings after its last rain are dry: those
    hours report no storm. Thresh first records each hour as it comes (duration to the last rain so far,
    the dry hours after it included) and rewrites the storm's hours when it ends (``track_storm``'s
    post-storm correction); the values here are those rewritten ones. The hours after the last rain of a
    storm that has not ended when the record does are undecided (None): Thresh prints its first values
    there, which its next run rewrites.
    """
    q = _filled(p, policy)
    out: list[tuple[bool, float, float] | None] = [None] * len(q)
    t_begin, began, last_rain = 0.0, 0, -1  # record start: a storm began one reading before the first

    def judge(j: int) -> tuple[bool, float, float] | None:
        values = q[began : j + 1]
        if any(math.isnan(x) for x in values):
            return None
        duration = float(j + 1) - t_begin
        intensity = math.fsum(values) / duration
        ratio = intensity / (alpha_mm * duration**-beta)
        return (round(ratio - 1.0, 9) > 0, duration, intensity)

    for i, v in enumerate(q):
        if i >= gap and v > 0 and all(q[i - j] == 0 for j in range(1, gap + 1)):
            began, t_begin = i - 1, max(t_begin, float(i))
        if v > 0 and float(i + 1) >= t_begin:
            for j in range(last_rain + 1, i + 1):  # the rain resumed (or began): its pause is part of the storm
                if j >= began and float(j + 1) > t_begin:
                    out[j] = judge(j)
            last_rain = i
    return out


def usgs_awi(
    p: list[float],
    first_hour: int,
    field_capacity_mm: float = 180.0,
    k: float = 0.01,
    et_mm_per_h: tuple[float, ...] = (),
    initial_mm: float | None = None,
) -> list[float]:
    """The antecedent water index at the end of each hour (missing hours are dry)."""
    d = math.exp(-k)
    awi = -field_capacity_mm if initial_mm is None else initial_mm
    out = []
    for i, v in enumerate(p):
        month = datetime.fromtimestamp((first_hour + i) * 3600, UTC).month
        rain = 0.0 if math.isnan(v) else v
        et = et_mm_per_h[month - 1]
        awi = awi + rain - et if awi < 0 else awi * d + (rain - et) * (1 - d) / k
        awi = max(awi, -field_capacity_mm)
        out.append(awi)
    return out


def fixed_window_id(
    p: list[float], durations: list[int], alpha_mm: float, beta: float, policy: str
) -> list[float | None]:
    """Largest ratio of mean intensity over each duration (hours ending now) to alpha·D^-beta."""
    sums = {d: window_sums(p, d, policy) for d in durations}
    out: list[float | None] = []
    for i in range(len(p)):
        ratios = [s / d / (alpha_mm * d**-beta) for d in durations if (s := sums[d][i]) is not None]
        out.append(max(ratios) if ratios else None)
    return out


# --- driving a detector over hourly records ------------------------------------------------------------


def report_ts(hour: int) -> float:
    """When hour ``hour`` of a record is reported: at hh:59."""
    return (FIRST_HOUR + hour + 1) * 3600.0 - 60.0


def hour_of(ts: float) -> int:
    """The record hour a report (or a finding at it) stands for."""
    return round((ts + 60.0) / 3600.0) - FIRST_HOUR - 1


def findings_on(det: Any, p: list[float]) -> list[Any]:
    """A fresh detector state's findings on one gauge's record (missing hours not reported), in one batch."""
    b = BatchBuilder(DeviceIndex())
    for i, v in enumerate(p):
        if not math.isnan(v):
            b.add("S1", "g", report_ts(i), "rain_mm", v)
    return list(det.process(b.take(), det.new_state()))


def raised_hours(det: Any, records: dict[str, list[float]], batch_size: int) -> dict[str, list[int]]:
    """Feed every gauge's record (reports at hh:59, missing hours not reported) interleaved in time;
    returns the hours (record positions) of each gauge's findings."""
    rows = sorted(
        (report_ts(i), device, v) for device, p in records.items() for i, v in enumerate(p) if not math.isnan(v)
    )
    devices = DeviceIndex()
    state = det.new_state()
    out: dict[str, list[int]] = {d: [] for d in records}
    for lo in range(0, len(rows), batch_size):
        b = BatchBuilder(devices)
        for ts, device, v in rows[lo : lo + batch_size]:
            b.add("S1", device, ts, "rain_mm", v)
        for f in det.process(b.take(), state):
            out[f.device].append(hour_of(f.ts))
    return out


def exceeded(flags, p: list[float]) -> list[int]:
    """Hours the method exceeds that have a report (a detector speaks only when a report arrives)."""
    return [i for i, x in enumerate(flags) if x and not math.isnan(p[i])]
