"""Dataloggers posting readings over HTTP: ``POST /api/ingest``, a bearer token per group of loggers.

The body is CSV with the replay file's columns (``ts,site,device,metric,value``, one value a row; ``ts``
epoch seconds or ISO-8601 with an offset) or JSON (``{"readings": [{"site", "device", "ts", "values":
{…}}]}``, a top-level ``site`` for readings that name none). The readings go into the same intake as MQTT's
and are checked the same way; a refused one is dead-lettered (``<prefix>/deadletter/<reason>``, topic
``http/ingest/<group>``) and named in the answer, the others are taken. A group posts only for its own
sites (``site_not_allowed``). Bodies are bounded (``datalogger.max_body_bytes``, ``max_readings``: 413).

The answer, 200: ``{"taken": n, "refused": k, "refusals": [{"reason", "detail", "device"}, …]}`` (the first
20), counting readings (a device's values at one time: the CSV rows of one device and ``ts`` are one). 200
means the readings are in the engine's current batch, not yet through the detectors.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from engine import metrics
from engine.api.auth import TokenAuth
from engine.config.models import ApiToken, DataloggerConfig
from engine.ingest.decode import Rejection
from engine.ingest.intake import Intake
from engine.ingest.timestamps import TimestampError, parse_ts_text
from engine.ingest.topics import valid_id

CSV_COLUMNS = ("ts", "site", "device", "metric", "value")
Reading = tuple[str, str, dict[str, Any]]


class BodyError(ValueError):
    """A body that holds no readings to take at all (422)."""


def csv_readings(text: str, max_readings: int) -> tuple[list[Reading], list[Rejection]]:
    """Readings of a CSV body (one value a row; the rows of one device and time make one reading), and the
    rows refused.

    >>> r, bad = csv_readings("ts,site,device,metric,value\\n1700000000,S1,rg-1,rain_mm,0.4\\n"
    ...                       "1700000000,S1,rg-1,temp_c,21\\n2023-11-14T22:13:20Z,S1,rg-2,rain_in,x\\n", 100)
    >>> r
    [('S1', 'rg-1', {'ts': 1700000000.0, 'values': {'rain_mm': 0.4, 'temp_c': 21.0}})]
    >>> [(b.reason, b.detail) for b in bad]
    [('non_numeric', 'line 4: value of rain_in is not a number')]
    """
    try:
        return _csv_readings(text, max_readings)
    except csv.Error as exc:  # a NUL, a cell over the csv module's 128 KB
        raise BodyError(f"not CSV: {exc}") from None


def _csv_readings(text: str, max_readings: int) -> tuple[list[Reading], list[Rejection]]:
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or tuple(h.strip().lower() for h in header) != CSV_COLUMNS:
        raise BodyError(f"the CSV needs the header {','.join(CSV_COLUMNS)} (one value a row)")
    grouped: dict[tuple[str, str, float], dict[str, Any]] = {}
    refused: list[Rejection] = []
    for n, row in enumerate(rows, start=2):
        if not row:
            continue
        if n - 1 > max_readings:
            raise OverflowError(f"more than {max_readings} rows (datalogger.max_readings); post them in parts")
        if len(row) != len(CSV_COLUMNS):
            refused.append(Rejection("malformed_reading", f"line {n}: {len(row)} cells, not {len(CSV_COLUMNS)}",
                                     reading=row))  # fmt: skip
            continue
        ts_text, site, device, metric, value_text = (cell.strip() for cell in row)
        if not valid_id(device):
            refused.append(Rejection("malformed_reading", f"line {n}: device {device[:64]!r} is not an id (1-128 "
                                     "letters, digits, _ . : @ -)", reading=row))  # fmt: skip
            continue
        try:
            ts = parse_ts_text(ts_text)
        except TimestampError as exc:
            refused.append(Rejection(exc.reason, f"line {n}: {exc}", device[:128], row))
            continue
        try:
            value = float(value_text)
        except ValueError:
            refused.append(Rejection("non_numeric", f"line {n}: value of {metric[:64]} is not a number", device[:128],
                                     row))  # fmt: skip
            continue
        doc = grouped.setdefault((site, device, ts), {"ts": ts, "values": {}})
        doc["values"][metric] = value
    return [(site, device, doc) for (site, device, _ts), doc in grouped.items()], refused


def json_readings(body: bytes, max_readings: int) -> tuple[list[Reading], list[Rejection]]:
    """Readings of a JSON body, and the items refused for want of a site or a device.

    >>> body = b'{"site": "S1", "readings": [{"device": "p-1", "ts": 1700000000, "values": {"rain_mm": 1}}, {"ts": 1}]}'
    >>> taken, refused = json_readings(body, 100)
    >>> [(site, device) for site, device, _ in taken], [r.reason for r in refused]
    ([('S1', 'p-1')], ['malformed_reading'])
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"not JSON: {exc}") from None
    items = doc.get("readings") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise BodyError('the JSON body needs a `readings` list: {"readings": [{"site", "device", "ts", "values"}]}')
    if len(items) > max_readings:
        raise OverflowError(f"{len(items)} readings, more than {max_readings} (datalogger.max_readings)")
    default_site = doc.get("site")
    readings: list[Reading] = []
    refused: list[Rejection] = []
    for i, item in enumerate(items):
        site = item.get("site", default_site) if isinstance(item, dict) else None
        device = item.get("device") if isinstance(item, dict) else None
        if not isinstance(site, str) or not isinstance(device, str) or not valid_id(device):
            refused.append(Rejection("malformed_reading", f"readings[{i}] needs a `device` id and a `site` (its own "
                                     "or the body's)", reading=item))  # fmt: skip
            continue
        readings.append((site, device, item))
    return readings, refused


def datalogger_router(cfg: DataloggerConfig, intake: Callable[[], Intake | None]) -> APIRouter:
    """``POST /api/ingest`` for the groups of ``cfg``; their tokens are good for nothing else."""
    auth = TokenAuth([ApiToken(name=g.name, token=g.token, role="reporter") for g in cfg.groups])
    sites = {g.name: frozenset(g.sites) for g in cfg.groups}
    logger_token = auth.require("reporter")
    api = APIRouter(prefix="/api", tags=["dataloggers"])

    @api.post(
        "/ingest",
        responses={413: {"description": "Body or readings over the limit"}, 422: {"description": "No readings"}},
    )
    async def ingest(request: Request, group: ApiToken = logger_token) -> JSONResponse:
        """Readings from a group's dataloggers, CSV (``text/csv``) or JSON."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cfg.max_body_bytes:
            raise HTTPException(413, f"the body is over {cfg.max_body_bytes} bytes (datalogger.max_body_bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_body_bytes:
                raise HTTPException(413, f"the body is over {cfg.max_body_bytes} bytes (datalogger.max_body_bytes)")
            chunks.append(chunk)
        body = b"".join(chunks)
        target = intake()
        if target is None:
            raise HTTPException(503, "the engine is starting; post again in a few seconds")
        is_csv = request.headers.get("content-type", "").split(";")[0].strip() in ("text/csv", "text/plain")
        try:
            if is_csv:
                readings, refused = csv_readings(body.decode("utf-8-sig"), cfg.max_readings)  # Excel starts with a BOM
            else:
                readings, refused = json_readings(body, cfg.max_readings)
        except UnicodeDecodeError:
            raise HTTPException(422, "the CSV is not UTF-8 text") from None
        except BodyError as exc:
            raise HTTPException(422, str(exc)) from None
        except OverflowError as exc:
            raise HTTPException(413, str(exc)) from None
        allowed = sites[group.name]
        kept: list[Reading] = []
        for site, device, doc in readings:
            if site in allowed:
                kept.append((site, device, doc))
            else:
                detail = f"group {group.name} posts for {', '.join(sorted(allowed))}, not {site[:128]!r}"
                refused.append(Rejection("site_not_allowed", detail + " (datalogger.groups)", device, doc))
        before = len(refused)
        rejected = await asyncio.to_thread(
            target.take_readings, "datalogger", f"http/ingest/{group.name}", body, kept, refused, time.time()
        )
        n_refused = len(rejected)
        taken = max(0, len(kept) - (n_refused - before))
        metrics.DATALOGGER_READINGS.labels(group.name, "taken").inc(taken)
        metrics.DATALOGGER_READINGS.labels(group.name, "refused").inc(n_refused)
        refusals = [{"reason": r.reason, "detail": r.detail, "device": r.device} for r in rejected[:20]]
        return JSONResponse({"taken": taken, "refused": n_refused, "refusals": refusals})

    return api
