"""The store's tables. Change them only with a new Alembic revision in ``migrations/versions``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class IncidentRow(Base):
    """An incident as it stands now (the latest event), plus who acknowledged, assigned and resolved it."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    site: Mapped[str] = mapped_column(String(128), index=True)
    hazard: Mapped[str] = mapped_column(String(64), index=True)
    level: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), index=True)
    opened_at: Mapped[float] = mapped_column(Float, index=True)
    updated_at: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    confidence: Mapped[str] = mapped_column(String(16), default="normal")
    seq: Mapped[int] = mapped_column(Integer, default=0)
    tier: Mapped[str | None] = mapped_column(String(160), nullable=True)
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    acknowledged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    assigned_to: Mapped[str | None] = mapped_column(String(128), nullable=True)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    silenced_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    inhibited_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    route: Mapped[list[str]] = mapped_column(JSON, default=list)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What a restarted engine needs to take an open incident up where it was (revision 0002).
    group_key: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    last_finding_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    escalation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    level_seen: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    """The last finding time at each level: when the level may fall, for an engine taking the incident up."""


class FindingRow(Base):
    """Findings summarised per incident, detector and device: the latest one and how many there were."""

    __tablename__ = "incident_findings"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    detector: Mapped[str] = mapped_column(String(128), primary_key=True)
    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(8))
    score: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditRow(Base):
    """One line of an incident's audit trail: a state change, a notification, an escalation, an action."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_incident", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SilenceRow(Base):
    """A silence created through the API (config silences live in the config)."""

    __tablename__ = "silences"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    expired_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class OutboxRow(Base):
    """An event waiting for (or done with) delivery to one sink; delivered in id order per sink."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "sink", "delivered_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sink: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    gave_up: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    shard: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The Kafka partition of the incident's site (0 under the local runner): its owner delivers it."""


class StreamProgressRow(Base):
    """The last stream record (topic/partition → offset) whose effects are in the store.

    Written in the same transaction as the incidents and outbox rows it caused, so a Faust worker that
    replays records after a crash skips those already applied: exactly once from the findings topic to
    the store and the outbox.
    """

    __tablename__ = "stream_progress"

    stream: Mapped[str] = mapped_column(String(200), primary_key=True)
    applied: Mapped[int] = mapped_column(BigInteger)


class OperatorActionRow(Base):
    """An operator action waiting for (or applied by) the worker that owns its incident's partition."""

    __tablename__ = "operator_actions"
    __table_args__ = (Index("ix_operator_actions_pending", "shard", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shard: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, applied, refused
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class ReceiverMessageRow(Base):
    """What one receiver of a people-facing sink (Apprise) got of one outbox event: ``sent`` on its own,
    ``held`` by the receiver's rate limit, ``summarised`` once a summary message carried it; a summary
    itself is a ``summary`` row. A retried event skips the receivers it already reached, and the rate
    limit counts the rows of its window, across restarts and workers."""

    __tablename__ = "receiver_messages"
    __table_args__ = (
        Index("ix_receiver_messages_delivery", "sink", "receiver", "delivery", unique=True),
        Index("ix_receiver_messages_state", "sink", "receiver", "state", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sink: Mapped[str] = mapped_column(String(64))
    receiver: Mapped[str] = mapped_column(String(200))
    delivery: Mapped[str] = mapped_column(String(200))
    incident_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))  # sent, held, summarising, summarised, summary
    at: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(8))
    line: Mapped[str] = mapped_column(Text)  # the event in one line, for a summary
    summary: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the summary that carries it


class CameraHeadRow(Base):
    """One camera's learned state (engine.flow.camera_learning), kept in the shared store on a scale-out so that
    the worker that next owns the camera's site takes it up: ``heads`` is the document a local engine keeps as
    ``heads.json`` (versions, current version, hot spots, log), ``examples`` its labelled cells (npz bytes)."""

    __tablename__ = "camera_heads"

    site: Mapped[str] = mapped_column(String(128), primary_key=True)
    camera: Mapped[str] = mapped_column(String(128), primary_key=True)
    heads: Mapped[dict[str, Any]] = mapped_column(JSON)
    examples: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float)
