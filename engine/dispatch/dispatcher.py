"""Dispatch: who hears of an incident event, escalation when nobody acknowledges, silences and inhibition.

The dispatcher takes the tracker's incident events and decides, for each, who receives it (the first
receiver from the routing tree, everyone notified so far for later news, the plan's receivers for a
one-key dispatch), whether it is muted (a silence, an inhibiting incident: recorded, not sent), and it
keeps the escalation timers: an incident not acknowledged within its level's ``ack_within_s`` goes one
tier up (grid → town → district → city), with reminders every ``repeat_s``. Every decision becomes a
``Notification`` that the store records with the audit trail and, unless muted, the sinks' outbox rows.

Time is the engine clock passed in by the runner (the data's watermark, moved on by the wall clock while
no data arrives), so a replay escalates as the live run did.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import metrics
from engine.config.models import TIERS, EngineConfig
from engine.core.findings import Finding
from engine.core.levels import Level
from engine.dispatch.routing import Router
from engine.incidents.inhibition import inhibited_by
from engine.incidents.silences import Silence, silenced_by
from engine.incidents.tracker import IncidentError, IncidentTracker
from engine.store.store import Notification, Store

logger = logging.getLogger(__name__)


def is_poison(exc: BaseException) -> bool:
    """Whether the store refused the data itself (a value it cannot hold), not the connection or the disk:
    writing the same again would fail for ever.

    >>> from sqlalchemy.exc import DataError, OperationalError
    >>> is_poison(DataError("INSERT", {}, ValueError("NUL"))), is_poison(OperationalError("x", {}, OSError()))
    (True, False)
    """
    from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError, StatementError

    if isinstance(exc, DataError | IntegrityError | ProgrammingError):
        return True
    return isinstance(exc, StatementError) and isinstance(exc.orig, ValueError | TypeError)


# Actions the dispatcher adds to the tracker's own (which are the same under every runner and batching).
DISPATCH_ACTIONS = frozenset({"escalated", "reminder", "dispatched"})

# An event this far behind the engine clock the dispatcher has already run to is late news (a device's
# backlog, a frame that waited): its deadlines start when it arrives. Counted from its own time, a month-old
# report would send a month of reminders at once. In-order data (a replay's batches, a live stream's small
# skew between devices) is never this late, so its deadlines stay exactly at its own times.
LATE_S = 60.0


@dataclass
class Escalation:
    """Where an open incident stands on its route: the first tier told, the current one, the deadlines."""

    first: int
    tier: int
    level_since: float  # when the current level was first notified (its acknowledgement clock starts)
    ack_due: float
    remind_at: float
    acknowledged: bool = False
    dispatched: list[str] = dataclasses.field(default_factory=list)  # receivers one-key dispatch reached


class Dispatcher:
    """Turns incident events into notifications, and the engine clock into escalations and reminders.

    >>> from engine.config.models import EngineConfig
    >>> from engine.core.findings import Finding
    >>> site = dict(id="S1", lat=29.5, lon=106.5, grid="g1", town="t1", district="d1")
    >>> cfg = EngineConfig(sites=[site], routing=[dict(first="town", ack_within_s=600, repeat_s=300)])
    >>> tracker = IncidentTracker(cfg.incidents)
    >>> desk = Dispatcher(cfg, tracker)
    >>> events = tracker.apply([Finding("d", "landslide", "S1", "crack-1", 0.0, Level.ORANGE, 1.0)])
    >>> [(n.event["action"], n.detail["receivers"]) for n in desk.handle(events, now=0.0)]
    [('fired', ['town:t1'])]
    >>> [(n.event["action"], n.detail["receivers"], n.at) for n in desk.tick(now=600.0)]
    [('reminder', ['town:t1'], 300.0), ('escalated', ['district:d1'], 600.0)]
    >>> [(n.event["action"], n.detail["receivers"]) for n in desk.acknowledge(events[0]["incident_id"], "ops", 700.0)]
    [('acknowledged', ['town:t1', 'district:d1'])]
    """

    def __init__(self, cfg: EngineConfig, tracker: IncidentTracker, store: Store | None = None) -> None:
        self.tracker = tracker
        self.store = store
        self._esc: dict[str, Escalation] = {}
        self._next_due = float("inf")  # the earliest escalation or reminder (tick is a no-op before it)
        self._clock = float("-inf")  # the latest engine clock handled (``_arrival``)
        self._muted: dict[str, tuple[str | None, str | None]] = {}  # firing incidents muted: by what
        self._gauged: set[tuple[str, str]] = set()  # open-incident gauge labels set so far
        self._deadlines: dict[str, list[int]] = {"ack": [0, 0], "resolve": [0, 0]}  # met, total
        self.api_silences: list[Silence] = store.silences() if store is not None else []
        self.on_notes: Callable[[list[dict[str, Any]]], None] | None = None  # e.g. the operator page's stream
        self.store_ok = True
        self.unstored: list[Notification] = []  # written when the store is back
        self.max_unstored = 100_000
        self.shard_of: Callable[[str], int] | None = None  # a Faust worker: a site's partition
        self.progress: dict[str, int] = {}  # stream offsets to store with the next notifications
        self.untouched: dict[str, tuple[str, float, list[dict[str, Any]], dict[str, float]]] = {}  # to store
        self.set_config(cfg)

    def set_config(self, cfg: EngineConfig) -> None:
        """Routing, silences and inhibition rules from a (re)loaded config; escalation timers carry on."""
        self.cfg = cfg
        self.router = Router(cfg)
        self.sinks = [s.name or s.type for s in cfg.sinks]

    @property
    def silences(self) -> list[Silence]:
        return [*self.cfg.silences, *self.api_silences]

    def refresh_silences(self) -> None:
        if self.store is not None:
            self.api_silences = self.store.silences()

    # Events from the tracker

    def handle(self, events: list[dict[str, Any]], now: float) -> list[Notification]:
        """Decide on the tracker's events; each counts from its own time (data time), not the batch's end,
        so deadlines do not depend on how the stream was batched."""
        notes = [self._decide(e, self._arrival(min(now, e["updated_at"]))) for e in events]
        self._clock = max(self._clock, now)
        # Findings that caused no event still move an incident's last finding and level times: they are
        # written with the notifications and the stream progress, in one transaction, so that whoever takes
        # the incident up (a restart, a scale-out worker after a takeover) starts exactly where this left off.
        for inc, found in self.tracker.take_touched():
            self.untouched[inc.incident_id] = (
                inc.incident_id,
                inc.last_finding_at,
                [f.to_event() for f in found],
                inc.seen_by_label(),
            )
        self._record(notes)
        return notes

    def _arrival(self, at: float) -> float:
        """An event's time for its deadlines: its own, unless it is late news (``LATE_S``)."""
        return self._clock if at < self._clock - LATE_S else at

    def _decide(self, e: dict[str, Any], now: float) -> Notification:
        action, iid = e["action"], e["incident_id"]
        level = Level.from_name(e["level"])
        rule = self.router.rule(e["hazard"], level)
        route = e["route"] or self.router.route(e["site"])
        esc = self._esc.get(iid)
        if action in ("fired", "reopened") or (esc is None and e["state"] in ("firing", "acknowledged")):
            first = self.router.first_tier(e["hazard"], level)
            esc = self._esc[iid] = Escalation(first, first, now, now + rule.ack_within_s, now + rule.repeat_s)
            self._next_due = min(self._next_due, self._due_at(esc))
            receivers = [route[first]]
        elif esc is None:  # pending (emit_pending), or resolved before it ever fired
            receivers = []
        elif action == "raised":
            esc.tier = max(esc.tier, self.router.first_tier(e["hazard"], level))
            esc.level_since, esc.acknowledged = now, False
            esc.ack_due, esc.remind_at = now + rule.ack_within_s, now + rule.repeat_s
            self._next_due = min(self._next_due, self._due_at(esc))
            receivers = self._reached(route, esc)
        else:
            receivers = self._reached(route, esc)
        if esc is not None and action == "acknowledged":
            esc.acknowledged = True
            metrics.TIME_TO_ACK.labels(e["hazard"]).observe(max(0.0, now - esc.level_since))
            self._deadline("ack", now - esc.level_since <= rule.ack_within_s)
        if action == "resolved":
            if esc is not None and not esc.acknowledged:
                self._deadline("ack", False)
            self._deadline("resolve", e["updated_at"] - e["opened_at"] <= rule.resolve_within_s)
            self._esc.pop(iid, None)
        tier = TIERS[esc.tier] if esc is not None else None
        return self._mute(Notification(e, now, True, {"receivers": receivers, "tier": tier}))

    @staticmethod
    def _reached(route: list[str], esc: Escalation) -> list[str]:
        """Everyone who has heard of the incident: its tiers so far, and whom one-key dispatch reached. Later
        news (a raise, an acknowledgement, the resolution) goes to all of them."""
        out = list(route[esc.first : esc.tier + 1])
        out += [r for r in esc.dispatched if r not in out]
        return out

    def _mute(self, note: Notification) -> Notification:
        e = note.event
        devices = {f["device"] for f in e["findings"]}
        silence = silenced_by(self.silences, note.at, e["site"], e["hazard"], devices, e["level"])
        inhibitor = None
        if self.cfg.inhibit and any(r.target_hazard == e["hazard"] for r in self.cfg.inhibit):
            others = [
                (inc.site, inc.hazard, inc.level.label)
                for inc in self.tracker.open.values()
                if inc.incident_id != e["incident_id"] and inc.state != "pending"
            ]
            inhibitor = inhibited_by(self.cfg.inhibit, (e["site"], e["hazard"], e["level"]), others)
        if silence or inhibitor:
            note.notify = False
            note.detail.update(silenced_by=silence, inhibited_by=inhibitor)
            if e.get("state") in ("firing", "pending"):
                self._muted[e["incident_id"]] = (silence, inhibitor)
        elif note.notify:
            self._muted.pop(e["incident_id"], None)
        return note

    def _unmuted(self, now: float) -> list[Notification]:
        """Incidents muted by a silence or an inhibition that has ended since, still firing: told now (a RED
        that opened during a 15-minute silence stayed silent after it, until its next reminder at best)."""
        notes: list[Notification] = []
        for iid, (silence, inhibitor) in list(self._muted.items()):
            inc = self.tracker.get(iid)
            if inc is None or not inc.is_open or inc.state != "firing":
                self._muted.pop(iid, None)
                continue
            event = self.tracker.event_of(iid, "reminder")
            esc = self._esc.get(iid)
            route = self.router.route(inc.site)
            receivers = (
                self._reached(route, esc) if esc is not None else [route[self.router.first_tier(inc.hazard, inc.level)]]
            )
            note = self._mute(Notification(event, now, True, {"receivers": receivers,
                                                               "tier": TIERS[esc.tier] if esc else None}))  # fmt: skip
            if note.notify:  # nothing mutes it any more
                note.detail["unmuted"] = silence or inhibitor
                notes.append(note)
        return notes

    def _deadline(self, stage: str, met: bool) -> None:
        counts = self._deadlines[stage]
        counts[0] += int(met)
        counts[1] += 1
        metrics.DEADLINES.labels(stage, "met" if met else "missed").inc()
        metrics.DEADLINE_COMPLETION.labels(stage).set(counts[0] / counts[1])

    # The clock: escalations and reminders

    def tick(self, now: float) -> list[Notification]:
        """Escalations and reminders due by ``now``. Called after every batch, so it returns at once while
        no deadline is due (the earliest one is kept)."""
        notes = self._due(now) if now >= self._next_due else []
        if self._muted:
            notes += self._unmuted(now)
        self._clock = max(self._clock, now)
        self._record(notes)
        return notes

    def _due(self, now: float) -> list[Notification]:
        notes: list[Notification] = []
        next_due = float("inf")
        for iid, esc in list(self._esc.items()):
            inc = self.tracker.get(iid)
            if inc is None or not inc.is_open:
                self._esc.pop(iid, None)
                continue
            if esc.acknowledged or inc.state != "firing":
                continue
            rule = self.router.rule(inc.hazard, inc.level)
            route = self.router.route(inc.site)
            # Every deadline passed by ``now``, each at its own time (a long gap can hold several).
            while True:
                can_escalate = esc.tier < len(TIERS) - 1
                at = min(esc.ack_due if can_escalate else float("inf"), esc.remind_at)
                if at > now:
                    break
                if not at + rule.repeat_s > at:  # no progress (a time of -1e300): never loop on it
                    logger.error("incident %s has deadline %r that cannot advance; its timers restart now", iid, at)
                    at = now
                if can_escalate and esc.ack_due <= esc.remind_at:
                    esc.tier += 1
                    esc.ack_due, esc.remind_at = at + rule.ack_within_s, at + rule.repeat_s
                    metrics.ESCALATIONS.labels(inc.hazard).inc()
                    action = "escalated"
                else:
                    esc.remind_at = at + rule.repeat_s
                    action = "reminder"
                event = self.tracker.event_of(iid, action)
                detail = {"receivers": [route[esc.tier]], "tier": TIERS[esc.tier]}
                notes.append(self._mute(Notification(event, at, True, detail)))
            next_due = min(next_due, self._due_at(esc))
        self._next_due = next_due
        return notes

    @staticmethod
    def _due_at(esc: Escalation) -> float:
        return min(esc.ack_due if esc.tier < len(TIERS) - 1 else float("inf"), esc.remind_at)

    def gauge_open(self) -> None:
        """``gridwatch_open_incidents`` by hazard and level (a scan of the open incidents: call it now and
        then, not per batch)."""
        counts: dict[tuple[str, str], int] = {}
        for inc in self.tracker.open.values():
            if inc.state != "pending":
                k = (inc.hazard, inc.level.label)
                counts[k] = counts.get(k, 0) + 1
        for hazard, level in self._gauged:
            if (hazard, level) not in counts:
                metrics.OPEN_INCIDENTS.labels(hazard, level).set(0)
        for (hazard, level), n in counts.items():
            metrics.OPEN_INCIDENTS.labels(hazard, level).set(n)
        self._gauged = set(counts)

    # Operator actions (the API and the CLI); IncidentError when not allowed

    def acknowledge(self, incident_id: str, by: str, now: float, comment: str = "") -> list[Notification]:
        return self._operator(self.tracker.acknowledge(incident_id, by, now), now, comment)

    def assign(self, incident_id: str, to: str, by: str, now: float) -> list[Notification]:
        return self._operator(self.tracker.assign(incident_id, to, by, now), now, "")

    def resolve(self, incident_id: str, by: str, now: float, comment: str = "") -> list[Notification]:
        return self._operator(self.tracker.resolve(incident_id, by, now), now, comment)

    def dispatch(self, incident_id: str, by: str, now: float) -> list[Notification]:
        """One-key dispatch: the incident with its plan to every receiver of the plan, never muted. Once per
        receiver: pressing it again reaches only receivers it has not reached (a higher level's plan may name
        more), else nothing happens. Only an open incident can be dispatched."""
        inc = self.tracker.get(incident_id)
        if inc is None or not inc.is_open:
            state = inc.state if inc is not None else "unknown"
            raise IncidentError(f"incident {incident_id} is {state}; only an open incident can be dispatched")
        esc = self._esc.get(incident_id)
        plan = self.router.plan_receivers(inc.site, inc.hazard, inc.level)
        already = list(esc.dispatched) if esc is not None else []
        receivers = [r for r in plan if r not in already]
        if not receivers:
            return []  # every receiver of the plan has it: no news
        if esc is not None:
            esc.dispatched.extend(receivers)
        event = self.tracker.event_of(incident_id, "dispatched", by)
        detail = {"receivers": receivers, "tier": TIERS[esc.tier] if esc else None, "already_dispatched": already}
        note = Notification(event, now, True, detail)
        self._record([note])
        return [note]

    def report(self, finding: Finding, now: float) -> list[Notification]:
        """A person's report (a grid report's finding) into the incidents, at once, without moving data time:
        it opens or joins the site's incident for its hazard, routed, escalated and dispatched as any other
        finding."""
        return self.handle(self.tracker.observe(finding), now)

    def _operator(self, events: list[dict[str, Any]], now: float, comment: str) -> list[Notification]:
        notes = [self._decide(e, now) for e in events]
        for n in notes:
            if comment:
                n.detail["comment"] = comment
        self._record(notes)
        return notes

    def _store(self, notes: list[Notification]) -> None:
        """Write to the store; while it is out, keep notifications in memory (up to a bound, oldest first
        out, counted) and write them, in order, once it is back. Detection never waits for the store."""
        assert self.store is not None
        self.unstored.extend(notes)
        try:
            self.store.record(self.unstored, self.sinks, self.shard_of, self.progress, list(self.untouched.values()))
        except Exception as exc:  # any driver's error: a full disk, a lost connection, a locked file
            if is_poison(exc) and self._without_poison():
                return
            if self.store_ok:
                logger.error("the incident store is failing (%s); keeping notifications in memory", exc)
            self.store_ok = False
            metrics.STORE_ERRORS.inc()
            overflow = len(self.unstored) - self.max_unstored
            if overflow > 0:
                del self.unstored[:overflow]
                metrics.STORE_DROPPED.inc(overflow)
                logger.error("store still out: %d oldest notifications dropped from memory", overflow)
            metrics.STORE_PENDING.set(len(self.unstored))
            return
        if not self.store_ok:
            logger.warning("the incident store is back; %d notifications written", len(self.unstored))
        self.store_ok = True
        self.unstored = []
        self.progress = {}
        self.untouched = {}
        metrics.STORE_PENDING.set(0)

    def _without_poison(self) -> bool:
        """The store refused the data, not the connection: write the held notifications one by one, so that
        one the store cannot take (counted, logged, dropped) never blocks those after it. True when every
        other one is written."""
        assert self.store is not None
        held, self.unstored = self.unstored, []
        for i, note in enumerate(held):
            try:
                self.store.record([note], self.sinks, self.shard_of)
            except Exception as exc:
                if not is_poison(exc):  # the store went out meanwhile: keep the rest, in order
                    self.unstored = held[i:]
                    return False
                metrics.STORE_POISON.inc()
                logger.error("the store refuses notification %s of incident %s (%s): dropped, the rest go on",
                             note.event.get("action"), note.event.get("incident_id"), str(exc)[:300])  # fmt: skip
        self.store.record([], self.sinks, self.shard_of, self.progress, list(self.untouched.values()))
        self.store_ok, self.progress, self.untouched = True, {}, {}
        metrics.STORE_PENDING.set(0)
        return True

    def held(self) -> dict[str, Any] | None:
        """What is decided and not yet in the store (the store is out), as JSON: ``take_up_held`` writes it
        after a restart. None when nothing is held."""
        if not (self.unstored or self.untouched):
            return None
        notes = [{"event": n.event, "at": n.at, "notify": n.notify, "detail": n.detail, "resume": n.resume}
                 for n in self.unstored]  # fmt: skip
        return {"notes": notes, "progress": self.progress, "untouched": list(self.untouched.values())}

    def take_up_held(self, held: dict[str, Any]) -> bool:
        """Write what a previous engine held when it stopped (``held``) to the store, before anything else;
        True when it is written (False: the store is still out, and it is held here again)."""
        notes = [Notification(n["event"], n["at"], n["notify"], n["detail"], n["resume"]) for n in held["notes"]]
        self.unstored[:0] = notes
        self.progress = {**held.get("progress", {}), **self.progress}
        for u in held.get("untouched", []):
            self.untouched.setdefault(u[0], (u[0], u[1], u[2], u[3]))
        if self.store is not None:
            self._store([])
        return self.store_ok and not self.unstored

    def restore(self, stored: list[dict[str, Any]]) -> None:
        """Escalation timers of the open incidents a previous engine left in the store."""
        for s in stored:
            if s.get("escalation") and s["state"] != "resolved":
                esc = self._esc[s["incident_id"]] = Escalation(**s["escalation"])
                self._next_due = min(self._next_due, self._due_at(esc))

    def _record(self, notes: list[Notification]) -> None:
        for n in notes:
            resume = self.tracker.resume_state(n.event["incident_id"])
            if resume is not None:
                esc = self._esc.get(n.event["incident_id"])
                n.resume = {**resume, "escalation": dataclasses.asdict(esc) if esc else None}
            metrics.NOTIFICATIONS.labels(n.event["action"], "sent" if n.notify else "muted").inc()
            if n.notify:
                metrics.INCIDENT_EVENTS.labels(n.event["hazard"], n.event["level"], n.event["state"]).inc()
        if self.store is not None and (notes or self.unstored or self.untouched or self.progress):
            self._store(notes)
        if notes and self.on_notes is not None:
            self.on_notes([n.outgoing() for n in notes])
