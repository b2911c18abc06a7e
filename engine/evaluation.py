"""Scoring a run against a scenario's ground truth: lead times, forecast errors, false alarms, faults found.

Used by ``gridwatch replay --truth`` and by tuning: the truth file is what ``gridwatch simulate --out``
writes beside the readings (``<out>.truth.csv``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
