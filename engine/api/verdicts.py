"""Operators' verdicts on camera alarms, and each camera's learned head (engine.flow.camera_learning).

- ``POST /api/incidents/{id}/verdict``: "false_alarm", "fire" or "smoke" on a camera incident, optionally
  with the region corrected on the snapshot (x, y, w, h as fractions); an operator's action like an
  acknowledgement: recorded in the incident's audit trail with the token holder's name. The camera learns
  at once; the answer says whether its new head was accepted, or why not.
- ``GET /api/cameras/{site}/{camera}/learning``: the camera's head version (0: shipped), its examples,
  its versions and recent verdicts.
- ``POST /api/cameras/{site}/{camera}/rollback``: use an earlier version again (0: the shipped head).

On ``gridwatch run`` the camera stage learns (``StageLearner``); on a scale-out, any worker takes a verdict or
a rollback and queues it for the worker that owns the camera's site (``engine.runners.faust_app.WorkerLearner``),
and answers a camera's status from the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.api.auth import TokenAuth
from engine.config.models import ApiToken
from engine.flow.camera_learning import Verdict, VerdictError
from engine.flow.cameras import CameraStage
from engine.ingest.bounds import Name, Text
from engine.ingest.verdict_file import parse_region
from engine.store.store import Store


class Learner(Protocol):
    """What the running engine offers: learning from a verdict and rolling a camera back (in a thread)."""

    def verdict(self, v: Verdict, findings: list[dict[str, Any]]) -> Awaitable[dict[str, Any]]: ...

    def rollback(self, key: str, version: int, actor: str) -> Awaitable[dict[str, Any]]: ...

    def status(self, key: str) -> dict[str, Any]: ...


class VerdictIn(BaseModel):
    """A verdict on a camera incident."""

    model_config = ConfigDict(extra="forbid")
    verdict: Literal["false_alarm", "fire", "smoke"] = Field(description="What the operator saw on the snapshot.")
    camera: Name | None = Field(
        None, max_length=128, description="The camera judged (default: the incident's newest camera finding's)."
    )
    region: list[float] | None = Field(
        None,
        description="The region judged, x, y, w, h as fractions of the snapshot (default: the alarm's own cells); "
        "a dismissed region may cover at most cameras.learning.max_dismissed_share of the frame.",
    )
    comment: Text = Field("", max_length=2000, description="Why; recorded in the audit trail.")

    @field_validator("region")
    @classmethod
    def _region(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return None
        region = parse_region(v)
        return list(region) if region is not None else None


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=0, description="The head version to use again (0: the shipped head).")
    comment: Text = Field("", max_length=2000)


def verdicts_router(store: Store, learner: Callable[[], Learner | None], auth: TokenAuth,
                    now: Callable[[], float]) -> APIRouter:  # fmt: skip
    viewer, operator = auth.require("viewer"), auth.require("operator")
    api = APIRouter(prefix="/api", tags=["camera learning"])

    def running() -> Learner:
        got = learner()
        if got is None:
            raise HTTPException(503, "no camera here learns from verdicts (no smoke_fire_onnx or thermal_hotspot "
                                     "detector, or cameras.learning.enabled false)")  # fmt: skip
        return got

    @api.post("/incidents/{incident_id}/verdict", responses={404: {"description": "Unknown"}, 422: {}, 503: {}})
    async def verdict(incident_id: str, body: VerdictIn, user: ApiToken = operator) -> dict[str, Any]:
        """Judge a camera incident: false alarm, real fire or real smoke; the camera learns from it."""
        inc = store.incident(incident_id)
        if inc is None:
            raise HTTPException(404, f"no incident {incident_id}")
        cams = [f for f in inc.get("findings", []) if (f.get("evidence") or {}).get("snapshot")]
        if body.camera is not None:
            cams = [f for f in cams if f["device"] == body.camera]
        if not cams:
            which = f"camera {body.camera}" if body.camera else "a camera"
            raise HTTPException(422, f"incident {incident_id} has no finding of {which} with a snapshot to judge")
        camera = max(cams, key=lambda f: f["ts"])["device"]
        region = tuple(body.region) if body.region else None
        v = Verdict(inc["site"], camera, body.verdict, now(), user.name, region, incident_id, body.comment)  # type: ignore[arg-type]
        try:
            result = await running().verdict(v, inc.get("findings", []))
        except VerdictError as exc:
            raise HTTPException(422, str(exc)) from None
        except TimeoutError as exc:  # scale-out: the camera's owner did not answer in time; still queued
            raise HTTPException(503, str(exc)) from exc
        detail = {"camera": camera, "verdict": body.verdict, "region": body.region, "comment": body.comment,
                  "learned": result.get("learned"), "version": result.get("version"),
                  "reason": result.get("reason", "")}  # fmt: skip
        store.record_verdict(incident_id, v.at, user.name, "verdict", detail)
        return result

    @api.get("/cameras/{site}/{camera}/learning")
    def learning(site: str, camera: str, user: ApiToken = viewer) -> dict[str, Any]:
        """The camera's head version (0: shipped), examples, versions and latest verdicts."""
        return running().status(f"{site}/{camera}")

    @api.post("/cameras/{site}/{camera}/rollback", responses={422: {"description": "No such version"}, 503: {}})
    async def rollback(site: str, camera: str, body: RollbackIn, user: ApiToken = operator) -> dict[str, Any]:
        """Use an earlier head version of the camera again (0: the shipped head)."""
        try:
            return await running().rollback(f"{site}/{camera}", body.version, user.name)
        except VerdictError as exc:
            raise HTTPException(422, str(exc)) from None
        except TimeoutError as exc:
            raise HTTPException(503, str(exc)) from exc

    return api


class StageLearner:
    """``Learner`` over the local runner's camera stage: learning runs in a thread, off the event loop."""

    def __init__(self, stage: CameraStage) -> None:
        self.stage = stage

    async def verdict(self, v: Verdict, findings: list[dict[str, Any]]) -> dict[str, Any]:
        return await asyncio.to_thread(self.stage.verdict, v, findings)

    async def rollback(self, key: str, version: int, actor: str) -> dict[str, Any]:
        assert self.stage.learning is not None
        return await asyncio.to_thread(self.stage.learning.rollback, key, version, actor, time.time())

    def status(self, key: str) -> dict[str, Any]:
        assert self.stage.learning is not None
        return self.stage.learning.status(key)
