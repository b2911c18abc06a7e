"""The operator page: its static files, the site map's data, device charts and the live event stream."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from engine.api.auth import TokenAuth
from engine.api.charts import device_chart
from engine.api.live import EventHub
from engine.api.peers import PEER_HEADER, checked_answer, sign, trusted_host
from engine.config.models import ApiToken, EngineConfig
from engine.core.devices import DeviceIndex
from engine.core.history import ReadingHistory
from engine.core.levels import Level
from engine.store.store import Store

STATIC = Path(__file__).parent / "static"
SNAPSHOT_NAME = re.compile(r"^\d{1,16}\.jpg$")
FORWARDED = "X-Gridwatch-Forwarded"  # a request one worker passed to another: never passed on again
logger = logging.getLogger(__name__)
PASSED_BACK = ("content-type", "retry-after", "cache-control", "x-gridwatch-frame-ts")  # of the owner's answer

Held = tuple[DeviceIndex, ReadingHistory]


@dataclass
class Readings:
    """Where the page's device charts and data clock come from.

    ``of_site`` gives the history this engine keeps of a site's devices; on a scale-out worker whose
    partitions do not hold the site, the API URL of the worker whose do (the chart is fetched from it), or
    None while no worker holds it (a rebalance). ``clock`` gives the newest reading's own time and when it
    arrived (None before the first).
    """

    of_site: Callable[[str], Held | str | None]
    clock: Callable[[], tuple[float | None, float | None]]

    @classmethod
    def kept(cls, devices: DeviceIndex, history: ReadingHistory) -> Readings:
        """Every site's readings in one history (``gridwatch run``)."""
        return cls(lambda _site: (devices, history), lambda: (history.last_reading_ts, history.last_received_at))


def operator_router(
    store: Store,
    config: Callable[[], EngineConfig],
    readings: Readings,
    hub: EventHub,
    auth: TokenAuth,
    snapshot_dir: Path | None = None,
    latest_frame: Callable[[str, str], tuple[float, bytes, str] | None] | None = None,
) -> APIRouter:
    viewer = auth.require("viewer")
    viewer_or_query = auth.require("viewer", allow_query=True)
    api = APIRouter(tags=["operator page"])
    peers = httpx.Client(timeout=10.0, follow_redirects=False)

    @api.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @api.get("/api/sites")
    def sites(user: ApiToken = viewer) -> list[dict[str, Any]]:
        """Sites with coordinates, hierarchy and devices, and the worst level of their open incidents."""
        worst: dict[str, tuple[Level, int, str | None]] = {}
        for inc in store.list_incidents(open_only=True, limit=100_000):
            level, n, hazard = worst.get(inc["site"], (Level.NONE, 0, None))
            this = Level.from_name(inc["level"])
            worst[inc["site"]] = (max(level, this), n + 1, inc["hazard"] if this > level else hazard)
        cfg = config()
        cameras: dict[str, list[dict[str, str]]] = {}
        for c in cfg.cameras.devices:
            cameras.setdefault(c.site, []).append({"id": c.id, "kind": c.kind})
        out = []
        for s in cfg.sites:
            level, n, hazard = worst.get(s.id, (Level.NONE, 0, None))
            out.append(
                {
                    "id": s.id, "name": s.name or s.id, "lat": s.lat, "lon": s.lon, "grid": s.grid, "town": s.town,
                    "district": s.district, "worst": level.label if level else None, "hazard": hazard, "open": n,
                    "devices": [{"id": d.id, "kind": d.kind, "metrics": d.metrics} for d in s.devices],
                    "cameras": cameras.get(s.id, []),
                }
            )  # fmt: skip
        return out

    def here_or_owner(site: str, request: Request) -> Held | Response:
        """This engine's history of the site's devices, or (a scale-out worker whose partitions do not hold
        the site) the answer of the worker whose do to the same request, with the asker's token: a site's
        readings, camera frames and snapshots are with the worker of its partition."""
        held = readings.of_site(site)
        if held is None or (isinstance(held, str) and request.headers.get(FORWARDED)):
            raise HTTPException(503, f"{site}'s partition is moving between workers; try again in a few seconds",
                                headers={"Retry-After": "2"})  # fmt: skip
        if not isinstance(held, str):
            return held
        api = config().api
        if not api.peer_secret:
            raise HTTPException(404, f"{site} is held by another worker and api.peer_secret is not set: open that "
                                     "worker's page, or give every worker the same api.peer_secret")  # fmt: skip
        if not trusted_host(held, api.peer_hosts):
            logger.warning("not forwarding to %s: it is not in api.peer_hosts", held)
            raise HTTPException(503, f"the worker holding {site} advertises a host not in api.peer_hosts")
        path = request.url.path
        headers = {FORWARDED: "1", PEER_HEADER: sign(api.peer_secret, path)}  # never the asker's token
        params = httpx.QueryParams([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
        try:
            res = peers.get(held.rstrip("/") + path, params=params, headers=headers)
            media = checked_answer(res.content, res.headers.get("content-type", ""))
        except httpx.HTTPError as exc:
            raise HTTPException(503, f"the worker holding {site} ({held}) does not answer: {exc}") from None
        except ValueError as exc:
            logger.warning("the worker at %s answered %s with something else than asked: %s", held, path, exc)
            raise HTTPException(502, f"the worker holding {site} answered with something else than asked") from None
        passed = {k: v for k, v in res.headers.items() if k.lower() in PASSED_BACK and k.lower() != "content-type"}
        return Response(res.content, res.status_code, headers=passed, media_type=media)

    @api.get("/api/cameras/{site}/{camera}/latest", response_class=Response)
    def latest(site: str, camera: str, request: Request, user: ApiToken = viewer_or_query) -> Response:
        """A camera's newest frame (visible as sent; thermal as a false-colour PNG of its °C), with its capture
        time in ``X-Gridwatch-Frame-Ts``. The token may come as ``?token=`` for <img> tags."""
        owner = here_or_owner(site, request)
        if isinstance(owner, Response):
            return owner
        got = latest_frame(site, camera) if latest_frame is not None else None
        if got is None:
            raise HTTPException(404, f"no frame from {site}/{camera} yet")
        ts, data, media = got
        return Response(data, media_type=media, headers={"X-Gridwatch-Frame-Ts": repr(ts), "Cache-Control": "no-store"})

    @api.get("/api/basemap")
    def basemap(user: ApiToken = viewer) -> Response:
        """The map's background layers (``api.basemap``: a GeoJSON FeatureCollection), or an empty one."""
        path = cfg_basemap(config())
        if path is None:
            return Response(b'{"type": "FeatureCollection", "features": []}', media_type="application/geo+json")
        return FileResponse(path, media_type="application/geo+json")

    @api.get("/api/status")
    def status(user: ApiToken = viewer) -> dict[str, Any]:
        """When data last came in: the newest reading's own time and the wall-clock time it arrived (both
        null until the first reading; on a scale-out worker, of its own partitions); and the city's time
        zone, in which the page shows every time."""
        last_ts, received = readings.clock()
        return {
            "last_reading_ts": last_ts,
            "last_received_at": received,
            "now": time.time(),
            "timezone": config().timezone,
        }

    @api.get("/api/sites/{site}/devices/{device}/chart", response_model=None)
    def chart(
        site: str, device: str, request: Request, metric: str | None = None, user: ApiToken = viewer
    ) -> dict[str, Any] | Response:
        """The device's recent readings of one metric with the thresholds its detectors apply. On a
        scale-out, any worker answers: the chart comes from the worker whose partition holds the site."""
        held = here_or_owner(site, request)
        if isinstance(held, Response):
            return held
        devices, history = held
        slot = devices.find(site, device)
        if slot is None:
            raise HTTPException(404, f"no readings from {site}/{device}")
        metrics = history.metrics_of(slot)
        if not metrics:
            raise HTTPException(404, f"no readings kept for {site}/{device} (api.history_points is 0?)")
        chosen = metric or metrics[0]
        if chosen not in metrics:
            raise HTTPException(404, f"{site}/{device} has no {chosen} readings; it has {', '.join(metrics)}")
        ts, values = history.series(slot, chosen)
        found = [
            f
            for inc in store.list_incidents(site=site, open_only=True, limit=100)
            for f in (store.incident(inc["incident_id"]) or {}).get("findings", [])
            if f["device"] == device
        ]
        chart = device_chart(chosen, ts, values, config().detectors, found)
        return {"site": site, "device": device, "metrics": metrics, **chart}

    @api.get("/api/snapshots/{site}/{camera}/{name}", response_class=FileResponse)
    def snapshot(site: str, camera: str, name: str, request: Request, user: ApiToken = viewer_or_query) -> Response:
        """The frame behind a camera finding (JPEG), from the worker whose partition holds the site on a
        scale-out. The token may come as ``?token=`` for <img> tags."""
        if snapshot_dir is None or not SNAPSHOT_NAME.match(name) or {site, camera} & {"", ".", ".."}:
            raise HTTPException(404, "no such snapshot")
        owner = here_or_owner(site, request)
        if isinstance(owner, Response):
            return owner
        path = snapshot_dir / site / camera / name
        if not path.is_file():
            raise HTTPException(404, "no such snapshot")
        return FileResponse(path, media_type="image/jpeg")

    @api.get("/api/stream")
    async def stream(user: ApiToken = viewer_or_query) -> StreamingResponse:
        """Server-sent events: every incident notification as it is recorded (``event: incident``).

        Browsers' EventSource cannot send headers: the token may come as ``?token=``.
        """
        return StreamingResponse(
            hub.stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return api


def cfg_basemap(cfg: EngineConfig) -> Path | None:
    """The configured basemap file, if any (relative paths were resolved against the config's folder)."""
    return Path(cfg.api.basemap) if cfg.api.basemap else None


def mount_static(app: Any) -> None:
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")
