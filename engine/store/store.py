"""The incident store: incidents, summarised findings, the audit trail, silences and the sinks' outbox.

One transaction per batch of notifications: an incident's new state, its audit lines and its outbox rows
are written together, so a sink that is down delays delivery and loses nothing, and a crash between
"decided" and "sent" leaves the event in the outbox to send on restart.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, bindparam, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from engine.incidents.silences import Silence
from engine.store.tables import (
    AuditRow,
    FindingRow,
    IncidentRow,
    OperatorActionRow,
    OutboxRow,
    SilenceRow,
    StreamProgressRow,
)

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


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


@dataclass
class OutboxItem:
    id: int
    sink: str
    incident_id: str
    seq: int
    event: dict[str, Any]
    attempts: int
    next_attempt_at: float
    shard: int = 0


def _rows(result: Any) -> int:
    """Rows a DELETE removed (a CursorResult's ``rowcount``)."""
    return int(getattr(result, "rowcount", 0) or 0)


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers (the API) do not block the engine's writes
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """SQLite by default, PostgreSQL by URL; ``migrate()`` brings the schema to the latest revision.

    >>> st = Store("sqlite://")
    >>> st.migrate()
    >>> st.list_incidents()
    []
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self, attempts: int = 5) -> None:
        """Bring the schema to the latest revision. Several processes starting at once (Faust workers)
        race for it: PostgreSQL serialises them on an advisory lock; elsewhere the loser retries, and
        finds the schema current."""
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(7160042)"))
                    cfg = alembic_config(self.url)
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                return
            except DBAPIError as exc:
                if attempt == attempts:
                    raise
                logger.info("schema migration raced another process (%s); retrying", exc.orig)
                time.sleep(0.5 * attempt)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session.begin() as s:
            yield s

    # Writes by the dispatcher

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
        notes = list(notes)
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

    def _save_progress(self, s: Session, progress: dict[str, int]) -> None:
        query = select(StreamProgressRow).where(StreamProgressRow.stream.in_(progress))
        known = {r.stream: r for r in s.scalars(query)}
        for stream, offset in progress.items():
            row = known.get(stream)
            if row is None:
                s.add(StreamProgressRow(stream=stream, applied=offset))
            elif offset > row.applied:
                row.applied = offset

    def progress(self, prefix: str = "") -> dict[str, int]:
        """Applied offsets by stream (``topic/partition``) whose name starts with ``prefix``."""
        with self.session() as s:
            rows = s.scalars(select(StreamProgressRow).where(StreamProgressRow.stream.startswith(prefix))).all()
            return {r.stream: r.applied for r in rows}

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

    # The outbox

    def outbox_due(self, sink: str, limit: int = 100, shards: Iterable[int] | None = None) -> list[OutboxItem]:
        """The oldest undelivered events of one sink, in order; only those of ``shards`` when given."""
        with self.session() as s:
            query = select(OutboxRow).where(
                OutboxRow.sink == sink, OutboxRow.delivered_at.is_(None), OutboxRow.gave_up.is_(False)
            )
            if shards is not None:
                query = query.where(OutboxRow.shard.in_(list(shards)))
            rows = s.scalars(query.order_by(OutboxRow.id).limit(limit)).all()
            return [
                OutboxItem(
                    r.id, r.sink, r.incident_id, r.seq, orjson.loads(r.event), r.attempts, r.next_attempt_at, r.shard
                )
                for r in rows
            ]

    def outbox_delivered(self, ids: list[int], at: float) -> None:
        if not ids:
            return
        with self.session() as s:
            s.execute(update(OutboxRow).where(OutboxRow.id.in_(ids)).values(delivered_at=at))

    def outbox_failed(self, item_id: int, error: str, next_attempt_at: float, give_up: bool) -> None:
        with self.session() as s:
            s.execute(
                update(OutboxRow)
                .where(OutboxRow.id == item_id)
                .values(
                    attempts=OutboxRow.attempts + 1, last_error=error[:2000], next_attempt_at=next_attempt_at,
                    gave_up=give_up,
                )
            )  # fmt: skip

    def purge(self, now: float, outbox_keep_s: float, history_keep_s: float) -> dict[str, int]:
        """Delete what no one needs any more: outbox rows delivered or set aside longer than ``outbox_keep_s``
        ago, and incidents resolved longer than ``history_keep_s`` ago with their findings and audit trail.
        Open incidents and undelivered events are never touched. Returns the rows deleted per table."""
        with self.session() as s:
            done = (OutboxRow.delivered_at.is_not(None)) | (OutboxRow.gave_up.is_(True))
            outbox = _rows(s.execute(delete(OutboxRow).where(done, OutboxRow.created_at < now - outbox_keep_s)))
            waiting = select(OutboxRow.incident_id).where(
                OutboxRow.delivered_at.is_(None), OutboxRow.gave_up.is_(False)
            )
            old = select(IncidentRow.id).where(
                IncidentRow.state == "resolved", IncidentRow.updated_at < now - history_keep_s,
                IncidentRow.id.not_in(waiting),
            )  # fmt: skip
            ids = list(s.scalars(old))
            audit = findings = incidents = 0
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                audit += _rows(s.execute(delete(AuditRow).where(AuditRow.incident_id.in_(chunk))))
                findings += _rows(s.execute(delete(FindingRow).where(FindingRow.incident_id.in_(chunk))))
                s.execute(delete(OutboxRow).where(OutboxRow.incident_id.in_(chunk)))
                incidents += _rows(s.execute(delete(IncidentRow).where(IncidentRow.id.in_(chunk))))
        return {"outbox": outbox, "incidents": incidents, "findings": findings, "audit": audit}

    def outbox_backlog(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(
                select(OutboxRow.sink, func.count())
                .where(OutboxRow.delivered_at.is_(None), OutboxRow.gave_up.is_(False))
                .group_by(OutboxRow.sink)
            ).all()
            return {sink: int(n) for sink, n in rows}

    # Reads by the API and the CLI

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
            return [incident_json(r) for r in rows]

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

    def open_incidents(self, resolved_since: float | None = None) -> list[dict[str, Any]]:
        """Open incidents with their findings and restart state, for an engine taking up where one stopped;
        with ``resolved_since``, also those resolved since then (a new finding may still re-open them)."""
        with self.session() as s:
            wanted = IncidentRow.state != "resolved"
            if resolved_since is not None:
                wanted = wanted | (IncidentRow.resolved_at >= resolved_since)
            rows = s.scalars(select(IncidentRow).where(wanted).order_by(IncidentRow.id)).all()
            out = []
            for r in rows:
                inc = incident_json(r)
                inc.update(
                    group_key=r.group_key, last_finding_at=r.last_finding_at, escalation=r.escalation,
                    level_seen=r.level_seen,
                )  # fmt: skip
                found = s.scalars(select(FindingRow).where(FindingRow.incident_id == r.id)).all()
                inc["findings"] = [finding_json(f) for f in found]
                out.append(inc)
            return out

    # Operator actions of the scale-out runner (engine.dispatch.actions)

    def enqueue_action(self, shard: int, site: str, spec: dict[str, Any], at: float) -> int:
        """Queue an action for the owner of ``shard``; returns its id (actions apply in id order)."""
        with self.session() as s:
            row = OperatorActionRow(shard=shard, site=site, spec=spec, created_at=at, state="pending")
            s.add(row)
            s.flush()
            return int(row.id)

    def pending_actions(self, shards: Iterable[int], limit: int = 100) -> list[tuple[int, int, dict[str, Any]]]:
        """(id, shard, spec) of the actions still to apply for these shards, oldest first."""
        wanted = list(shards)
        if not wanted:
            return []
        with self.session() as s:
            q = (
                select(OperatorActionRow)
                .where(OperatorActionRow.state == "pending", OperatorActionRow.shard.in_(wanted))
                .order_by(OperatorActionRow.id)
                .limit(limit)
            )
            return [(r.id, r.shard, dict(r.spec)) for r in s.scalars(q)]

    def finish_action(self, action_id: int, state: str, result: dict[str, Any], at: float, stream: str) -> None:
        """Record an action's outcome, and the shard's action progress with it."""
        with self.session() as s:
            row = s.get(OperatorActionRow, action_id)
            if row is not None:
                row.state, row.result, row.finished_at = state, result, at
            self._save_progress(s, {stream: action_id})

    def action(self, action_id: int) -> tuple[str, dict[str, Any] | None]:
        """An action's state (pending, applied, refused) and result."""
        with self.session() as s:
            row = s.get(OperatorActionRow, action_id)
            if row is None:
                return "unknown", None
            return row.state, row.result

    # Silences

    def add_silence(self, spec: dict[str, Any]) -> Silence:
        spec = {**spec, "id": spec.get("id") or uuid.uuid4().hex[:12]}
        silence = Silence.model_validate(spec)
        with self.session() as s:
            s.add(SilenceRow(id=silence.id, spec=silence.model_dump(), created_at=time.time()))
        return silence

    def expire_silence(self, silence_id: str, at: float) -> bool:
        with self.session() as s:
            row = s.get(SilenceRow, silence_id)
            if row is None or row.expired_at is not None:
                return False
            row.expired_at = at
            spec = dict(row.spec)
            spec["ends_at"] = max(at, spec.get("starts_at", 0.0) + 1e-3)
            row.spec = spec
            return True

    def silences(self, include_expired: bool = False) -> list[Silence]:
        with self.session() as s:
            q = select(SilenceRow).order_by(SilenceRow.created_at)
            if not include_expired:
                q = q.where(SilenceRow.expired_at.is_(None))
            return [Silence.model_validate(r.spec) for r in s.scalars(q).all()]


def finding_json(f: FindingRow) -> dict[str, Any]:
    """A stored finding as in an incident event (docs/contracts.md: "Incident event")."""
    return {"detector": f.detector, "device": f.device, "ts": f.ts, "level": f.level, "score": f.score,
            "evidence": f.evidence}  # fmt: skip


def incident_json(r: IncidentRow) -> dict[str, Any]:
    return {
        "incident_id": r.id, "site": r.site, "hazard": r.hazard, "level": r.level, "state": r.state,
        "opened_at": r.opened_at, "updated_at": r.updated_at, "score": r.score, "confidence": r.confidence,
        "seq": r.seq, "tier": r.tier, "escalations": r.escalations, "acknowledged_by": r.acknowledged_by,
        "acknowledged_at": r.acknowledged_at, "assigned_to": r.assigned_to, "resolved_at": r.resolved_at,
        "silenced_by": r.silenced_by, "inhibited_by": r.inhibited_by, "route": r.route, "plan": r.plan,
        "dispatched": bool((r.escalation or {}).get("dispatched")),
    }  # fmt: skip
