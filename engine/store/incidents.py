"""Incidents in the store: their state, summarised findings and audit trail, written one transaction per
batch of notifications with their outbox rows; and the read models the API and the CLI show."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.incidents.tracker import GRID_REPORT
from engine.ingest.bounds import has_nul, without_nul
from engine.store.database import Database
from engine.store.tables import (
    AuditRow,
    FindingRow,
    IncidentRow,
    OutboxRow,
)


@dataclass
class Notification:
    """One incident event with what dispatch decided about it."""

    event: dict[str, Any]
    at: float  # engine clock
    notify: bool  # false when silenced or inhibited: recorded, not sent
    detail: dict[str, Any]  # receivers, tier, silenced_by, inhibited_by, …
    resume: dict[str, Any] | None = None  # group_key, last_finding_at, escalation: for a restarted engine

    def outgoing(self) -> dict[str, Any]:
        """The event with what dispatch decided and whether it was sent (the API's and the page's view)."""
        return {**self.event, **self.detail, "notified": self.notify}


class IncidentRecords(Database):
    """The dispatcher's writes (``record``, ``touch``) and the API's reads of incidents."""

    def record(
        self,
        notes: Iterable[Notification],
        sinks: list[str],
        shard_of: Callable[[str], int] | None = None,
        progress: dict[str, int] | None = None,
        touched: list[tuple[str, float, list[dict[str, Any]], dict[str, float]]] | None = None,
    ) -> int:
        """Write incident states, findings, audit lines and outbox rows in one transaction; returns the
        outbox rows added. Rows are loaded in one query and written in bulk (executemany, upserts).
        ``touched`` (see ``touch``) and ``progress`` go in the same transaction, also without notes.

        ``shard_of`` gives an incident's outbox rows their owner's shard (its site's partition);
        ``progress`` (stream → offset) is written in the same transaction (see ``StreamProgressRow``).
        """
        # Every entry refuses control characters; a NUL that got in by another path costs one character here,
        # never the store (PostgreSQL refuses it in text, and the refused batch would fail every later write).
        notes = [n if not has_nul((n.event, n.detail, n.resume)) else
                 Notification(without_nul(n.event), n.at, n.notify, without_nul(n.detail), without_nul(n.resume))
                 for n in notes]  # fmt: skip
        touched = without_nul(touched) if touched and has_nul(touched) else touched
        if not (notes or progress or touched):
            return 0
        with self.session() as s, s.no_autoflush:
            added = self._write_notes(s, notes, sinks, shard_of) if notes else 0
            s.flush()  # incidents first: the touched ones may have been created just now
            self._touch(s, touched or [])
            if progress:
                self._save_progress(s, progress)
        return added

    def _write_notes(
        self, s: Session, notes: list[Notification], sinks: list[str], shard_of: Callable[[str], int] | None
    ) -> int:
        """Incident rows, findings, audit lines and outbox rows of ``notes``; returns the outbox rows added."""
        now = time.time()
        findings: list[tuple[str, dict[str, Any]]] = []
        audit: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        ids = {n.event["incident_id"] for n in notes}
        rows = {r.id: r for r in s.scalars(select(IncidentRow).where(IncidentRow.id.in_(ids)))}
        for n in notes:
            e = n.event
            iid = e["incident_id"]
            row = rows.get(iid)
            if row is None:
                row = rows[iid] = IncidentRow(id=iid, escalations=0)
                s.add(row)
            self._apply(row, n)
            findings.extend((iid, f) for f in e.get("findings", []))
            audit.append(
                {"incident_id": iid, "at": n.at, "actor": e.get("actor") or "engine", "action": e.get("action", ""),
                 "detail": {"level": e["level"], "state": e["state"], "seq": e.get("seq"),
                            "assigned_to": e.get("assigned_to"), **n.detail}}
            )  # fmt: skip
            if n.notify:
                payload = orjson.dumps({**e, **{k: v for k, v in n.detail.items() if k in ("receivers", "tier")}})
                outbox.extend(
                    {"sink": sink, "incident_id": iid, "seq": e.get("seq", 0), "event": payload.decode(),
                     "created_at": now, "attempts": 0, "next_attempt_at": 0.0, "gave_up": False,
                     "shard": shard_of(e["site"]) if shard_of else 0}
                    for sink in sinks
                )  # fmt: skip
        s.flush()  # incidents first: findings refer to them
        self._upsert_findings(s, findings)
        s.execute(insert(AuditRow), audit)
        if outbox:
            s.execute(insert(OutboxRow), outbox)
        return len(outbox)

    def _upsert_findings(self, s: Session, findings: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Insert or update (incident, finding event) pairs in one executemany; the last per key wins."""
        rows = {
            (iid, f["detector"], f["device"]): {
                "incident_id": iid, "detector": f["detector"], "device": f["device"], "ts": f["ts"],
                "level": f["level"], "score": f["score"], "evidence": f.get("evidence", {}),
            }
            for iid, f in findings
        }  # fmt: skip
        if not rows:
            return
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(FindingRow)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["incident_id", "detector", "device"],
                set_={c: stmt.excluded[c] for c in ("ts", "level", "score", "evidence")},
            ),
            list(rows.values()),
        )

    @staticmethod
    def _apply(row: IncidentRow, n: Notification) -> None:
        e = n.event
        row.site, row.hazard, row.level, row.state = e["site"], e["hazard"], e["level"], e["state"]
        row.opened_at, row.updated_at, row.score = e["opened_at"], e["updated_at"], e["score"]
        row.confidence, row.seq = e.get("confidence", "normal"), e.get("seq", 0)
        row.route, row.plan = e.get("route", []), e.get("plan", {})
        row.assigned_to = e.get("assigned_to")
        row.silenced_by, row.inhibited_by = n.detail.get("silenced_by"), n.detail.get("inhibited_by")
        if n.detail.get("tier"):
            row.tier = n.detail["tier"]
        if n.resume is not None:
            row.group_key = n.resume["group_key"]
            row.last_finding_at = n.resume["last_finding_at"]
            row.escalation = n.resume["escalation"]
            row.level_seen = n.resume.get("level_seen")
        action = e.get("action", "")
        if action == "acknowledged":
            row.acknowledged_by, row.acknowledged_at = e.get("actor"), n.at
        elif action == "escalated":
            row.escalations = (row.escalations or 0) + 1
        elif action == "resolved":
            row.resolved_at = e["updated_at"]
        elif action in ("raised", "reopened"):
            row.acknowledged_by = e.get("acknowledged_by")

    def touch(self, updates: list[tuple[str, float, list[dict[str, Any]], dict[str, float]]]) -> None:
        """Findings on open incidents that caused no event: the last finding time and the findings
        themselves, in bulk, so that the API shows every contributing finding and a restarted engine
        does not resolve an incident early."""
        if not updates:
            return
        with self.session() as s:
            self._touch(s, updates)

    def _touch(self, s: Session, updates: list[tuple[str, float, list[dict[str, Any]], dict[str, float]]]) -> None:
        if not updates:
            return
        known = set(s.scalars(select(IncidentRow.id).where(IncidentRow.id.in_([u[0] for u in updates]))))
        rows = [u for u in updates if u[0] in known]  # never notified: nothing to keep
        if rows:
            s.execute(
                update(IncidentRow.__table__)  # type: ignore[arg-type]
                .where(IncidentRow.__table__.c.id == bindparam("iid"))
                .values(last_finding_at=bindparam("last"), level_seen=bindparam("seen")),
                [{"iid": i, "last": t, "seen": seen} for i, t, _, seen in rows],
            )
            self._upsert_findings(s, [(i, f) for i, _, found, _ in rows for f in found])

    def list_incidents(
        self,
        state: str | None = None,
        hazard: str | None = None,
        site: str | None = None,
        level: str | None = None,
        open_only: bool = False,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        q = select(IncidentRow)
        if state:
            q = q.where(IncidentRow.state == state)
        if open_only:
            q = q.where(IncidentRow.state != "resolved")
        if hazard:
            q = q.where(IncidentRow.hazard == hazard)
        if site:
            q = q.where(IncidentRow.site == site)
        if level:
            q = q.where(IncidentRow.level == level)
        with self.session() as s:
            rows = s.scalars(q.order_by(IncidentRow.opened_at.desc(), IncidentRow.id).limit(limit)).all()
            reported = _reported(s, [r.id for r in rows])
            return [{**incident_json(r), "reported": r.id in reported} for r in rows]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        with self.session() as s:
            row = s.get(IncidentRow, incident_id)
            if row is None:
                return None
            out = incident_json(row)
            findings = s.scalars(
                select(FindingRow).where(FindingRow.incident_id == incident_id).order_by(FindingRow.ts)
            ).all()
            out["findings"] = [finding_json(f) for f in findings]
            audit = s.scalars(select(AuditRow).where(AuditRow.incident_id == incident_id).order_by(AuditRow.id)).all()
            out["audit"] = [{"at": a.at, "actor": a.actor, "action": a.action, "detail": a.detail} for a in audit]
            return out

    def last_event_id(self) -> int:
        """The newest audit line's id (0 for none): where a feed of the events recorded from now starts."""
        with self.session() as s:
            return int(s.scalar(select(func.max(AuditRow.id))) or 0)

    def events_after(self, after: int, also: Iterable[int] = (), limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
        """The incident events recorded after audit line ``after`` (and the lines ``also``), oldest first, as
        the page's stream shows them: the incident as it is now, with the level, state and action the line
        recorded. Any engine writing to the store is seen, so a scale-out worker's page shows every partition."""
        wanted = AuditRow.id > after
        also = list(also)
        if also:
            wanted = or_(wanted, AuditRow.id.in_(also))
        with self.session() as s:
            rows = s.execute(
                select(AuditRow, IncidentRow)
                .join(IncidentRow, IncidentRow.id == AuditRow.incident_id)
                .where(wanted)
                .order_by(AuditRow.id)
                .limit(limit)
            ).all()
            reported = _reported(s, {i.id for _a, i in rows})
        return [
            (a.id, {**incident_json(i), **a.detail, "action": a.action, "actor": a.actor, "at": a.at,
                    "reported": i.id in reported})
            for a, i in rows
        ]  # fmt: skip

    def grid_reports(self, limit: int = 100) -> list[dict[str, Any]]:
        """People's reports (findings of ``grid_report``), newest first, each with its incident's state."""
        with self.session() as s:
            q = (
                select(FindingRow, IncidentRow)
                .join(IncidentRow, IncidentRow.id == FindingRow.incident_id)
                .where(FindingRow.detector == GRID_REPORT)
                .order_by(FindingRow.ts.desc())
                .limit(limit)
            )
            return [
                {**finding_json(f), "incident_id": i.id, "site": i.site, "hazard": i.hazard, "state": i.state,
                 "incident_level": i.level, "tier": i.tier}
                for f, i in s.execute(q).all()
            ]  # fmt: skip

    def report_completion(self) -> dict[str, dict[str, Any]]:
        """Per tier, the reported cases it holds (an incident a person reported, at that tier now or when it
        was resolved) and the share resolved: the completion rate a grid platform reports upward."""
        reported = select(FindingRow.incident_id).where(FindingRow.detector == GRID_REPORT).distinct()
        with self.session() as s:
            rows = s.execute(select(IncidentRow.tier, IncidentRow.state).where(IncidentRow.id.in_(reported))).all()
        out: dict[str, dict[str, Any]] = {}
        for tier, state in rows:
            t = out.setdefault(tier or "none", {"cases": 0, "resolved": 0})
            t["cases"] += 1
            t["resolved"] += int(state == "resolved")
        for t in out.values():
            t["completion"] = round(t["resolved"] / t["cases"], 4)
        return out

    def open_incidents(self, resolved_since: float | None = None) -> list[dict[str, Any]]:
        """Open incidents with their findings and restart state, for an engine taking up where one stopped;
        with ``resolved_since``, also those resolved since then (a new finding may still re-open them)."""
        with self.session() as s:
            wanted = IncidentRow.state != "resolved"
            if resolved_since is not None:
                wanted = wanted | (IncidentRow.resolved_at >= resolved_since)
            rows = s.scalars(select(IncidentRow).where(wanted).order_by(IncidentRow.id)).all()
            # Their findings in one query per chunk of incidents, not one per incident (the board asks often).
            findings: dict[str, list[dict[str, Any]]] = {r.id: [] for r in rows}
            ids = list(findings)
            for i in range(0, len(ids), 1000):
                chunk = (
                    select(FindingRow)
                    .where(FindingRow.incident_id.in_(ids[i : i + 1000]))
                    .order_by(FindingRow.incident_id, FindingRow.detector, FindingRow.device)
                )
                for f in s.scalars(chunk):
                    findings[f.incident_id].append(finding_json(f))
            out = []
            for r in rows:
                inc = incident_json(r)
                inc.update(
                    group_key=r.group_key, last_finding_at=r.last_finding_at, escalation=r.escalation,
                    level_seen=r.level_seen,
                )  # fmt: skip
                inc["findings"] = findings[r.id]
                out.append(inc)
            return out


def finding_json(f: FindingRow) -> dict[str, Any]:
    """A stored finding as in an incident event (docs/contracts.md: "Incident event")."""
    return {"detector": f.detector, "device": f.device, "ts": f.ts, "level": f.level, "score": f.score,
            "evidence": f.evidence}  # fmt: skip


def _reported(s: Session, ids: Iterable[str]) -> set[str]:
    """Those of ``ids`` that a person reported (a ``grid_report`` finding is among their findings)."""
    return set(
        s.scalars(
            select(FindingRow.incident_id)
            .where(FindingRow.detector == GRID_REPORT, FindingRow.incident_id.in_(list(ids)))
            .distinct()
        )
    )


def incident_json(r: IncidentRow) -> dict[str, Any]:
    return {
        "incident_id": r.id, "site": r.site, "hazard": r.hazard, "level": r.level, "state": r.state,
        "opened_at": r.opened_at, "updated_at": r.updated_at, "score": r.score, "confidence": r.confidence,
        "seq": r.seq, "tier": r.tier, "escalations": r.escalations, "acknowledged_by": r.acknowledged_by,
        "acknowledged_at": r.acknowledged_at, "assigned_to": r.assigned_to, "resolved_at": r.resolved_at,
        "silenced_by": r.silenced_by, "inhibited_by": r.inhibited_by, "route": r.route, "plan": r.plan,
        "dispatched": bool((r.escalation or {}).get("dispatched")),
    }  # fmt: skip
