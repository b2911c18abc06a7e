"""Operator actions of the scale-out runner in the store: queued by any worker, applied in order by the
worker that owns the site's partition (engine.dispatch.actions)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from engine.store.database import Database
from engine.store.tables import (
    OperatorActionRow,
)


class OperatorActions(Database):
    """The queue of operator actions per shard, with their outcome."""

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
