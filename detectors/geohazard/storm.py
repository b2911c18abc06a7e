"""The current storm of each rain gauge: its start, its last rain, its total, and whether data is missing.

Definition (the USGS program Thresh, which tracks the Seattle intensity-duration threshold; Godt, Baum &
Chleborad 2006): a storm starts with a rainy report that follows at least ``gap_h`` hours of dry reports,
and it starts at the beginning of that report's interval (the time of the report before it). Rain that
resumes after a shorter dry spell continues the storm. At a report at ``t`` inside a storm::

    duration  D = t - start                         (hours since the storm began; a pause in the rain counts)
    intensity I = storm_total / (t - start)         (mm/h, so it falls while the rain pauses)

and once ``gap_h`` hours after its last rain have been dry the storm has ended: those hours have no storm
(Thresh's post-storm correction gives them zero duration and intensity). Whether a dry report after rain
is a pause inside the storm or one of its last hours is known only when the rain resumes within ``gap_h``
(a pause: judged then, with the values above) or the storm ends (no storm): such a report is *pending*
until then, kept in a small ring per gauge (``pause_slots``), and comes back in ``resolved`` at the report
that decides it. The start of a gauge's record counts as the start of a storm (one reporting interval
before its first report).

Missing data: a report more than ``max_gap_s`` after the previous one leaves the time between missing, and
its rain counts in its own reporting interval (``first_interval_s`` before it). Under ``gap_policy:
lower_bound`` the missing time counts as dry (it may end a storm, as if the gauge had reported zeros) and a
storm it falls in is marked incomplete; under ``skip`` it cannot end a storm (its rain is unknown), the
storm is incomplete and not evaluated, and only dry reports after the gap count towards ending it, as
Thresh treats missing values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.base import DeviceState, StateArray
from detectors.geohazard.rain_window import GapPolicy

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
PAUSE_REPORT_S = 600.0  # a pause is held exactly for gauges reporting this often or less (10-minute gauges)


class StormTracker:
    """Per-gauge storm state; ``add`` takes one report per gauge and returns the storm's figures."""

    def __init__(self, gap_h: float, max_gap_s: float, first_interval_s: float, gap_policy: GapPolicy) -> None:
        self.gap_s = gap_h * 3600.0
        self.max_gap_s = max_gap_s
        self.first_interval_s = first_interval_s
        self.skip_gaps = gap_policy == "skip"
        # Dry reports a pause holds: fewer than gap_h's worth of reports every PAUSE_REPORT_S (or the
        # reporting interval, if longer). A gauge reporting more often keeps its first ones: a pause's ratio
        # only falls (the same rain over a longer time), so the hours it raises are its first.
        every = min(first_interval_s, PAUSE_REPORT_S)
        self.pause_slots = max(2, math.ceil(round(self.gap_s / every, 9)) + 1)

    def state_spec(self) -> dict[str, StateArray]:
        k = self.pause_slots
        return {
            "storm_last_ts": StateArray(np.float64, np.nan),  # the gauge's latest report
            "storm_dry_from": StateArray(np.float64, np.nan),  # end of its last rain (or where dry counting restarts)
            "storm_start": StateArray(np.float64, np.nan),
            "storm_end": StateArray(np.float64, np.nan),  # last rainy report of the current storm
            "storm_total": StateArray(np.float64, 0.0),
            "storm_missing_s": StateArray(np.float64, 0.0),
            # The pending dry reports of a pause, in order (the first pause_slots of them): time, missing
            # data then, and the caller's value then (the AWI gate's water index).
            "storm_pause_n": StateArray(np.int64, 0),
            "storm_pause_ts": StateArray(np.float64, np.nan, (k,)),
            "storm_pause_missing_s": StateArray(np.float64, 0.0, (k,)),
            "storm_pause_extra": StateArray(np.float64, np.nan, (k,)),
        }

    def add(self, st: DeviceState, dev: I64, ts: F64, mm: F64, extra: F64 | None = None) -> dict[str, Any]:
        """Take one report per gauge (``dev`` unique; a late report only adds its rain). Returns, per
        report: ``current`` (a storm is current: a rainy report of it, or a pending dry one), ``pending``
        (a dry report after rain, judged when the rain resumes or not at all), ``duration_h``,
        ``intensity_mm_h``, ``total_mm``, ``missing_h`` (hours of missing data inside the storm); and
        ``resolved``: the pending reports this report decides to be a pause of the storm: ``rows`` (the
        reports that decide them) and a row each of their ``ts`` (oldest first, NaN where none),
        ``duration_h``, ``intensity_mm_h``, ``missing_h`` and ``extra`` (what the caller passed with them);
        ``dropped``: the reports whose pending reports turned out to be the last hours of a storm (no storm)."""
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
        rainy = (mm > 0) & ~late
        had_rain = np.isfinite(end) & (total > 0)  # a storm with rain before this report
        # A storm starts with rain after gap_h of dry time before this report's interval.
        begins = rainy & ~new & (prev - dry_from >= self.gap_s)
        ended = ~rainy & ~late & had_rain & (ts - dry_from >= self.gap_s)
        resumes = rainy & ~begins & had_rain
        paused = st["storm_pause_n"][dev]
        waiting = paused > 0
        resolved = self._take_pause(st, dev, np.flatnonzero(resumes & waiting), paused, start, total)
        # No report of the pause is pending any more. Under `skip` a storm that has ended can still go on
        # across missing data (no new storm can begin there), as in Thresh, whose next correction of the
        # storm then rewrites its dry hours: they are held until a storm begins or the rain resumes.
        settled = begins | resumes | (ended & (not self.skip_gaps))
        dropped = (begins | (ended & (not self.skip_gaps))) & waiting
        start = np.where(begins, prev, start)
        total = np.where(begins, 0.0, total)
        missing = np.where(begins, 0.0, missing)
        end = np.where(begins, np.nan, end)
        total = total + mm
        end = np.where(rainy, ts, end)
        dry_from = np.where(rainy, ts, dry_from)
        now = np.where(late, last, ts)
        pending = ~rainy & ~late & had_rain & ~ended
        held = pending | (~rainy & ~late & had_rain & self.skip_gaps)
        if held.any():
            r = np.flatnonzero(held)
            self._hold(st, dev[r], paused[r], ts[r], missing[r], None if extra is None else extra[r])
        if held.any() or (settled & waiting).any():
            st["storm_pause_n"][dev] = np.where(settled, 0, paused + held)
        st["storm_last_ts"][dev] = now
        st["storm_dry_from"][dev] = dry_from
        st["storm_start"][dev], st["storm_end"][dev] = start, end
        st["storm_total"][dev], st["storm_missing_s"][dev] = total, missing
        with np.errstate(invalid="ignore", divide="ignore"):
            current = (rainy & np.isfinite(start)) | pending | (late & np.isfinite(end) & (end == last))
            duration_h = (now - start) / 3600.0
            intensity = total / duration_h
        return {
            "current": current,
            "pending": pending,
            "duration_h": np.where(current, duration_h, np.nan),
            "intensity_mm_h": np.where(current, intensity, np.nan),
            "total_mm": total,
            "missing_h": missing / 3600.0,
            "resolved": resolved,
            "dropped": dropped,
        }

    def _hold(self, st: DeviceState, dev: I64, n: I64, ts: F64, missing_s: F64, extra: F64 | None) -> None:
        """Keep dry reports of a pause (``n`` held so far) until the storm resumes or ends (the first
        ``pause_slots``; the caller counts them)."""
        k = self.pause_slots
        room = n < k
        at = (dev * k + n)[room]
        st["storm_pause_ts"].put(at, ts[room])
        st["storm_pause_missing_s"].put(at, missing_s[room])
        st["storm_pause_extra"].put(at, np.nan if extra is None else extra[room])

    def _take_pause(self, st: DeviceState, dev: I64, rows: I64, n: I64, start: F64, total: F64) -> dict[str, Any]:
        """The pending reports of ``rows`` (gauges whose rain resumes after ``n`` held reports), oldest first,
        valued as the pause of their storm (the storm's start and its rain so far); NaN times where a gauge
        held fewer than the longest pause among them."""
        k = self.pause_slots
        count = np.minimum(n[rows], k)
        j = np.arange(int(count.max(initial=0)))[None, :]
        slot = dev[rows][:, None] * k + j
        t = np.where(j < count[:, None], st["storm_pause_ts"].take(slot), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            duration_h = (t - start[rows][:, None]) / 3600.0
            intensity = total[rows][:, None] / duration_h
        return {
            "rows": rows,
            "ts": t,
            "duration_h": duration_h,
            "intensity_mm_h": intensity,
            "missing_h": st["storm_pause_missing_s"].take(slot) / 3600.0,
            "extra": st["storm_pause_extra"].take(slot),
        }
