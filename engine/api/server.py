"""The engine's HTTP server (FastAPI on uvicorn, inside the runner's event loop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine import metrics
from engine.api.auth import TokenAuth
from engine.api.limits import RequestLimits
from engine.ingest.embedded_broker import ensure_free, free_port

logger = logging.getLogger(__name__)


def create_app(
    health: Callable[[], dict[str, Any]],
    reload: Callable[[], Awaitable[Any]] | None = None,
    routers: tuple[APIRouter, ...] = (),
    auth: TokenAuth | None = None,
    metrics_public: bool = True,
    before_scrape: Callable[[], None] | None = None,
    max_body_bytes: int = 8_000_000,
) -> FastAPI:
    """The HTTP app; ``health`` returns the runner's view of itself (``ok`` true or false).

    ``/livez`` says the process answers; ``/readyz`` (and its old name ``/healthz``) says whether alerting
    works (503 with the failing part named otherwise). Everything but these (and ``/metrics`` while
    ``metrics_public``) needs a token from ``auth``;
    reloading the config needs an operator's. ``before_scrape`` refreshes gauges read from elsewhere (the
    store) before ``/metrics`` answers.
    """
    app = FastAPI(title="gridwatch", version="0.1.0")

    @app.exception_handler(RequestValidationError)
    async def refused(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with where and what is wrong, never the input echoed: an input that cannot be written back as
        JSON (a NaN, a lone surrogate) made the answer itself fail with a 500."""

        def text(v: object) -> str | int:  # a key of the input may hold a lone surrogate
            return v if isinstance(v, int) else str(v).encode("utf-8", "replace").decode("utf-8")

        detail = [{"loc": [text(p) for p in e.get("loc", ())], "msg": text(e.get("msg", "")),
                   "type": text(e.get("type", ""))} for e in exc.errors()]  # fmt: skip
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_middleware(RequestLimits, max_body_bytes=max_body_bytes)
    auth = auth or TokenAuth([])
    for router in routers:
        app.include_router(router)
    operator, viewer = auth.require("operator"), auth.require("viewer")

    if reload is not None:

        @app.post("/-/reload", dependencies=[operator])
        async def reload_config() -> JSONResponse:
            """Re-read the config file; 200 with what changed, 422 with why it was refused."""
            result = await reload()
            return JSONResponse(result.to_json(), status_code=200 if result.ok else 422)

    @app.get("/livez")
    def livez() -> JSONResponse:
        """The process and its event loop answer (restart it if not)."""
        return JSONResponse({"alive": True})

    @app.get("/readyz")
    @app.get("/healthz")
    def readyz() -> JSONResponse:
        """Everything that alerting needs works: broker, store, background tasks, checkpoints, detectors."""
        body = health()
        return JSONResponse(body, status_code=200 if body.get("ok") else 503)

    @app.get("/metrics", dependencies=[] if metrics_public else [viewer])
    def prometheus() -> Response:
        if before_scrape is not None:
            try:
                before_scrape()
            except Exception as exc:  # a store that is out must not take /metrics with it
                logger.warning("refreshing gauges from the store failed: %s", exc)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


def refresh_store_gauges(store: Any) -> None:
    """The gauges whose truth is in the store: the grid reports' completion rate per tier."""
    for tier, t in store.report_completion().items():
        metrics.REPORT_COMPLETION.labels(tier).set(t["completion"])


class ApiServer:
    """Runs uvicorn as a task of the current event loop."""

    def __init__(self, app: FastAPI, host: str, port: int, max_connections: int = 1000) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=self.port,
                log_level="warning",
                lifespan="off",
                timeout_graceful_shutdown=3,
                # The client address (the token lockout's key) is the socket's: a header such as
                # X-Forwarded-For is anyone's to write, so a guesser could pick a fresh address each try.
                proxy_headers=False,
                # Connections and requests at once: beyond it a request gets 503 at once. 2 x 10,050 half-sent
                # requests used up the process's files, and the checkpoint could not be written.
                limit_concurrency=max_connections,
                timeout_keep_alive=5,
            )
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        ensure_free(self.host, self.port, "the HTTP API", "set api.port (0: a free port) or stop what holds it")
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(200):
            if self._server.started:
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        logger.warning("HTTP server did not report started")

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
