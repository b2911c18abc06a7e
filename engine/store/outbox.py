"""The sinks' outbox in the store: events waiting for delivery, retries, and the purge of what no one
needs any more."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, select, update

from engine.store.database import Database
from engine.store.tables import (
    AuditRow,
    FindingRow,
    IncidentRow,
    OutboxRow,
)


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


class Outbox(Database):
    """Undelivered events per sink, oldest first; delivery and failure marks; retention."""

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
