"""Site-level evidence fusion: findings from different detectors and modalities at one site confirm or raise
an incident, and a device in fault makes its own findings suspect.

Fusion runs on findings, after the detectors and before the incident tracker, in data time. A rule
fires when every one of its conditions has a matching finding at the same site within ``within_s``;
it then adds a derived finding (detector ``fusion:<rule id>``) for the rule's hazard, one or more levels
above the strongest contributor, whose evidence lists every finding that contributed.

>>> from engine.core.levels import Level
>>> rule = FusionRule(id="smoke+heat", hazard="fire", within_s=120, raise_by=1, confirm=True,
...                   all_of=[FusionCondition(hazard="smoke"), FusionCondition(hazard="fire", detector="thermal")])
>>> fusion = SiteFusion([rule])
>>> smoke = Finding("smoke-onnx", "smoke", "F1", "cam-1", 1000.0, Level.YELLOW, 0.8)
>>> heat = Finding("thermal", "fire", "F1", "ir-1", 1060.0, Level.YELLOW, 0.9)
>>> [f.detector for f in fusion.apply([smoke, heat])]
['smoke-onnx', 'thermal', 'fusion:smoke+heat']
>>> fusion.apply([])
[]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from engine.core.findings import Finding
from engine.core.levels import Level, LevelName

FAULT_HAZARD = "device_fault"


class FusionCondition(BaseModel):
    """One piece of evidence a rule needs: a finding of this hazard (and detector) at or above a level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hazard: str = Field(description="Hazard of the finding, e.g. smoke, fire, rainstorm, landslide.")
    detector: str | None = Field(None, description="Only findings of this detector id (any when unset).")
    min_level: LevelName = Field("blue", description="Lowest level of finding that counts.")

    def matches(self, f: Finding) -> bool:
        return (
            f.hazard == self.hazard
            and (self.detector is None or f.detector == self.detector)
            and f.level >= Level.from_name(self.min_level)
        )


class FusionRule(BaseModel):
    """Evidence from several detectors at one site within a time window raises or confirms an incident."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Rule name; derived findings carry detector `fusion:<id>`.")
    hazard: str = Field(description="Hazard of the incident the rule raises or confirms.")
    all_of: list[FusionCondition] = Field(min_length=2, description="Evidence that must all be present.")
    within_s: float = Field(120.0, gt=0, description="All evidence within this many seconds (data time).")
    raise_by: int = Field(1, ge=0, le=3, description="Levels above the strongest contributing finding (red caps).")
    confirm: bool = Field(True, description="Mark the incident `confirmed` (its confidence).")


class SiteFusion:
    """Applies fusion rules to findings in arrival order; remembers recent evidence per site.

    Memory holds, per site and rule condition, the latest matching finding, and per device the time of its
    latest ``device_fault`` finding; both are bounded by the number of sites, rules and devices.
    """

    def __init__(self, rules: list[FusionRule], fault_window_s: float = 3600.0) -> None:
        self.rules = rules
        self.fault_window_s = fault_window_s
        self._latest: dict[tuple[str, int, int], Finding] = {}  # (site, rule, condition) → finding
        self._fault_at: dict[tuple[str, str], float] = {}  # (site, device) → last device_fault time

    def apply(self, findings: Iterable[Finding]) -> list[Finding]:
        out: list[Finding] = []
        for f in findings:
            if f.hazard == FAULT_HAZARD:
                self._fault_at[(f.site, f.device)] = f.ts
                out.append(f)
                continue
            fault_at = self._fault_at.get((f.site, f.device))
            suspect = fault_at is not None and f.ts - fault_at <= self.fault_window_s
            seen = dataclasses.replace(f, evidence={**f.evidence, "suspect_device": True}) if suspect else f
            out.append(seen)
            out.extend(self._fire(seen))
        return out

    def _fire(self, f: Finding) -> list[Finding]:
        derived: list[Finding] = []
        for r, rule in enumerate(self.rules):
            hit = False
            for c, cond in enumerate(rule.all_of):
                if cond.matches(f):
                    self._latest[(f.site, r, c)] = f
                    hit = True
            if not hit:
                continue
            evidence = [self._latest.get((f.site, r, c)) for c in range(len(rule.all_of))]
            if any(e is None or f.ts - e.ts > rule.within_s for e in evidence):
                continue
            parts = [e for e in evidence if e is not None]
            if all(e.evidence.get("suspect_device") for e in parts):
                continue  # evidence only from devices in fault confirms nothing
            # Raise the rule's own hazard where it has evidence (rain raises the landslide level, not its own).
            top = max(e.level for e in ([e for e in parts if e.hazard == rule.hazard] or parts))
            level = Level(min(int(Level.RED), int(top) + rule.raise_by))
            derived.append(
                Finding(
                    detector=f"fusion:{rule.id}",
                    hazard=rule.hazard,
                    site=f.site,
                    device=f.device,
                    ts=f.ts,
                    level=level,
                    score=max(e.score for e in parts),
                    evidence={
                        "rule": rule.id,
                        "confirmed": rule.confirm,
                        "contributors": [
                            {
                                "detector": e.detector,
                                "hazard": e.hazard,
                                "device": e.device,
                                "ts": e.ts,
                                "level": e.level.label,
                            }
                            for e in parts
                        ],
                    },
                    row=f.row,
                )
            )
        return derived
