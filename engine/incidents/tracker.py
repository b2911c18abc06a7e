"""The incident lifecycle: one open incident per grouping key, ``pending → firing → resolved``.

Time is the data's time (the watermark: the latest reading timestamp seen, in arrival order), never the
wall clock, so a replay gives the same incidents as the live run that it recorded.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.core.findings import Finding
from engine.core.levels import Level, LevelName

logger = logging.getLogger(__name__)


class IncidentPolicy(BaseModel):
    """How findings turn into incidents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_level: LevelName = Field("blue", description="Findings below this level do not open incidents.")
    for_s: float = Field(
        0.0, ge=0, description="An incident fires only once findings have lasted this long (data time, s)."
    )
    resolve_after_s: float = Field(
        3600.0, gt=0, description="Resolve an incident once no finding has arrived for this long (data time, s)."
    )
    group_by: list[str] = Field(
        default_factory=lambda: ["site", "hazard"],
        description="Finding fields that identify one incident: any of site, hazard, device, detector.",
    )
    max_findings: int = Field(20, ge=1, description="Findings kept on an incident (the most recent per device).")
    emit_pending: bool = Field(False, description="Also emit events for incidents still pending (not yet firing).")


@dataclass
class Incident:
    incident_id: str
    key: tuple[str, ...]
    site: str
    hazard: str
    opened_at: float
    updated_at: float
    last_finding_at: float
    level: Level
    score: float
    state: str = "pending"
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)

    def event(self, route: list[str], plan: dict[str, Any], max_findings: int) -> dict[str, Any]:
        recent = sorted(self.findings.values(), key=lambda f: (f.ts, f.detector, f.device))[-max_findings:]
        return {
            "incident_id": self.incident_id,
            "site": self.site,
            "hazard": self.hazard,
            "level": self.level.label,
            "state": self.state,
            "opened_at": self.opened_at,
            "updated_at": self.updated_at,
            "score": round(self.score, 6),
            "findings": [f.to_event() for f in recent],
            "route": route,
            "plan": plan,
        }


def incident_id(key: tuple[str, ...], opened_at: float) -> str:
    """Deterministic id: the same scenario gives the same ids under every runner."""
    digest = hashlib.sha1("|".join((*key, f"{opened_at:.3f}")).encode(), usedforsecurity=False)
    return digest.hexdigest()[:16]


class IncidentTracker:
    """Groups findings into incidents and emits incident events on every change that matters.

    Events are emitted when an incident fires, when its level rises, and when it resolves; a level never
    falls while the incident is open.

    >>> tr = IncidentTracker(IncidentPolicy(resolve_after_s=600))
    >>> f = Finding("threshold", "flood", "S1", "wl-1", 1000.0, Level.YELLOW, 1.2)
    >>> [e["state"] for e in tr.apply([f], watermark=1000.0)]
    ['firing']
    >>> [(e["state"], e["updated_at"]) for e in tr.advance(1700.0)]
    [('resolved', 1600.0)]
    """

    def __init__(
        self,
        policy: IncidentPolicy,
        route_of: Callable[[str], list[str]] | None = None,
        plan_of: Callable[[str, Level], dict[str, Any]] | None = None,
    ) -> None:
        self.open: dict[tuple[str, ...], Incident] = {}
        # Resolve deadlines (last finding + quiet period) in a lazy min-heap: advancing the watermark costs
        # O(log n) per incident due, not a scan of every open incident. Stale entries are skipped.
        self._due: list[tuple[float, tuple[str, ...]]] = []
        self.set_policy(policy)
        self._route_of: Callable[[str], list[str]] = route_of or (lambda site: [])
        self._plan_of: Callable[[str, Level], dict[str, Any]] = plan_of or (lambda hazard, level: {})

    def set_routes(self, route_of: Callable[[str], list[str]], plan_of: Callable[[str, Level], dict[str, Any]]) -> None:
        self._route_of, self._plan_of = route_of, plan_of

    def _key(self, f: Finding) -> tuple[str, ...]:
        return tuple(str(getattr(f, name)) for name in self.policy.group_by)

    def _event(self, inc: Incident) -> dict[str, Any]:
        return inc.event(self._route_of(inc.site), self._plan_of(inc.hazard, inc.level), self.policy.max_findings)

    def set_policy(self, policy: IncidentPolicy) -> None:
        """Another policy for the open incidents (a config reload); resolve deadlines are recomputed."""
        self.policy = policy
        self.min_level = Level.from_name(policy.min_level)
        self._rebuild_due()

    def _rebuild_due(self) -> None:
        quiet = self.policy.resolve_after_s
        self._due = [(inc.last_finding_at + quiet, key) for key, inc in self.open.items()]
        heapq.heapify(self._due)

    def _schedule(self, inc: Incident) -> None:
        heapq.heappush(self._due, (inc.last_finding_at + self.policy.resolve_after_s, inc.key))
        if len(self._due) > 4 * len(self.open) + 1024:
            self._rebuild_due()

    def advance(self, watermark: float) -> list[dict[str, Any]]:
        """Resolve every incident that has been quiet for ``resolve_after_s`` by ``watermark``."""
        events: list[dict[str, Any]] = []
        quiet = self.policy.resolve_after_s
        while self._due and self._due[0][0] <= watermark:
            deadline, key = heapq.heappop(self._due)
            inc = self.open.get(key)
            if inc is None or inc.last_finding_at + quiet != deadline:
                continue  # resolved already, or a later finding moved its deadline (a newer entry exists)
            del self.open[inc.key]
            was_firing = inc.state == "firing"
            inc.state = "resolved"
            inc.updated_at = inc.last_finding_at + quiet
            if was_firing or self.policy.emit_pending:
                events.append(self._event(inc))
        return events

    def apply(self, findings: Iterable[Finding], watermark: float | None = None) -> list[dict[str, Any]]:
        """Apply findings in order (after resolving what was due before each), then advance to watermark."""
        events: list[dict[str, Any]] = []
        for f in findings:
            events.extend(self.advance(f.ts))
            events.extend(self.observe(f))
        if watermark is not None:
            events.extend(self.advance(watermark))
        return events

    def observe(self, f: Finding) -> list[dict[str, Any]]:
        if f.level < self.min_level:
            return []
        key = self._key(f)
        inc = self.open.get(key)
        if inc is None:
            inc = Incident(
                incident_id=incident_id(key, f.ts),
                key=key,
                site=f.site,
                hazard=f.hazard,
                opened_at=f.ts,
                updated_at=f.ts,
                last_finding_at=f.ts,
                level=f.level,
                score=f.score,
            )
            self.open[key] = inc
            self._schedule(inc)
            changed = True
        else:
            changed = f.level > inc.level
            inc.level = max(inc.level, f.level)
            inc.score = max(inc.score, f.score)
            if f.ts > inc.last_finding_at:
                inc.last_finding_at = f.ts
                self._schedule(inc)
        inc.findings[(f.detector, f.device)] = f
        if inc.state == "pending" and f.ts - inc.opened_at >= self.policy.for_s:
            inc.state = "firing"
            changed = True
        if changed:
            inc.updated_at = f.ts
            if inc.state == "firing" or self.policy.emit_pending:
                return [self._event(inc)]
        return []
