"""The current storm of each rain gauge: its start, its last rain, its total, and whether data is missing.

Definition (the USGS program Thresh, which tracks the Seattle intensity-duration threshold; Godt, Baum &
Chleborad 2006): a storm starts with a rainy report that follows at least ``gap_h`` hours of dry reports,
and it starts at the beginning of that report's interval (the time of the report before it). Rain that
resumes after a shorter dry spell continues the storm. At a report at ``t`` within ``gap_h`` hours of the
storm's last rain::

    duration  D = last_rain - start                 (hours, from the storm's start to its last rainy report)
    intensity I = storm_total / (t - start)         (mm/h, so it falls while the rain pauses)

and after ``gap_h`` dry hours the storm has ended and there is no current storm. The start of a gauge's
record counts as the start of a storm (one reporting interval before its first report).

Missing data: a report more than ``max_gap_s`` after the previous one leaves the time between missing, and
its rain counts in its own reporting interval (``first_interval_s`` before it). Under ``gap_policy:
lower_bound`` the missing time counts as dry (it may end a storm, as if the gauge had reported zeros) and a
storm it falls in is marked incomplete; under ``skip`` it cannot end a storm (its rain is unknown), the
storm is incomplete and not evaluated, and only dry reports after the gap count towards ending it, as
Thresh treats missing values.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.base import DeviceState, StateArray
from detectors.geohazard.rain_window import GapPolicy

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


class StormTracker:
    """Per-gauge storm state; ``add`` takes one report per gauge and returns the storm's figures."""

    def __init__(self, gap_h: float, max_gap_s: float, first_interval_s: float, gap_policy: GapPolicy) -> None:
        self.gap_s = gap_h * 3600.0
        self.max_gap_s = max_gap_s
        self.first_interval_s = first_interval_s
        self.skip_gaps = gap_policy == "skip"

    def state_spec(self) -> dict[str, StateArray]:
        return {
            "storm_last_ts": StateArray(np.float64, np.nan),  # the gauge's latest report
            "storm_dry_from": StateArray(np.float64, np.nan),  # end of its last rain (or where dry counting restarts)
            "storm_start": StateArray(np.float64, np.nan),
            "storm_end": StateArray(np.float64, np.nan),  # last rainy report of the current storm
            "storm_total": StateArray(np.float64, 0.0),
            "storm_missing_s": StateArray(np.float64, 0.0),
        }

    def add(self, st: DeviceState, dev: I64, ts: F64, mm: F64) -> dict[str, F64 | B]:
        """Take one report per gauge (``dev`` unique; a late report only adds its rain). Returns, per
        report: ``current`` (a storm is current), ``duration_h``, ``intensity_mm_h``, ``total_mm``,
        ``missing_h`` (hours of missing data inside the storm)."""
        last = st["storm_last_ts"][dev]
        dry_from = st["storm_dry_from"][dev]
        start, end = st["storm_start"][dev], st["storm_end"][dev]
        total, missing = st["storm_total"][dev], st["storm_missing_s"][dev]
        new = np.isnan(last)
        late = ~new & (ts <= last)
        gap_s = np.where(new | late, 0.0, ts - last)
        hole = gap_s > self.max_gap_s
        # Where this report's interval begins: the previous report, or (first report, or after missing data)
        # one reporting interval before it: the report's rain fell in its own interval.
        prev = np.where(new | hole, ts - self.first_interval_s, last)
        dry_from = np.where(new, prev, dry_from)
        start = np.where(new, prev, start)
        if self.skip_gaps:  # missing time is not dry: counting dry time restarts after the hole
            dry_from = np.where(hole, np.maximum(dry_from, prev), dry_from)
        missing = missing + np.where(hole, gap_s - self.first_interval_s, 0.0)
        rainy = mm > 0
        # A storm starts with rain after gap_h of dry time before this report's interval.
        begins = rainy & ~new & ~late & (prev - dry_from >= self.gap_s)
        start = np.where(begins, prev, start)
        total = np.where(begins, 0.0, total)
        missing = np.where(begins, 0.0, missing)
        end = np.where(begins, np.nan, end)
        total = total + mm
        end = np.where(rainy & ~late, ts, end)
        dry_from = np.where(rainy & ~late, ts, dry_from)
        now = np.where(late, last, ts)
        st["storm_last_ts"][dev] = now
        st["storm_dry_from"][dev] = dry_from
        st["storm_start"][dev], st["storm_end"][dev] = start, end
        st["storm_total"][dev], st["storm_missing_s"][dev] = total, missing
        with np.errstate(invalid="ignore", divide="ignore"):
            current = np.isfinite(end) & (now - end <= self.gap_s) & (total > 0)
            duration_h = (end - start) / 3600.0
            intensity = total / ((now - start) / 3600.0)
        return {
            "current": current,
            "duration_h": np.where(current, duration_h, np.nan),
            "intensity_mm_h": np.where(current, intensity, np.nan),
            "total_mm": total,
            "missing_h": missing / 3600.0,
        }
