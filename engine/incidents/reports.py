"""Grid reports: what a grid worker or a resident saw, as a finding that opens or joins an incident.

A report (docs/contracts.md: "Grid reports") names a category (``crack``, ``rockfall``, ``flood``,
``smoke``, …), says what the person saw, and where: a site id, or a position that is matched to the nearest
site within ``reports.max_distance_m``. It becomes a finding of detector ``grid_report`` on the site's
hazard for that category, at ``reports.default_level`` (a person may ask for more, up to
``reports.max_level``; operators up to red), and goes through the same incident grouping, routing,
escalation and dispatch as a sensor's finding. An incident that a person reported stays open until a
person resolves it: quiet sensors do not close a case that someone on the ground opened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.util
import logging
import math
import secrets
import struct
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine import metrics
from engine.config.models import EngineConfig, ReportsConfig, SiteConfig
from engine.core.findings import Finding
from engine.core.levels import Level, LevelName
from engine.incidents.tracker import GRID_REPORT
from engine.ingest.bounds import Name, Text, TimeWindow
from engine.ingest.frames import FrameError, checked_size, decode, opencv
from engine.ingest.topics import LOCATE, Topic, valid_id

Channel = Literal["api", "mqtt"]
logger = logging.getLogger(__name__)


class ReportError(ValueError):
    """A report that cannot be taken: the message says what to change; ``reason`` is the dead letter's."""

    def __init__(self, detail: str, reason: str = "bad_report") -> None:
        super().__init__(detail)
        self.reason = reason


class GridReport(BaseModel):
    """A person's report, as it comes over the API or MQTT (``gw/reports/<site>/<reporter>``)."""

    model_config = ConfigDict(extra="forbid")

    category: Name = Field(min_length=1, max_length=32, description="What was seen: a key of `reports.categories`.")
    text: Text = Field("", max_length=2000, description="What the person saw, in their words.")
    site: str | None = Field(None, max_length=128, description="The site; else `lat`/`lon` find the nearest.")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    ts: float | None = Field(
        None,
        description="When it was seen (epoch s), kept as `seen_at`; within `ingest.max_past_s` before and "
        "`ingest.max_future_s` after the engine clock. The incident counts its deadlines from when the report "
        "reaches the engine, not from this time.",
    )
    level: LevelName | None = Field(None, description="How grave the reporter thinks it is (capped by config).")
    photo: str | None = Field(None, description="A JPEG or PNG, base64.")
    reporter: Name | None = Field(
        None,
        max_length=128,
        description="Who reports: always the token's name on the API (a different name is refused), the topic's "
        "last part on MQTT.",
    )

    @model_validator(mode="after")
    def _where(self) -> GridReport:
        if self.site is None and (self.lat is None or self.lon is None):
            raise ValueError("a report needs `site`, or `lat` and `lon` to find the nearest site")
        if self.site is not None and not valid_id(self.site):
            raise ValueError(f"site {self.site[:128]!r} is not a valid id")
        return self


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius).

    >>> round(distance_m(30.0, 120.0, 30.01, 120.0))
    1112
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(a)))


def locate(report: GridReport, sites: list[SiteConfig], max_distance_m: float) -> SiteConfig:
    """The report's site: the one it names, else the nearest to its position within ``max_distance_m``."""
    if report.site is not None:
        for s in sites:
            if s.id == report.site:
                return s
        raise ReportError(f"no site {report.site!r} in the config")
    lat, lon = report.lat, report.lon
    assert lat is not None and lon is not None
    if not sites:
        raise ReportError("the config has no sites to file a report under")
    d, best = min(((distance_m(lat, lon, s.lat, s.lon), s) for s in sites), key=lambda x: x[0])
    if d > max_distance_m:
        raise ReportError(
            f"no site within {max_distance_m:g} m of ({report.lat}, {report.lon}) (nearest: {best.id}, {d:.0f} m); "
            "name the site"
        )
    return best


def report_id() -> str:
    """A new report's id: random, so that nobody can name (and overwrite the photo of) another's report.

    >>> len(report_id()), report_id() != report_id()
    (16, True)
    """
    return secrets.token_hex(8)


def content_key(report: GridReport, site: str, reporter: str) -> str:
    """What makes two deliveries the same report (an MQTT redelivery): who, where, when and what, photo
    included. Used to apply a redelivery once, never as the report's id."""
    parts = (site, reporter, report.category, repr(report.ts), report.text, report.photo or "")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class ReportQuota:
    """What strangers can make the engine keep, bounded: reports per reporter and per site in the last hour
    (``reports.max_per_reporter_per_hour``, ``max_per_site_per_hour``) and the photos' disk
    (``reports.photo_quota_mb``). Thread-safe (MQTT reports come on paho's thread, the API's on the loop).

    >>> from engine.config.models import ReportsConfig
    >>> q = ReportQuota(ReportsConfig(max_per_reporter_per_hour=2), None)
    >>> q.admit("res-1", "S1", 0.0); q.admit("res-1", "S1", 10.0)
    >>> q.admit("res-1", "S1", 20.0)
    Traceback (most recent call last):
    ...
    engine.incidents.reports.ReportError: rate_limited: reporter res-1 filed 2 reports in the last hour ...
    >>> q.admit("res-1", "S1", 3700.0)
    """

    WINDOW_S = 3600.0
    MAX_KEYS = 100_000  # reporters and sites remembered; the least recently seen go first

    def __init__(self, rc: ReportsConfig, photo_dir: Path | None) -> None:
        self.rc = rc
        self._times: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()
        files = photo_dir.glob("*") if photo_dir is not None and photo_dir.is_dir() else []
        self.photo_bytes = sum(p.stat().st_size for p in files)

    def admit(self, reporter: str, site: str, now: float) -> None:
        """Count a report, or refuse it (``ReportError``, reason ``rate_limited``) when either is over."""
        limits = (("reporter", reporter, self.rc.max_per_reporter_per_hour),
                  ("site", site, self.rc.max_per_site_per_hour))  # fmt: skip
        with self._lock:
            seen = []
            for kind, key, cap in limits:
                times = self._times.pop((kind, key), None) or deque()
                self._times[(kind, key)] = times  # to the end: most recently seen
                while times and times[0] <= now - self.WINDOW_S:
                    times.popleft()
                if len(times) >= cap:
                    setting = f"max_per_{kind}_per_hour"
                    raise ReportError(f"rate_limited: {kind} {key} filed {len(times)} reports in the last hour "
                                      f"(reports.{setting}); try again later", "rate_limited")  # fmt: skip
                seen.append(times)
            for times in seen:
                times.append(now)
            while len(self._times) > self.MAX_KEYS:
                del self._times[next(iter(self._times))]

    def keep_photo(self, size: int) -> bool:
        """Whether a photo of ``size`` bytes fits the quota (and count it when it does)."""
        with self._lock:
            if self.photo_bytes + size > self.rc.photo_quota_mb * 1e6:
                return False
            self.photo_bytes += size
            return True


def max_report_bytes(rc: ReportsConfig) -> int:
    """The largest report payload: its photo in base64 and 64 KB for the rest."""
    return rc.max_photo_bytes * 4 // 3 + 65536


class ReportWorker:
    """Reports checked off the network thread, one at a time, at most ``max_pending`` waiting: a photo takes
    up to a second to decode and re-encode, and on paho's thread it held up every reading behind it (and the
    broker's keepalive: 100 reports with large photos delayed a RED reading by 283 s).

    >>> w = ReportWorker(max_pending=1)
    >>> done = threading.Event()
    >>> w.submit(done.wait), w.submit(done.wait)
    (True, False)
    >>> done.set(); w.close()
    """

    def __init__(self, max_pending: int = 64) -> None:
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gridwatch-reports")
        self._lock = threading.Lock()
        self._pending = 0

    def submit(self, check: Callable[[], Any]) -> bool:
        """Run ``check`` on the reports' thread; False (nothing runs) when ``max_pending`` are waiting."""
        with self._lock:
            if self._pending >= self.max_pending:
                return False
            self._pending += 1

        def run() -> None:
            try:
                check()
            except Exception:  # a bug on one report must not stop the others
                logger.exception("checking a grid report failed")
            finally:
                with self._lock:
                    self._pending -= 1

        self._pool.submit(run)
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def photo_bytes(report: GridReport, max_bytes: int, max_pixels: int = 16_000_000) -> tuple[bytes, str] | None:
    """The photo and its format (``jpeg``/``png``); ``ReportError`` if it is neither or too large. With
    OpenCV (the ``cameras`` extra) it is decoded whole, its pixels counted as decoded, and kept re-encoded as
    a JPEG: no metadata (a phone's position), nothing appended after the image (a PNG header then HTML)."""
    if not report.photo:
        return None
    text = report.photo.split(",", 1)[1] if report.photo.startswith("data:") else report.photo
    if len(text) > max_bytes * 4 // 3 + 4:
        raise ReportError(f"the photo is larger than reports.max_photo_bytes ({max_bytes} bytes)")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReportError(f"the photo is not base64: {exc}") from exc
    try:
        kind, _w, _h = checked_size(data, max_pixels)
    except (ValueError, struct.error) as exc:
        raise ReportError(f"the photo is not an image: {exc}") from exc
    if kind not in ("jpeg", "png"):
        raise ReportError(f"the photo is {kind}; send a JPEG or PNG")
    if importlib.util.find_spec("cv2") is None:
        return data, kind  # header-checked only; served with nosniff under the page's CSP
    try:
        image = decode(data, max_pixels=max_pixels)
    except FrameError as exc:
        raise ReportError(f"the photo is not an image: {exc}") from exc
    cv2 = opencv()
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ReportError("the photo could not be re-encoded")
    return bytes(buf.tobytes()), "jpeg"


def accept(
    report: GridReport,
    cfg: EngineConfig,
    reporter: str,
    channel: Channel,
    now: float,
    photo_dir: Path | None,
    may_raise_to_red: bool = False,
    quota: ReportQuota | None = None,
) -> dict[str, Any]:
    """Check a report against the config and keep its photo; returns the finding's spec (``finding_of``).

    Raises ``ReportError`` with what to change."""
    rc: ReportsConfig = cfg.reports
    hazard = rc.categories.get(report.category)
    if hazard is None:
        raise ReportError(f"unknown category {report.category!r}; one of: {', '.join(sorted(rc.categories))}")
    site = locate(report, cfg.sites, rc.max_distance_m)
    if report.ts is not None:
        window = TimeWindow(cfg.ingest.max_future_s, cfg.ingest.max_past_s)
        window.observe(now)  # the same rule as a reading's, against the engine clock
        late = window.reason(report.ts, now)
        if late is not None:
            raise ReportError(f"ts: {late} (the engine clock is {now:.0f})")
    if quota is not None:  # before the photo: a refused report costs no decoding
        quota.admit(reporter, site.id, now)
    photo = photo_bytes(report, rc.max_photo_bytes, rc.max_photo_pixels)
    level = Level.from_name(report.level or rc.default_level)
    cap = Level.RED if may_raise_to_red else Level.from_name(rc.max_level)
    level = min(level, cap)
    rid = report_id()
    evidence: dict[str, Any] = {
        "report_id": rid,
        "category": report.category,
        "text": report.text,
        "reporter": reporter,
        "channel": channel,
    }
    if report.ts is not None:
        evidence["seen_at"] = report.ts
    if report.lat is not None and report.lon is not None:
        evidence["lat"], evidence["lon"] = report.lat, report.lon
    if photo is not None and quota is not None and not quota.keep_photo(len(photo[0])):
        logger.warning("reports' photos are over reports.photo_quota_mb: report %s filed without its photo", rid)
        evidence["photo_refused"] = "the photo storage is full (reports.photo_quota_mb): filed without the photo"
        photo = None
    if photo is not None:
        data, kind = photo
        name = f"{rid}.{'jpg' if kind == 'jpeg' else 'png'}"
        if photo_dir is not None:
            photo_dir.mkdir(parents=True, exist_ok=True)
            (photo_dir / name).write_bytes(data)
            evidence["photo"] = f"/api/reports/photos/{name}"
    metrics.REPORTS.labels(hazard, channel).inc()
    return {
        "site": site.id,
        "hazard": hazard,
        "reporter": reporter,
        "content_key": content_key(report, site.id, reporter),
        # A report is stamped when it is applied, with the engine clock of the worker that holds the site (data
        # time): a report is news when it arrives, whenever the person saw it (``seen_at``). Its own time would
        # start the incident's deadlines in the past (a report dated a month back sent 718 reminders at once),
        # and the wall clock here would be far off a replay's data time.
        "ts": None,
        "level": level.label,
        "evidence": evidence,
    }


def mqtt_report(
    topic: Topic,
    payload: bytes,
    cfg: EngineConfig,
    now: float,
    photo_dir: Path | None,
    quota: ReportQuota | None = None,
) -> dict[str, Any]:
    """A report from ``<prefix>/reports/<site>/<reporter>`` (``_nearest`` as the site: by its position),
    checked (``ReportError``: the dead letter's reason) and taken (``accept``)."""
    largest = max_report_bytes(cfg.reports)
    if len(payload) > largest:  # before parsing: 200 MB of JSON cost 700 MB to be refused afterwards
        detail = f"a report of {len(payload)} bytes is over {largest} (its photo within reports.max_photo_bytes)"
        raise ReportError(detail, "too_large")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ReportError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ReportError("a report is a JSON object")
    if "site" in doc or "reporter" in doc:
        raise ReportError("the site and the reporter are the topic's: <prefix>/reports/<site>/<reporter>")
    if topic.site != LOCATE:
        doc["site"] = topic.site
    try:
        report = GridReport.model_validate(doc)
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'report'}: {e['msg']}" for e in exc.errors())
        raise ReportError(why) from exc
    return accept(report, cfg, topic.device, "mqtt", now, photo_dir, quota=quota)


def finding_of(spec: dict[str, Any], now: float | None = None) -> Finding:
    """The finding a report (``accept``'s spec) makes: detector ``grid_report``, the reporter as device; at
    the report's own time, else at ``now`` (the applying engine's clock), else ``-inf`` (``stamped`` later)."""
    ts = spec["ts"] if spec["ts"] is not None else (now if now is not None else float("-inf"))
    return Finding(
        GRID_REPORT,
        spec["hazard"],
        spec["site"],
        spec["reporter"],
        float(ts),
        Level.from_name(spec["level"]),
        1.0,
        dict(spec["evidence"]),
    )


def stamped(f: Finding, now: float) -> Finding:
    """A report's finding that came without a time (``-inf``, from the bridge), at ``now``."""
    if f.detector != GRID_REPORT or f.ts != float("-inf"):
        return f
    return Finding(f.detector, f.hazard, f.site, f.device, now, f.level, f.score, f.evidence, f.row)
