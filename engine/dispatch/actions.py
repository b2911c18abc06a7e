"""Operator actions as records: what an operator asked for, applied by whoever holds the incident.

The local runner applies an action at once; the scale-out runner writes it to the shared store, keyed by
the site's partition, and the worker that owns the partition applies its partition's actions in order
(``Store.enqueue_action`` … ``finish_action``), writing the action's id as the partition's action progress
in the same transaction as the notifications it causes, so an action is applied once even when a worker
dies half-way.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.dispatch.dispatcher import Dispatcher
from engine.incidents.reports import finding_of
from engine.store.store import Notification


class OperatorAction(BaseModel):
    """One operator action on one incident (``refresh_silences``: re-read the store's silences; ``report``: a
    person's grid report, on the site it names rather than an incident)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ack", "assign", "resolve", "dispatch", "report", "refresh_silences"]
    incident_id: str = ""
    actor: str = ""
    comment: str = Field("", max_length=2000)
    to: str = Field("", max_length=128, description="Whom `assign` gives the incident to.")
    report: dict[str, Any] | None = Field(None, description="`report`: the grid report's finding (reports.accept).")


def apply_action(dispatcher: Dispatcher, action: OperatorAction, now: float) -> list[Notification]:
    """Apply an action with the dispatcher at ``now``; ``IncidentError`` when the incident does not allow it."""
    a = action
    if a.kind == "ack":
        return dispatcher.acknowledge(a.incident_id, a.actor, now, a.comment)
    if a.kind == "assign":
        return dispatcher.assign(a.incident_id, a.to, a.actor, now)
    if a.kind == "resolve":
        return dispatcher.resolve(a.incident_id, a.actor, now, a.comment)
    if a.kind == "dispatch":
        return dispatcher.dispatch(a.incident_id, a.actor, now)
    if a.kind == "report":
        assert a.report is not None
        return dispatcher.report(finding_of(a.report, now), now)
    dispatcher.refresh_silences()
    return []
