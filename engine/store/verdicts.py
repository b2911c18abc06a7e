"""Operators' verdicts on camera alarms in the incident's audit trail (what a camera learned from, and who)."""

from __future__ import annotations

from typing import Any

from engine.store.database import Database
from engine.store.tables import AuditRow, IncidentRow


class VerdictRecords(Database):
    """Verdicts and head rollbacks as audit lines of the incident they judged."""

    def record_verdict(self, incident_id: str, at: float, actor: str, action: str, detail: dict[str, Any]) -> bool:
        """One audit line (``verdict`` or ``rollback``) on ``incident_id``; False when there is no such incident."""
        with self.session() as s:
            row = s.get(IncidentRow, incident_id)
            if row is None:
                return False
            line = {"level": row.level, "state": row.state, **detail}
            s.add(AuditRow(incident_id=incident_id, at=at, actor=actor, action=action, detail=line))
            return True
