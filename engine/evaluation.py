"""Scoring a run against a scenario's ground truth: lead times, forecast errors, false alarms, faults found.

Used by ``gridwatch replay --truth`` and by tuning: the truth file is what ``gridwatch simulate --out``
writes beside the readings (``<out>.truth.csv``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.findings import Finding
from engine.core.levels import LEVEL_NAMES, Level

TRUTH_FIELDS = ["site", "hazard", "device", "kind", "start", "end", "level"]
FAULT_HAZARD = "device_fault"


def write_truth(path: Path, events: Iterable[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=TRUTH_FIELDS, restval="")
        w.writeheader()
        w.writerows(events)


def read_truth(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as fh:
        out = []
        for row in csv.DictReader(fh):
            row["start"], row["end"] = float(row["start"]), float(row["end"])
            out.append(row)
        return out


def level_times(events: list[dict[str, Any]], site: str, hazard: str) -> dict[str, float]:
    """Data time at which the site's incidents of this hazard first reached each level."""
    times: dict[str, float] = {}
    for e in events:
        if e["site"] != site or e["hazard"] != hazard or e["state"] == "resolved":
            continue
        for name in LEVEL_NAMES[: LEVEL_NAMES.index(e["level"]) + 1]:
            times.setdefault(name, float(e["updated_at"]))
    return times


def max_level(events: list[dict[str, Any]], site: str, hazard: str) -> str | None:
    levels = [Level.from_name(e["level"]) for e in events if e["site"] == site and e["hazard"] == hazard]
    return max(levels).label if levels else None


def _forecasts(findings: list[Finding], site: str) -> list[Finding]:
    return [f for f in findings if f.site == site and "predicted_failure_ts" in f.evidence]


def score(
    truth: list[dict[str, Any]],
    events: list[dict[str, Any]],
    findings: list[Finding],
    hazard_of_slopes: str = "landslide",
) -> dict[str, Any]:
    """What the run caught, how early, and what it raised that the truth does not hold."""
    report: dict[str, Any] = {"landslides": [], "false_alarms": [], "faults": [], "unexpected_faults": 0}
    slides = [t for t in truth if t["hazard"] == hazard_of_slopes]
    for t in slides:
        times = level_times(events, t["site"], hazard_of_slopes)
        failure = t["end"]
        row: dict[str, Any] = {"site": t["site"], "failure_ts": failure}
        row["max_level"] = max_level(events, t["site"], hazard_of_slopes)
        for name in LEVEL_NAMES:
            if name in times:
                row[f"{name}_lead_h"] = round((failure - times[name]) / 3600.0, 2)
        casts = _forecasts(findings, t["site"])
        if casts:
            at_red = [f for f in casts if "red" in times and f.ts <= times["red"]] or casts[:1]
            row["forecasts"] = len(casts)
            row["first_forecast_lead_h"] = round((failure - casts[0].ts) / 3600.0, 2)
            row["forecast_error_at_red_h"] = round((at_red[-1].evidence["predicted_failure_ts"] - failure) / 3600.0, 2)
            row["forecast_error_last_h"] = round((casts[-1].evidence["predicted_failure_ts"] - failure) / 3600.0, 2)
            low, high = casts[-1].evidence["failure_ci95_ts"]
            row["last_ci95_covers_failure"] = bool(low <= failure <= high)
        report["landslides"].append(row)
    slide_sites = {t["site"] for t in slides}
    for site in sorted({e["site"] for e in events if e["hazard"] == hazard_of_slopes} - slide_sites):
        report["false_alarms"].append({"site": site, "max_level": max_level(events, site, hazard_of_slopes)})
    report["max_false_alarm_level"] = max(
        (Level.from_name(a["max_level"]) for a in report["false_alarms"]), default=Level.NONE
    ).label if report["false_alarms"] else "none"  # fmt: skip
    faults = [f for f in findings if f.hazard == FAULT_HAZARD]
    matched: set[int] = set()
    for t in truth:
        if t["hazard"] != FAULT_HAZARD:
            continue
        # Every finding on the faulty device around the fault is explained by it (a clock that jumps back
        # also delivers out-of-order readings); the fault counts as found when its own kind is among them.
        near = [
            i
            for i, f in enumerate(faults)
            if f.site == t["site"] and f.device == t["device"] and t["start"] - 3600.0 <= f.ts <= t["end"] + 4 * 3600.0
        ]
        matched.update(near)
        hits = [i for i in near if faults[i].evidence.get("fault") == t["kind"]]
        row = {"site": t["site"], "device": t["device"], "kind": t["kind"], "found": bool(hits)}
        if hits:
            row["delay_min"] = round((faults[hits[0]].ts - t["start"]) / 60.0, 1)
        report["faults"].append(row)
    report["unexpected_faults"] = len(faults) - len(matched)
    report["unexpected_fault_list"] = [
        {"site": f.site, "device": f.device, "fault": f.evidence.get("fault"), "ts": f.ts}
        for i, f in enumerate(faults)
        if i not in matched
    ][:20]
    return report


def alarm_episodes(findings: list[Finding], min_level: Level, gap_s: float) -> list[dict[str, Any]]:
    """Findings at or above a level, merged per site into episodes (a gap of ``gap_s`` ends one)."""
    by_site: dict[str, list[float]] = {}
    for f in findings:
        if f.level >= min_level:
            by_site.setdefault(f.site, []).append(f.ts)
    episodes = []
    for site, times in by_site.items():
        times.sort()
        start = last = times[0]
        for t in times[1:]:
            if t - last > gap_s:
                episodes.append({"site": site, "start": start, "end": last})
                start = t
            last = t
        episodes.append({"site": site, "start": start, "end": last})
    return episodes


def score_levels(
    truth: list[dict[str, Any]],
    findings: list[Finding],
    hazard: str,
    site_months: float,
    gap_s: float = 6 * 3600.0,
    margin_s: float = 6 * 3600.0,
) -> dict[str, dict[str, float]]:
    """Event-level skill of findings against the truth events of one hazard, per warning level.

    An alarm is an episode of findings at or above the level at one site. It is a true alarm when it
    overlaps a truth event at that site (widened by ``margin_s`` either side), else a false alarm. A
    truth event is hit when a true alarm overlaps it; its lead time is the event's end (the failure, for
    a landslide) minus the start of the first alarm on it. Precision = true alarms / alarms; recall = hit
    events / events; false alarms are also given per site and month of data.
    """
    events = [t for t in truth if t["hazard"] == hazard]
    out: dict[str, dict[str, float]] = {}
    for name in LEVEL_NAMES:
        alarms = alarm_episodes(findings, Level.from_name(name), gap_s)
        true_alarms = 0
        leads: list[float] = []
        hit = [False] * len(events)
        for a in alarms:
            overlapping = [
                i
                for i, t in enumerate(events)
                if t["site"] == a["site"] and a["start"] <= t["end"] + margin_s and a["end"] >= t["start"] - margin_s
            ]
            true_alarms += bool(overlapping)
            for i in overlapping:
                if not hit[i]:
                    hit[i] = True
                    leads.append((events[i]["end"] - a["start"]) / 3600.0)
        false_alarms = len(alarms) - true_alarms
        precision = true_alarms / len(alarms) if alarms else 1.0
        recall = sum(hit) / len(events) if events else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        leads.sort()
        out[name] = {
            "alarms": len(alarms),
            "hits": sum(hit),
            "misses": len(events) - sum(hit),
            "false_alarms": false_alarms,
            "false_alarms_per_site_month": false_alarms / max(site_months, 1e-9),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "lead_h_median": float(np.median(leads)) if leads else float("nan"),
            "lead_h_p10": float(np.percentile(leads, 10)) if leads else float("nan"),
        }
    return out
