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
from engine.config.models import TIERS, ApiToken, EngineConfig
from engine.core.devices import DeviceIndex
from engine.core.history import ReadingHistory
from engine.core.levels import Level
from engine.dispatch.routing import Router
from engine.incidents.inhibition import inhibited_by
from engine.incidents.silences import Silence, silenced_by
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
    reporter = auth.require("reporter")
    api = APIRouter(tags=["operator page"])
    peers = httpx.Client(timeout=10.0, follow_redirects=False)

    @api.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @api.get("/api/report-sites")
    def report_sites(user: ApiToken = reporter) -> list[dict[str, Any]]:
        """The sites a report can be filed at, by name (a reporter whose phone gives no position chooses one)."""
        return [{"id": s.id, "name": s.name or s.id, "town": s.town, "grid": s.grid} for s in config().sites]

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

    routers: dict[int, Router] = {}

    def router_of(cfg: EngineConfig) -> Router:
        """The config's router, built once per (re)loaded config (a city's sites make it costly)."""
        if id(cfg) not in routers:
            routers.clear()
            routers[id(cfg)] = Router(cfg)
        return routers[id(cfg)]

    @api.get("/api/board")
    def board(user: ApiToken = viewer) -> dict[str, Any]:
        """What the board shows beside each open incident, by id: the time to act (the newest failure-time
        forecast, the acknowledgement deadline before the next escalation, the route's deadline to resolve),
        confirmation by independent sources (fusion findings marked ``confirmed``), and what mutes it now (an
        active silence, including one made a moment ago, or an inhibiting incident)."""
        cfg = config()
        now = time.time()
        router = router_of(cfg)
        silences = [*cfg.silences, *store.silences()]
        open_ = store.open_incidents()
        firing = [(i["site"], i["hazard"], i["level"]) for i in open_ if i["state"] != "pending"]
        out: dict[str, Any] = {}
        for inc in open_:
            out[inc["incident_id"]] = board_entry(inc, router, silences, cfg, firing, now)
        return {"now": now, "incidents": out}

    @api.get("/api/silence-preview")
    def silence_preview(
        site: str | None = None,
        hazard: str | None = None,
        device: str | None = None,
        level: str | None = None,
        user: ApiToken = viewer,
    ) -> dict[str, Any]:
        """The open incidents a silence with these matchers would mute now, before it is made."""
        try:
            probe = Silence(id="preview", site=site or None, hazard=hazard or None, device=device or None,
                            level=level or None)  # fmt: skip
        except ValueError as exc:
            raise HTTPException(422, str(exc).splitlines()[-1]) from None
        named = [v for v in (site, hazard, device, level) if v and v.strip("*?")]
        matched = []
        for inc in store.open_incidents():
            devices = {f["device"] for f in inc["findings"]}
            if probe.matches(inc["site"], inc["hazard"], devices, inc["level"]):
                matched.append({k: inc[k] for k in ("incident_id", "site", "hazard", "level", "state")})
        return {"matches": matched, "names_something": bool(named)}

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


def board_entry(
    inc: dict[str, Any],
    router: Router,
    silences: list[Silence],
    cfg: EngineConfig,
    firing: list[tuple[str, str, str]],
    now: float,
) -> dict[str, Any]:
    """One open incident's line of ``/api/board`` (its stored findings and escalation state in ``inc``).

    >>> from engine.config.models import EngineConfig
    >>> cfg = EngineConfig(routing=[dict(first="town", ack_within_s=600, repeat_s=300)])
    >>> inc = {"incident_id": "i1", "site": "S1", "hazard": "fire", "level": "red", "state": "firing",
    ...        "opened_at": 0.0, "findings": [{"detector": "fusion:smoke-and-heat", "device": "ir-1", "ts": 5.0,
    ...        "evidence": {"confirmed": True, "contributors": [{"detector": "smoke", "device": "cam-1"},
    ...        {"detector": "thermal_hotspot", "device": "ir-1"}]}}],
    ...        "escalation": {"tier": 1, "ack_due": 600.0, "acknowledged": False}}
    >>> e = board_entry(inc, Router(cfg), [], cfg, [], now=100.0)
    >>> e["confirmed"], e["ack_due"], e["next_tier"], e["resolve_due"]
    (['cam-1 (smoke)', 'ir-1 (thermal_hotspot)'], 600.0, 'district', 86400.0)
    """
    findings = inc.get("findings", [])
    level = Level.from_name(inc["level"])
    rule = router.rule(inc["hazard"], level)
    esc = inc.get("escalation") or {}
    entry: dict[str, Any] = {"ack_within_s": rule.ack_within_s, "resolve_due": inc["opened_at"] + rule.resolve_within_s}
    if inc["state"] == "firing" and esc and not esc.get("acknowledged"):
        tier = int(esc.get("tier", 0))
        entry["ack_due"] = esc.get("ack_due")
        entry["next_tier"] = TIERS[tier + 1] if tier + 1 < len(TIERS) else None
    forecasts = [f for f in findings if "predicted_failure_ts" in (f.get("evidence") or {})]
    if forecasts:
        newest = max(forecasts, key=lambda f: f["ts"])
        ev = newest["evidence"]
        entry["forecast"] = {"detector": newest["detector"], "as_of": newest["ts"],
                             "failure_at": ev["predicted_failure_ts"], "ci95": ev.get("failure_ci95_ts")}  # fmt: skip
    sources: list[str] = []
    for f in findings:
        ev = f.get("evidence") or {}
        if ev.get("confirmed"):
            for c in ev.get("contributors") or []:
                name = f"{c.get('device')} ({c.get('detector')})"
                if name not in sources:
                    sources.append(name)
    # Independent: at least two different devices agree (one camera seen twice confirms nothing).
    if len({s.split(" ", 1)[0] for s in sources}) >= 2:
        entry["confirmed"] = sources
    devices = {f["device"] for f in findings}
    silence = silenced_by(silences, now, inc["site"], inc["hazard"], devices, inc["level"])
    if silence:
        entry["silenced_by"] = silence
    if cfg.inhibit:
        others = [o for o in firing if o != (inc["site"], inc["hazard"], inc["level"])]
        inhibitor = inhibited_by(cfg.inhibit, (inc["site"], inc["hazard"], inc["level"]), others)
        if inhibitor:
            entry["inhibited_by"] = inhibitor
    return entry


def cfg_basemap(cfg: EngineConfig) -> Path | None:
    """The configured basemap file, if any (relative paths were resolved against the config's folder)."""
    return Path(cfg.api.basemap) if cfg.api.basemap else None


def mount_static(app: Any) -> None:
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")
