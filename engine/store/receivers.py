"""What people-facing sinks (Apprise) sent each receiver: the marks that keep a retried event from reaching a
receiver twice, the counts behind the rate limits, the events held for a summary, and their audit lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.store.database import Database
from engine.store.tables import AuditRow, ReceiverMessageRow

SENDS = ("sent", "summary")  # the rows that were a message to the receiver (the rate limit counts them)


@dataclass(frozen=True)
class HeldEvent:
    """An event a receiver's rate limit held, waiting for a summary."""

    id: int
    incident_id: str
    level: str
    line: str
    at: float


class ReceiverMessages(Database):
    """The ``receiver_messages`` table and the audit lines that go with it.

    >>> from engine.store.store import Store
    >>> st = Store("sqlite://"); st.migrate()
    >>> st.receiver_mark("people", "town:t1", "i1.1.people", "i1", "sent", 10.0, "red", "RED landslide at S1")
    True
    >>> st.receiver_mark("people", "town:t1", "i1.1.people", "i1", "sent", 11.0, "red", "again")
    False
    >>> st.receivers_reached("people", "i1.1.people"), st.receiver_window("people", "town:t1", since=0.0)
    ({'town:t1'}, (1, 10.0))
    """

    def receivers_reached(self, sink: str, delivery: str) -> set[str]:
        """The receivers that already got (or hold for a summary) this event."""
        with self.session() as s:
            q = select(ReceiverMessageRow.receiver).where(
                ReceiverMessageRow.sink == sink, ReceiverMessageRow.delivery == delivery
            )
            return set(s.scalars(q))

    def receiver_window(self, sink: str, receiver: str, since: float) -> tuple[int, float]:
        """Messages the receiver got since ``since``, and when it got its last one (0 for never)."""
        with self.session() as s:
            mine = (
                ReceiverMessageRow.sink == sink,
                ReceiverMessageRow.receiver == receiver,
                ReceiverMessageRow.state.in_(SENDS),
            )
            n = s.scalar(select(func.count()).where(*mine, ReceiverMessageRow.at >= since))
            last = s.scalar(select(func.max(ReceiverMessageRow.at)).where(*mine))
            return int(n or 0), float(last or 0.0)

    def receiver_mark(
        self,
        sink: str,
        receiver: str,
        delivery: str,
        incident_id: str,
        state: str,
        at: float,
        level: str,
        line: str,
        audit: dict[str, Any] | None = None,
    ) -> bool:
        """Record what the receiver got of an event (``sent`` or ``held``) with its audit line, in one
        transaction. False when it was recorded before (a retry, or another worker got there first)."""
        try:
            with self.session() as s:
                s.execute(
                    insert(ReceiverMessageRow),
                    [{"sink": sink, "receiver": receiver, "delivery": delivery, "incident_id": incident_id,
                      "state": state, "at": at, "level": level, "line": line}],
                )  # fmt: skip
                if audit is not None:
                    s.execute(insert(AuditRow), [audit])
        except IntegrityError:
            return False
        return True

    def receiver_audit(self, lines: list[dict[str, Any]]) -> None:
        """Audit lines of deliveries that failed (nothing else to record)."""
        if lines:
            with self.session() as s:
                s.execute(insert(AuditRow), lines)

    def receivers_holding(self, sink: str) -> list[str]:
        """The receivers with events held for a summary."""
        with self.session() as s:
            q = select(ReceiverMessageRow.receiver).where(
                ReceiverMessageRow.sink == sink, ReceiverMessageRow.state == "held"
            )
            return sorted(set(s.scalars(q.distinct())))

    def receiver_claim(self, sink: str, receiver: str, summary: str) -> list[HeldEvent]:
        """Take the receiver's held events for the summary ``summary``: each is taken by one summary only, also
        when several workers look at once."""
        with self.session() as s:
            s.execute(
                update(ReceiverMessageRow)
                .where(
                    ReceiverMessageRow.sink == sink,
                    ReceiverMessageRow.receiver == receiver,
                    ReceiverMessageRow.state == "held",
                )
                .values(state="summarising", summary=summary)
            )
        with self.session() as s:
            rows = s.scalars(
                select(ReceiverMessageRow).where(ReceiverMessageRow.summary == summary).order_by(ReceiverMessageRow.id)
            ).all()
            return [HeldEvent(r.id, r.incident_id, r.level, r.line, r.at) for r in rows]

    def receiver_summarised(
        self, sink: str, receiver: str, summary: str, at: float, line: str, audit: list[dict[str, Any]]
    ) -> None:
        """The summary went out: its events are ``summarised``, the summary counts as a message, and the
        incidents' trails say so."""
        with self.session() as s:
            s.execute(
                update(ReceiverMessageRow).where(ReceiverMessageRow.summary == summary).values(state="summarised")
            )
            s.execute(
                insert(ReceiverMessageRow),
                [{"sink": sink, "receiver": receiver, "delivery": summary, "incident_id": "", "state": "summary",
                  "at": at, "level": "", "line": line, "summary": summary}],
            )  # fmt: skip
            if audit:
                s.execute(insert(AuditRow), audit)

    def receiver_unclaim(self, sink: str, summary: str | None = None) -> None:
        """Held again: the summary ``summary`` failed, or (None) every summary this sink had under way when
        the engine stopped."""
        with self.session() as s:
            q = update(ReceiverMessageRow).where(
                ReceiverMessageRow.sink == sink, ReceiverMessageRow.state == "summarising"
            )
            if summary is not None:
                q = q.where(ReceiverMessageRow.summary == summary)
            s.execute(q.values(state="held", summary=None))

    def receiver_purge(self, sink: str, before: float) -> int:
        """Forget what was sent, summarised or held before ``before`` (a receiver held that long is no longer in
        the config: its summary would never go)."""
        with self.session() as s:
            done = ReceiverMessageRow.state.in_(("sent", "summarised", "summary", "held"))
            result = s.execute(
                delete(ReceiverMessageRow).where(ReceiverMessageRow.sink == sink, done, ReceiverMessageRow.at < before)
            )
            return int(getattr(result, "rowcount", 0) or 0)
