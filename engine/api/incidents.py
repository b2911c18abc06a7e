"""The incidents API: list, show, acknowledge, assign, resolve, one-key dispatch, silences.

Reads come from the store (every incident, open or long resolved); actions go to the running engine as
``OperatorAction`` records (``act``): the local runner applies them under the same lock as the pipeline
step, the scale-out workers queue them in the shared store for the worker that owns the incident's
partition. They are recorded in the audit trail with the token holder's name as the actor. Tokens come
from the config (``api.tokens``) with a role: ``viewer`` reads, ``operator`` also acts.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.api.auth import TokenAuth
from engine.config.models import ApiToken
from engine.dispatch.actions import OperatorAction
from engine.incidents.silences import Silence
from engine.incidents.tracker import IncidentError
from engine.ingest.bounds import Name, Text
from engine.store.store import Notification, Store

Act = Callable[[OperatorAction], Awaitable[list[Notification]]]


class Incident(BaseModel):
    """An incident as the store holds it."""

    model_config = ConfigDict(extra="allow")
    incident_id: str
    site: str
    hazard: str
    level: Literal["blue", "yellow", "orange", "red"]
    state: Literal["pending", "firing", "acknowledged", "resolved"]
    opened_at: float
    updated_at: float
    score: float
    confidence: str
    tier: str | None = None
    escalations: int = 0
    acknowledged_by: str | None = None
    assigned_to: str | None = None
    reported: bool = Field(False, description="A person reported it (a grid report): only a person resolves it.")


class FindingOut(BaseModel):
    detector: str
    device: str
    ts: float
    level: str
    score: float
    evidence: dict[str, Any]


class AuditLine(BaseModel):
    at: float
    actor: str
    action: str
    detail: dict[str, Any]


class IncidentDetail(Incident):
    """An incident with every finding that contributed and its audit trail."""

    findings: list[FindingOut]
    audit: list[AuditLine]
    route: list[str]
    plan: dict[str, Any]


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Text = Field("", max_length=2000, description="Why; recorded in the audit trail.")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Name = Field(min_length=1, max_length=128, description="Who takes the incident on (at most 128 characters).")


class ActionOut(BaseModel):
    """What the action caused: the events recorded, with their receivers."""

    incident_id: str
    events: list[dict[str, Any]]


MAX_SILENCE_S = 30 * 86400.0


class SilenceIn(BaseModel):
    """A new silence: matchers, and a fixed window or a recurring one (``cron`` + ``duration_s``)."""

    model_config = ConfigDict(extra="forbid")
    site: Name | None = Field(None, max_length=128)
    hazard: Name | None = Field(None, max_length=64)
    device: Name | None = Field(None, max_length=128)
    level: Literal["blue", "yellow", "orange", "red"] | None = None
    starts_at: float | None = Field(None, description="Epoch seconds; default now (the engine clock).")
    ends_at: float | None = None
    for_s: float | None = Field(None, gt=0, description="Instead of `ends_at`: active this long from `starts_at`.")
    cron: str | None = None
    duration_s: float | None = None
    timezone: Name = Field("UTC", max_length=64)
    comment: Text = Field("", max_length=2000)

    @model_validator(mode="after")
    def _bounded(self) -> SilenceIn:
        """A silence names what it mutes (``{}`` or ``{"site": "*"}`` would mute every alert of the city) and
        ends: a silence made in a hurry at 3 a.m. must not mute a RED next month."""
        matchers = [m for m in (self.site, self.hazard, self.device) if m is not None]
        if any("[" in m or "]" in m for m in matchers):
            raise ValueError("silence matchers take `*` and `?` as wildcards only (a `[!~]*` set matched every site)")
        named = [m for m in matchers if len(m.replace("*", "").replace("?", "")) >= 2]
        if not named:
            raise ValueError(
                "a silence needs at least one of site, hazard, device with two or more characters that are not "
                "wildcards (`{}`, `*`, `S*` or a level alone would mute the whole city; a city-wide silence belongs "
                "in the config, reviewed)"
            )
        times = (self.starts_at, self.ends_at, self.for_s, self.duration_s)
        if any(t is not None and not math.isfinite(t) for t in times):
            raise ValueError("starts_at, ends_at, for_s and duration_s are finite numbers")
        if self.ends_at is None and self.for_s is None and self.cron is None:
            raise ValueError("a silence needs an end: `ends_at`, `for_s`, or a recurring window (`cron` + "
                             "`duration_s`); a silence for ever belongs in the config, reviewed")  # fmt: skip
        length = self.for_s if self.for_s is not None else None
        if self.ends_at is not None and self.starts_at is not None:
            length = self.ends_at - self.starts_at
        if length is not None and length > MAX_SILENCE_S:
            raise ValueError(f"a silence made through the API lasts at most {MAX_SILENCE_S / 86400:.0f} days")
        return self


def incidents_router(
    store: Store,
    act: Act,
    auth: TokenAuth,
    now: Callable[[], float],
    config_silences: Callable[[], list[Silence]] = list,
) -> APIRouter:
    viewer, operator = auth.require("viewer"), auth.require("operator")
    anyone = auth.require("reporter")
    api = APIRouter(prefix="/api", tags=["incidents"])

    async def run(action: OperatorAction) -> ActionOut:
        incident_id = action.incident_id
        if store.incident(incident_id) is None:
            raise HTTPException(404, f"no incident {incident_id}")
        try:
            notes = await act(action)
        except IncidentError as exc:
            if store.incident(incident_id) is None:
                raise HTTPException(404, f"no incident {incident_id}") from exc
            raise HTTPException(409, str(exc)) from exc
        except TimeoutError as exc:  # scale-out: the partition's owner did not answer in time; still queued
            raise HTTPException(503, str(exc)) from exc
        events = [n.outgoing() for n in notes]
        return ActionOut(incident_id=incident_id, events=events)

    @api.get("/me")
    def me(user: ApiToken = anyone) -> dict[str, str]:
        """Who this token is and its role (the operator page hides what a viewer cannot do)."""
        return {"name": user.name, "role": user.role}

    @api.get("/incidents", response_model=list[Incident])
    def list_incidents(
        user: ApiToken = viewer,
        state: Annotated[str | None, Query(description="pending, firing, acknowledged, resolved, or open")] = None,
        hazard: str | None = None,
        site: str | None = None,
        level: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Incidents, newest first."""
        if state == "open":
            return store.list_incidents(None, hazard, site, level, open_only=True, limit=limit)
        return store.list_incidents(state, hazard, site, level, limit=limit)

    @api.get("/incidents/{incident_id}", response_model=IncidentDetail, responses={404: {"description": "Unknown"}})
    def show(incident_id: str, user: ApiToken = viewer) -> dict[str, Any]:
        """One incident with its findings and audit trail."""
        inc = store.incident(incident_id)
        if inc is None:
            raise HTTPException(404, f"no incident {incident_id}")
        return inc

    conflict: dict[int | str, dict[str, Any]] = {
        404: {"description": "Unknown incident"},
        409: {"description": "Not open"},
    }

    @api.post("/incidents/{incident_id}/ack", response_model=ActionOut, responses=conflict)
    async def acknowledge(incident_id: str, body: ActionIn, user: ApiToken = operator) -> ActionOut:
        """Acknowledge a firing incident: escalation stops; everyone notified so far hears who took it."""
        return await run(OperatorAction(kind="ack", incident_id=incident_id, actor=user.name, comment=body.comment))

    @api.post("/incidents/{incident_id}/assign", response_model=ActionOut, responses=conflict)
    async def assign(incident_id: str, body: AssignIn, user: ApiToken = operator) -> ActionOut:
        """Assign an open incident to a person or team."""
        return await run(OperatorAction(kind="assign", incident_id=incident_id, actor=user.name, to=body.to))

    @api.post("/incidents/{incident_id}/resolve", response_model=ActionOut, responses=conflict)
    async def resolve(incident_id: str, body: ActionIn, user: ApiToken = operator) -> ActionOut:
        """Resolve an open incident by hand."""
        return await run(OperatorAction(kind="resolve", incident_id=incident_id, actor=user.name, comment=body.comment))

    @api.post("/incidents/{incident_id}/dispatch", response_model=ActionOut, responses=conflict)
    async def dispatch(incident_id: str, user: ApiToken = operator) -> ActionOut:
        """One-key dispatch: send the incident with its response plan to every receiver of the plan."""
        return await run(OperatorAction(kind="dispatch", incident_id=incident_id, actor=user.name))

    @api.get("/silences", response_model=list[Silence])
    def list_silences(user: ApiToken = viewer, expired: bool = False) -> list[Silence]:
        """Every silence: the config's (``created_by: config``, changed only in the config file), then those
        created through the API."""
        return [*config_silences(), *store.silences(include_expired=expired)]

    @api.post("/silences", response_model=Silence, status_code=201, responses={422: {"description": "Invalid"}})
    async def create_silence(body: SilenceIn, user: ApiToken = operator) -> Silence:
        """Create a silence; matching incidents are still recorded, not notified."""
        spec = body.model_dump()
        spec["starts_at"] = spec["starts_at"] if spec["starts_at"] is not None else now()
        for_s = spec.pop("for_s")
        if for_s is not None:
            spec["ends_at"] = spec["starts_at"] + for_s
        if spec["ends_at"] is not None and spec["ends_at"] - spec["starts_at"] > MAX_SILENCE_S:
            raise HTTPException(422, f"a silence made through the API lasts at most {MAX_SILENCE_S / 86400:.0f} days")
        try:
            Silence.model_validate({**spec, "id": "check", "created_by": user.name})
        except ValidationError as exc:
            raise HTTPException(422, "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
        silence = store.add_silence({**spec, "created_by": user.name})
        await act(REFRESH_SILENCES)
        return silence

    @api.delete("/silences/{silence_id}", status_code=204, responses={404: {"description": "Unknown"}})
    async def expire_silence(silence_id: str, user: ApiToken = operator) -> None:
        """Expire a silence now."""
        if not store.expire_silence(silence_id, now()):
            raise HTTPException(404, f"no active silence {silence_id}")
        await act(REFRESH_SILENCES)

    return api


REFRESH_SILENCES = OperatorAction(kind="refresh_silences")
