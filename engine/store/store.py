"""The incident store: incidents, summarised findings, the audit trail, silences and the sinks' outbox.

One transaction per batch of notifications: an incident's new state, its audit lines and its outbox rows
are written together, so a sink that is down delays delivery and loses nothing, and a crash between
"decided" and "sent" leaves the event in the outbox to send on restart.

Each part lives in its own module over one session factory (``database.Database``): ``incidents``
(writes by the dispatcher, reads by the API), ``outbox`` (delivery and retention), ``silences`` and
``actions`` (the scale-out's operator actions), ``receivers`` (what people-facing sinks sent each receiver),
``verdicts`` (operators' verdicts on camera alarms, in the audit trail), ``camera_heads`` (what each camera
learned from them, for the scale-out's workers).
``Store`` is all of them on one database.
"""

from __future__ import annotations

from engine.store.actions import OperatorActions
from engine.store.camera_heads import CameraHeads
from engine.store.database import Database, alembic_config, make_engine
from engine.store.incidents import IncidentRecords, Notification, finding_json, incident_json
from engine.store.outbox import Outbox, OutboxItem
from engine.store.receivers import ReceiverMessages
from engine.store.silences import Silences
from engine.store.verdicts import VerdictRecords

__all__ = [
    "Database", "Notification", "OutboxItem", "Store", "alembic_config", "finding_json", "incident_json",
    "make_engine",
]  # fmt: skip


class Store(IncidentRecords, Outbox, OperatorActions, Silences, ReceiverMessages, VerdictRecords, CameraHeads):
    """SQLite by default, PostgreSQL by URL; ``migrate()`` brings the schema to the latest revision.

    >>> st = Store("sqlite://")
    >>> st.migrate()
    >>> st.list_incidents()
    []
    """
