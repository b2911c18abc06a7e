"""The grid reports API: a person files what they saw; reports and the completion rate per tier are read.

A report goes to the running engine as an ``OperatorAction`` of kind ``report`` (``act``), like an
operator's action: the local runner applies it at once, a scale-out worker queues it for the owner of the
site's partition. Any token may file one (``reporter`` and up); operators may file up to red.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from engine.api.auth import TokenAuth
from engine.api.incidents import Act
from engine.config.models import ApiToken, EngineConfig
from engine.dispatch.actions import OperatorAction
from engine.incidents.reports import GridReport, ReportError, ReportQuota, accept
from engine.store.store import Store

PHOTO_NAME = re.compile(r"^[0-9a-f]{16}\.(jpg|png)$")


class ReportOut(BaseModel):
    """The report as filed: where and how it went, and the incident events it caused."""

    report_id: str
    site: str
    hazard: str
    level: str
    incident_id: str | None
    events: list[dict[str, Any]] = Field(
        description="The incident events the report caused (operators and viewers only: they hold other people's "
        "reports, a reporter's answer has none)."
    )
    note: str | None = Field(None, description="What was not kept (a photo over the quota).")


def reports_router(
    store: Store,
    act: Act,
    auth: TokenAuth,
    config: Callable[[], EngineConfig],
    now: Callable[[], float],
    photo_dir: Path | None,
    quota: ReportQuota | None = None,
) -> APIRouter:
    reporter, viewer = auth.require("reporter"), auth.require("viewer")
    viewer_or_query = auth.require("viewer", allow_query=True)
    api = APIRouter(prefix="/api", tags=["grid reports"])

    @api.post("/reports", response_model=ReportOut, status_code=201, responses={422: {"description": "Refused"}})
    async def file_report(body: GridReport, user: ApiToken = reporter) -> ReportOut:
        """File a grid report: it opens or joins the site's incident for the category's hazard."""
        if body.reporter is not None and body.reporter != user.name and user.role != "operator":
            raise HTTPException(
                422, f"reporter: a report is filed under its token's name ({user.name!r}); leave `reporter` out"
            )
        try:
            by = body.reporter or user.name
            # on a thread: a photo takes up to a second to check, and on the loop it held up every request
            spec = await asyncio.to_thread(accept, body, config(), by, "api", now(), photo_dir, user.role == "operator",
                                           quota)  # fmt: skip
        except ReportError as exc:
            raise HTTPException(429 if exc.reason == "rate_limited" else 422, str(exc)) from exc
        spec["evidence"]["token"] = user.name
        notes = await act(OperatorAction(kind="report", actor=user.name, report=spec))
        events = [n.outgoing() for n in notes] if user.role != "reporter" else []
        incident = events[0]["incident_id"] if events else None
        if incident is None:  # it joined an incident still pending: find it in the store
            found = store.list_incidents(None, spec["hazard"], spec["site"], open_only=True, limit=1)
            incident = found[0]["incident_id"] if found else None
        return ReportOut(
            report_id=spec["evidence"]["report_id"], site=spec["site"], hazard=spec["hazard"], level=spec["level"],
            incident_id=incident, events=events, note=spec["evidence"].get("photo_refused"),
        )  # fmt: skip

    @api.get("/reports/categories")
    def categories(user: ApiToken = reporter) -> dict[str, str]:
        """What can be reported: each category and the hazard its incident is filed under."""
        return dict(config().reports.categories)

    @api.get("/reports")
    def list_reports(
        user: ApiToken = viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        """Grid reports, newest first, each with its incident's state and tier."""
        return store.grid_reports(limit)

    @api.get("/reports/completion")
    def completion(user: ApiToken = viewer) -> dict[str, dict[str, Any]]:
        """Per tier: the reported cases it holds (now, or when they were resolved) and the share resolved (the
        gauge ``gridwatch_report_completion_ratio``, read from the store at each scrape of /metrics)."""
        return store.report_completion()

    @api.get("/reports/photos/{name}", response_class=FileResponse)
    def photo(name: str, user: ApiToken = viewer_or_query) -> FileResponse:
        """A report's photo. The token may come as ``?token=`` for <img> tags."""
        if photo_dir is None or not PHOTO_NAME.match(name) or not (photo_dir / name).is_file():
            raise HTTPException(404, "no such photo")
        return FileResponse(photo_dir / name, media_type="image/jpeg" if name.endswith(".jpg") else "image/png")

    return api
