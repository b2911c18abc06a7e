"""The incident lifecycle: one open incident per grouping key, ``pending → firing → acknowledged → resolved``.

Time is the data's time (the watermark: the latest reading timestamp seen, in arrival order), never the
wall clock, so a replay gives the same incidents as the live run that it recorded. Operator actions
(acknowledge, assign, resolve) are stamped with the engine clock by the caller.

Allowed transitions (``TRANSITIONS``): an incident opens ``pending`` (or straight ``firing`` when
``for_s`` is 0); ``firing → acknowledged`` by an operator; ``acknowledged → firing`` when its level rises
(a higher level needs a fresh acknowledgement); any open state → ``resolved`` after the quiet period or
by an operator (only by an operator once a person reported it: a grid report); ``resolved → firing``
when a finding arrives within ``reopen_within_s`` (the same incident re-opens instead of a new one).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.core.findings import Finding
from engine.core.levels import Level, LevelName

logger = logging.getLogger(__name__)

State = Literal["pending", "firing", "acknowledged", "resolved"]
TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("pending", "firing"),
        ("pending", "resolved"),
        ("firing", "acknowledged"),
        ("firing", "resolved"),
        ("acknowledged", "firing"),
        ("acknowledged", "resolved"),
        ("resolved", "firing"),
    }
)
OPEN_STATES = ("pending", "firing", "acknowledged")
GRID_REPORT = "grid_report"  # the detector name of a person's report (engine/incidents/reports.py)


def move(inc: Incident, state: State) -> None:
    """The one way an incident's state changes: only along ``TRANSITIONS`` (anything else is a bug, raised).

    >>> inc = Incident("i1", ("S1", "landslide"), "S1", "landslide", 0.0, 0.0, 0.0, Level.RED, 1.0)
    >>> move(inc, "firing"); move(inc, "acknowledged"); inc.state
    'acknowledged'
    >>> move(inc, "pending")
    Traceback (most recent call last):
    ...
    RuntimeError: incident i1: acknowledged -> pending is not an allowed transition
    """
    if (inc.state, state) not in TRANSITIONS:
        raise RuntimeError(f"incident {inc.incident_id}: {inc.state} -> {state} is not an allowed transition")
    inc.state = state


GroupField = Literal["site", "hazard", "device", "detector"]


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
    clear_after_s: float = Field(
        3600.0,
        gt=0,
        description="The level falls only once no finding at the current level has arrived for this long "
        "(hysteresis); it falls to the highest level still seen within that period.",
    )
    reopen_within_s: float = Field(
        0.0,
        ge=0,
        description="A finding this soon after an incident resolved re-opens that incident instead of a new one "
        "(0: never).",
    )
    group_by: list[GroupField] = Field(
        default_factory=lambda: list[GroupField](["site", "hazard"]),
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
    level_seen: dict[Level, float] = field(default_factory=dict)  # last finding time at each level
    seq: int = 0  # events emitted so far: receivers order by it and drop what they have seen
    acknowledged_by: str | None = None
    assigned_to: str | None = None
    resolved_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def reported(self) -> bool:
        """A person reported it (a grid report): it stays open until a person resolves it."""
        return any(d == GRID_REPORT for d, _device in self.findings)

    def seen_by_label(self) -> dict[str, float]:
        """``level_seen`` as JSON: the last finding time at each level, by level name."""
        return {lv.label: ts for lv, ts in self.level_seen.items()}

    @property
    def confidence(self) -> str:
        """``confirmed`` when a fusion rule confirmed it; ``low`` when every finding came from a suspect device."""
        found = list(self.findings.values())
        if any(f.evidence.get("confirmed") for f in found):
            return "confirmed"
        if found and all(f.evidence.get("suspect_device") for f in found):
            return "low"
        return "normal"

    def event(
        self, action: str, route: list[str], plan: dict[str, Any], max_findings: int, actor: str | None = None
    ) -> dict[str, Any]:
        """The incident event (docs/contracts.md: "Incident event") plus what happened (``action``) and who did it."""
        recent = sorted(self.findings.values(), key=lambda f: (f.ts, f.detector, f.device))[-max_findings:]
        self.seq += 1
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
            "action": action,
            "seq": self.seq,
            "actor": actor,
            "acknowledged_by": self.acknowledged_by,
            "assigned_to": self.assigned_to,
            "confidence": self.confidence,
        }


def incident_id(key: tuple[str, ...], opened_at: float) -> str:
    """Deterministic id: the same scenario gives the same ids under every runner."""
    digest = hashlib.sha1("|".join((*key, f"{opened_at:.3f}")).encode(), usedforsecurity=False)
    return digest.hexdigest()[:16]


class IncidentError(LookupError):
    """An operator action on an incident that is unknown or not in a state that allows it."""


class IncidentTracker:
    """Groups findings into incidents and emits incident events on every change that matters.

    Events are emitted when an incident fires, when its level rises or (after ``clear_after_s``) falls,
    when an operator acknowledges, assigns or resolves it, and when it resolves or re-opens.

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
        self.by_id: dict[str, Incident] = {}  # open incidents and those that may still re-open
        self._recent: dict[tuple[str, ...], Incident] = {}  # resolved, within the re-open window
        # Deadlines in a lazy min-heap: (time, kind, key), kind "clear" (level may fall) sorts before "resolve".
        # Advancing the watermark costs O(log n) per deadline due, not a scan; stale entries are skipped.
        self._due: list[tuple[float, str, tuple[str, ...]]] = []
        self._touched: dict[str, set[tuple[str, str]]] = {}  # incident → findings new since ``take_touched``
        self.set_policy(policy)
        self._route_of: Callable[[str], list[str]] = route_of or (lambda site: [])
        self._plan_of: Callable[[str, Level], dict[str, Any]] = plan_of or (lambda hazard, level: {})

    def set_routes(self, route_of: Callable[[str], list[str]], plan_of: Callable[[str, Level], dict[str, Any]]) -> None:
        self._route_of, self._plan_of = route_of, plan_of

    def key_of(self, f: Finding) -> tuple[str, ...]:
        return tuple(str(getattr(f, name)) for name in self.policy.group_by)

    def _event(self, inc: Incident, action: str, actor: str | None = None) -> dict[str, Any]:
        return inc.event(
            action, self._route_of(inc.site), self._plan_of(inc.hazard, inc.level), self.policy.max_findings, actor
        )

    def set_policy(self, policy: IncidentPolicy) -> None:
        """Another policy for the open incidents (a config reload); deadlines are recomputed."""
        self.policy = policy
        self.min_level = Level.from_name(policy.min_level)
        self._rebuild_due()

    def _rebuild_due(self) -> None:
        self._due = []
        for inc in self.open.values():
            self._due.append((self._resolve_at(inc), "resolve", inc.key))
            self._due.append((self._clear_at(inc), "clear", inc.key))
        heapq.heapify(self._due)

    def _resolve_at(self, inc: Incident) -> float:
        if inc.reported:  # quiet data does not close a case that someone on the ground opened
            return float("inf")
        return inc.last_finding_at + self.policy.resolve_after_s

    def _clear_at(self, inc: Incident) -> float:
        return inc.level_seen.get(inc.level, inc.last_finding_at) + self.policy.clear_after_s

    def _schedule(self, inc: Incident, kind: str) -> None:
        at = self._resolve_at(inc) if kind == "resolve" else self._clear_at(inc)
        heapq.heappush(self._due, (at, kind, inc.key))
        if len(self._due) > 8 * len(self.open) + 1024:
            self._rebuild_due()

    def get(self, incident_id: str) -> Incident | None:
        return self.by_id.get(incident_id)

    def advance(self, watermark: float) -> list[dict[str, Any]]:
        """Apply every deadline due by ``watermark``: levels that fall, incidents quiet long enough."""
        events: list[dict[str, Any]] = []
        while self._due and self._due[0][0] <= watermark:
            at, kind, key = heapq.heappop(self._due)
            inc = self.open.get(key)
            if inc is None:
                continue
            if kind == "resolve" and self._resolve_at(inc) == at:
                was_notified = inc.state != "pending"
                self._close(inc, at)
                if was_notified or self.policy.emit_pending:
                    events.append(self._event(inc, "resolved"))
            elif kind == "clear" and self._clear_at(inc) == at:
                events.extend(self._lower(inc, at))
        self._forget_before(watermark - self.policy.reopen_within_s)
        return events

    def _lower(self, inc: Incident, at: float) -> list[dict[str, Any]]:
        """No finding at the current level for ``clear_after_s``: fall to the highest level seen since."""
        since = at - self.policy.clear_after_s
        recent = [lv for lv, ts in inc.level_seen.items() if lv < inc.level and ts > since]
        if not recent:
            return []  # nothing lower either: the level stands until the incident resolves
        inc.level = max(recent)
        inc.updated_at = at
        self._schedule(inc, "clear")
        if inc.state == "pending" and not self.policy.emit_pending:
            return []
        return [self._event(inc, "lowered")]

    def _close(self, inc: Incident, at: float, by: str | None = None) -> None:
        del self.open[inc.key]
        was_notified = inc.state != "pending"
        move(inc, "resolved")
        inc.updated_at = at
        inc.resolved_by = by
        if self.policy.reopen_within_s > 0 and was_notified:  # one that never fired has nothing to re-open
            self._recent[inc.key] = inc
        else:
            self.by_id.pop(inc.incident_id, None)

    def _forget_before(self, cutoff: float) -> None:
        if not self._recent:
            return
        for key, inc in list(self._recent.items()):
            if inc.updated_at < cutoff:
                del self._recent[key]
                if inc.state == "resolved":
                    self.by_id.pop(inc.incident_id, None)

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
        key = self.key_of(f)
        inc = self.open.get(key)
        action = ""
        if inc is None:
            old = self._recent.pop(key, None)
            if old is not None and f.ts - old.updated_at <= self.policy.reopen_within_s:
                inc = old
                move(inc, "firing")
                inc.level, inc.score = f.level, f.score
                inc.acknowledged_by = inc.resolved_by = None
                inc.level_seen = {}
                inc.updated_at = inc.last_finding_at = f.ts
                action = "reopened"
            else:
                if old is not None:
                    self.by_id.pop(old.incident_id, None)
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
                action = "opened"
            self.open[key] = inc
            self.by_id[inc.incident_id] = inc
            inc.level_seen[f.level] = f.ts
            self._schedule(inc, "resolve")
            self._schedule(inc, "clear")
        else:
            if f.level > inc.level:
                action = "raised"
                inc.level = f.level
                if inc.state == "acknowledged":
                    move(inc, "firing")  # a higher level needs a fresh acknowledgement
            inc.score = max(inc.score, f.score)
            if f.ts >= inc.level_seen.get(f.level, -float("inf")):
                inc.level_seen[f.level] = f.ts
                if f.level == inc.level:
                    self._schedule(inc, "clear")
            if f.ts > inc.last_finding_at:
                inc.last_finding_at = f.ts
                self._schedule(inc, "resolve")
        inc.findings[(f.detector, f.device)] = f
        self._touched.setdefault(inc.incident_id, set()).add((f.detector, f.device))
        if inc.state == "pending" and (f.ts - inc.opened_at >= self.policy.for_s or f.detector == GRID_REPORT):
            move(inc, "firing")
            action = "reopened" if action == "reopened" else "fired"
        if not action and f.detector == GRID_REPORT and inc.state != "pending":
            # a person's report on an open incident is news to everyone who has it, even at no higher level
            return [self._event(inc, "reported", f.device)]
        if not action or (inc.state == "pending" and not self.policy.emit_pending):
            return []
        inc.updated_at = f.ts
        return [self._event(inc, action)]

    def restore(self, stored: list[dict[str, Any]]) -> int:
        """Take up open incidents a previous engine left in the store (``Store.open_incidents``), and
        recently resolved ones into the re-open window; returns how many open ones."""
        restored = 0
        for s in stored:
            if not s.get("group_key"):
                continue
            key = tuple(s["group_key"])
            findings = {
                (f["detector"], f["device"]): Finding(
                    f["detector"], s["hazard"], s["site"], f["device"], f["ts"], Level.from_name(f["level"]),
                    f["score"], f["evidence"],
                )
                for f in s["findings"]
            }  # fmt: skip
            level_seen: dict[Level, float] = {}
            for f in findings.values():
                level_seen[f.level] = max(level_seen.get(f.level, f.ts), f.ts)
            for label, ts in (s.get("level_seen") or {}).items():  # kept by the store: more than the findings
                lv = Level.from_name(label)
                level_seen[lv] = max(level_seen.get(lv, ts), ts)
            inc = Incident(
                incident_id=s["incident_id"], key=key, site=s["site"], hazard=s["hazard"], opened_at=s["opened_at"],
                updated_at=s["updated_at"], last_finding_at=s.get("last_finding_at") or s["updated_at"],
                level=Level.from_name(s["level"]), score=s["score"], state=s["state"], findings=findings,
                level_seen=level_seen, seq=s["seq"], acknowledged_by=s.get("acknowledged_by"),
                assigned_to=s.get("assigned_to"),
            )  # fmt: skip
            self.by_id[inc.incident_id] = inc
            if inc.state == "resolved":  # within the re-open window: a new finding re-opens it, same id
                inc.updated_at = s.get("resolved_at") or inc.updated_at
                self._recent[key] = inc
                continue
            self.open[key] = inc
            self._schedule(inc, "resolve")
            self._schedule(inc, "clear")
            restored += 1
        return restored

    def take_touched(self) -> list[tuple[Incident, list[Finding]]]:
        """Open, notified incidents with the findings they got since the last call (for the store)."""
        out = []
        for iid, keys in self._touched.items():
            inc = self.by_id.get(iid)
            if inc is not None and inc.state in ("firing", "acknowledged"):
                out.append((inc, [inc.findings[k] for k in keys if k in inc.findings]))
        self._touched.clear()
        return out

    def resume_state(self, incident_id: str) -> dict[str, Any] | None:
        inc = self.by_id.get(incident_id)
        if inc is None:
            return None
        return {"group_key": list(inc.key), "last_finding_at": inc.last_finding_at, "level_seen": inc.seen_by_label()}

    # Operator actions: ``at`` is the engine clock; they raise IncidentError when not allowed.

    def _open_incident(self, incident_id: str) -> Incident:
        inc = self.by_id.get(incident_id)
        if inc is None or not inc.is_open:
            raise IncidentError(f"incident {incident_id} is not open")
        return inc

    def acknowledge(self, incident_id: str, by: str, at: float) -> list[dict[str, Any]]:
        inc = self._open_incident(incident_id)
        if inc.state == "acknowledged":
            return []  # acknowledging twice is not an error and not news
        if inc.state != "firing":
            raise IncidentError(f"incident {incident_id} is {inc.state}; only a firing incident can be acknowledged")
        move(inc, "acknowledged")
        inc.acknowledged_by, inc.updated_at = by, max(at, inc.updated_at)
        return [self._event(inc, "acknowledged", by)]

    def assign(self, incident_id: str, to: str, by: str, at: float) -> list[dict[str, Any]]:
        inc = self._open_incident(incident_id)
        if inc.state == "pending" and not self.policy.emit_pending:
            raise IncidentError(f"incident {incident_id} is pending; it can be assigned once it fires")
        inc.assigned_to, inc.updated_at = to, max(at, inc.updated_at)
        return [self._event(inc, "assigned", by)]

    def resolve(self, incident_id: str, by: str, at: float) -> list[dict[str, Any]]:
        inc = self._open_incident(incident_id)
        was_notified = inc.state != "pending"
        self._close(inc, max(at, inc.updated_at), by)
        return [self._event(inc, "resolved", by)] if was_notified or self.policy.emit_pending else []

    def event_of(self, incident_id: str, action: str, actor: str | None = None) -> dict[str, Any]:
        """A fresh event for an incident as it stands (escalations, reminders, dispatch)."""
        inc = self.by_id.get(incident_id)
        if inc is None:
            raise IncidentError(f"incident {incident_id} is not known to the running engine")
        return self._event(inc, action, actor)
