"""Cameras the engine pulls itself: RTSP streams, HTTP snapshot URLs, ONVIF cameras and local video devices.

Most IP cameras speak RTSP (and ONVIF), not MQTT. A camera with a ``source`` in the config gets a thread of its
own that pulls its frames with OpenCV (whose wheels carry FFmpeg), stamps each with the wall time it was taken
(OpenCV does not expose the stream's own clock, so the capture time is when the engine got the frame), and
hands it on as JPEG bytes at the camera's interval: to the camera intake, exactly where a frame from
``gw/cameras/<site>/<camera>`` arrives (the same size, pixel and aspect bounds, throttle and queue), or, with
``gridwatch pull-cameras``, to that topic for a scale-out. An RTSP stream is read at its own rate (FFmpeg must
decode every frame of it anyway) and only its newest frame is taken at each interval, so a frame is never older
than one frame of the stream when it is handed on.

A camera that cannot be reached, or whose stream ends or stalls for ``timeout_s``, is tried again after a
backoff that doubles up to ``backoff_max_s`` (with a little jitter, so a thousand cameras behind one failed
switch do not reconnect in step) and is reset by the next frame. A camera without a frame for
``no_frames_after_s`` is named by ``without_frames`` (the engine's /readyz) and counted by the
``gridwatch_camera_sources_without_frames`` gauge. Credentials come from ``username``/``password`` (``${ENV}``)
or ``password_file`` and are put into the URL only when it is opened: every URL and error text that reaches a
log or /readyz has them scrubbed (``redact``, ``Scrubber``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import random
import re
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from xml.etree import ElementTree

import httpx

from engine import metrics
from engine.config.models import CameraConfig, CameraSourceConfig, EngineConfig
from engine.ingest.frames import FrameError, check_dimensions, opencv, pixel_limit

logger = logging.getLogger(__name__)

Deliver = Callable[[CameraConfig, bytes, float], None]  # (camera, JPEG/PNG/TIFF bytes, capture time)
Refuse = Callable[[CameraConfig, str, str], None]  # (camera, dead-letter reason, detail)

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;)]")  # not the sentence's stop
# RTSP over TCP (interleaved: through NAT and firewalls, no lost packets smearing H.264 frames), and a short probe
# of the stream (FFmpeg's default of 5 s delayed every connection)
FFMPEG_OPTIONS = "rtsp_transport;tcp|analyzeduration;1000000|probesize;1000000"


def ffmpeg_options() -> None:
    """OpenCV reads FFmpeg's options from one environment variable, for every stream of the process: set it
    unless the operator has (``OPENCV_FFMPEG_CAPTURE_OPTIONS="rtsp_transport;udp"`` for cameras that only do UDP).
    """
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_OPTIONS)


def redact(url: str) -> str:
    """``url`` fit for a log: any user and password, and every query value, replaced by ``***``.

    >>> redact("rtsp://admin:s3cret@10.0.0.5:554/Streaming/101?channel=1&pwd=x")
    'rtsp://***@10.0.0.5:554/Streaming/101?channel=***&pwd=***'
    >>> redact("/dev/video0")
    '/dev/video0'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that does not parse>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{kv.split('=', 1)[0]}=***" if "=" in kv else "***" for kv in parts.query.split("&") if kv)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class Scrubber:
    """Removes a camera's secrets from text meant for a log or an API: the password (as given and as it is
    written into a URL) and the user part and query values of any URL in the text.

    >>> Scrubber(["pa ss"])("open rtsp://admin:pa%20ss@cam/1 failed: pa ss")
    'open rtsp://***@cam/1 failed: ***'
    """

    def __init__(self, secrets_: list[str]) -> None:
        forms = {form for s in secrets_ if s for form in (s, quote(s, safe=""), quote(s))}
        self._forms = sorted(forms, key=len, reverse=True)  # the longest first: one may hold another

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, "***")
        return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """``url`` with the user and password written into it (percent-encoded), for RTSP, which takes them there.

    >>> with_credentials("rtsp://cam:554/s", "admin", "p@ss:w/rd")
    'rtsp://admin:p%40ss%3Aw%2Frd@cam:554/s'
    """
    if not username:
        return url
    parts = urlsplit(url)
    user = quote(username, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
    return urlunsplit((parts.scheme, f"{user}@{parts.netloc}", parts.path, parts.query, parts.fragment))


class SourceError(Exception):
    """A camera that cannot be read now (unreachable, refused, stream ended); tried again after a backoff."""


@dataclass
class SourceHealth:
    """What a pulled camera is doing: ``connecting``, ``streaming`` or ``failing`` (waiting to retry)."""

    state: str
    started_at: float
    last_frame_at: float | None = None
    error: str | None = None
    reconnects: int = 0
    frames: int = 0


def backoff_delay(failures: int, first_s: float, max_s: float, jitter: float = 0.1) -> float:
    """Seconds to wait after ``failures`` failures in a row: ``first_s`` doubled each time, at most ``max_s``,
    within ``jitter`` of that (so many cameras behind one failed link do not retry in step).

    >>> [round(backoff_delay(n, 1.0, 8.0, jitter=0.0), 1) for n in (1, 2, 3, 4, 5, 9)]
    [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    """
    base = min(max_s, first_s * 2.0 ** min(max(failures - 1, 0), 30))
    return float(base * random.uniform(1.0 - jitter, 1.0 + jitter)) if jitter else float(base)


class CameraSource:
    """One camera's puller thread: frames in at the camera's interval, reconnecting with backoff until ``stop``.

    >>> from engine.config.models import CameraConfig
    >>> cam = CameraConfig(site="S1", id="tower-1", source={"url": "rtsp://10.0.0.5/s", "password": "x"})
    >>> src = CameraSource(cam, deliver=lambda c, b, t: None)
    >>> src.describe(), src.health.state
    ('rtsp://10.0.0.5/s', 'connecting')
    """

    def __init__(self, cam: CameraConfig, deliver: Deliver, refuse: Refuse | None = None,
                 max_bytes: int = 16 * 1024 * 1024) -> None:  # fmt: skip
        assert cam.source is not None
        self.cam = cam
        self.src: CameraSourceConfig = cam.source
        self.deliver = deliver
        self.refuse = refuse
        self.max_bytes = max_bytes  # the intake's bound on a frame's bytes (a snapshot is read no further)
        self.interval_s = cam.pull_interval_s()
        self.no_frames_after_s = self.src.no_frames_after_s or max(10.0, 3.0 * self.interval_s)
        self._password = self.src.secret()
        self.scrub = Scrubber([self._password or ""])
        self.health = SourceHealth("connecting", time.time())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    @property
    def key(self) -> str:
        return f"{self.cam.site}/{self.cam.id}"

    def describe(self) -> str:
        """The source's URL as logs and /readyz show it."""
        return redact(self.src.url)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"camera {self.key}", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 0.0) -> None:
        self._stop.set()
        if wait_s and self._thread is not None:
            self._thread.join(wait_s)

    def without_frames(self, now: float) -> dict[str, Any] | None:
        """What /readyz says of this camera when it has had no frame for ``no_frames_after_s``, else None."""
        with self._lock:
            h = self.health
            since = h.last_frame_at if h.last_frame_at is not None else h.started_at
            if now - since <= self.no_frames_after_s:
                return None
            return {
                "state": h.state,
                "source": self.describe(),
                "last_frame_s_ago": None if h.last_frame_at is None else round(now - h.last_frame_at, 1),
                "error": h.error,
                "reconnects": h.reconnects,
            }

    def _run(self) -> None:
        scheme = self.src.scheme
        while not self._stop.is_set():
            self._set_state("connecting")
            try:
                if scheme == "http":
                    self._pull_snapshots(self.src.url)
                else:
                    self._pull_stream(self._stream_url(scheme))
                if self._stop.is_set():
                    return
                raise SourceError("the stream ended")
            except SourceError as exc:
                error = self.scrub(str(exc))
            except Exception as exc:  # a thread that dies silently is a camera that goes dark: log and retry
                error = self.scrub(f"{type(exc).__name__}: {exc}")
                # the traceback scrubbed too: its last line is the exception's text, which may hold the URL
                logger.error("camera %s (%s) failed: %s", self.key, self.describe(), self.scrub(traceback.format_exc()))
            if self._stop.is_set():
                return
            self._failures += 1
            delay = backoff_delay(self._failures, self.src.backoff_s, self.src.backoff_max_s)
            with self._lock:
                self.health.state, self.health.error = "failing", error
                self.health.reconnects += 1
            metrics.CAMERA_SOURCE_RECONNECTS.labels(scheme).inc()
            logger.warning("camera %s (%s): %s; trying again in %.1f s", self.key, self.describe(), error, delay)
            self._stop.wait(delay)

    def _set_state(self, state: str) -> None:
        with self._lock:
            self.health.state = state

    def _taken(self, payload: bytes, ts: float) -> None:
        self._failures = 0
        with self._lock:
            self.health.state, self.health.error = "streaming", None
            self.health.last_frame_at = ts
            self.health.frames += 1
        metrics.CAMERA_SOURCE_FRAMES.labels("taken").inc()
        self.deliver(self.cam, payload, ts)

    def _refused(self, reason: str, detail: str) -> None:
        metrics.CAMERA_SOURCE_FRAMES.labels("refused").inc()
        with self._lock:
            self.health.error = f"{reason}: {detail}"
        if self.refuse is not None:
            self.refuse(self.cam, reason, detail)

    def _stream_url(self, scheme: str) -> str:
        if scheme == "onvif":
            uri = onvif_stream_uri(self.src, self._password)
            logger.info("camera %s: ONVIF gives the stream %s", self.key, redact(uri))
            return with_credentials(uri, self.src.username, self._password)
        if scheme == "rtsp":
            return with_credentials(self.src.url, self.src.username, self._password)
        return self.src.url

    def _open(self, url: str) -> Any:
        cv2 = opencv()
        timeout_ms = int(self.src.timeout_s * 1000)
        if url.isdigit() or url.startswith("/dev/"):
            cap = cv2.VideoCapture(int(url) if url.isdigit() else url)
        else:
            ffmpeg_options()
            # One decoding thread a camera: a camera has its own thread, and FFmpeg's default (a thread per core
            # for every stream) would spin on the cores the ingest path needs
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms,
                      cv2.CAP_PROP_N_THREADS, 1]  # fmt: skip
            cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"could not open {redact(url)} (unreachable, refused, or no video there)")
        return cap

    def _pull_stream(self, url: str) -> None:
        """Read the stream at its own rate; at each interval, take its newest frame."""
        cv2 = opencv()
        cap = self._open(url)
        limit = pixel_limit(self.cam.kind == "thermal")
        try:
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if w and h:  # refused before a frame of it is converted (FFmpeg knows the size from the stream)
                try:
                    check_dimensions("stream", w, h, limit)
                except FrameError as exc:
                    self._refused(exc.reason, str(exc))
                    raise SourceError(f"{redact(url)}: {exc}") from None
            next_at = 0.0
            while not self._stop.is_set():
                if not cap.grab():
                    raise SourceError(f"no frame from {redact(url)} within {self.src.timeout_s:g} s")
                now = time.time()
                if now < next_at:
                    continue
                ok, image = cap.retrieve()
                if not ok or image is None:
                    raise SourceError(f"a frame of {redact(url)} did not decode")
                next_at = now + self.interval_s  # never closer than the interval: the intake would skip it
                try:
                    check_dimensions("stream", int(image.shape[1]), int(image.shape[0]), limit)
                except FrameError as exc:
                    self._refused(exc.reason, str(exc))
                    continue
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
                if not ok:
                    raise SourceError(f"a frame of {redact(url)} could not be encoded")
                self._taken(buf.tobytes(), now)
        finally:
            cap.release()

    def _pull_snapshots(self, url: str) -> None:
        """One GET per interval; the image goes on as it came (the intake checks its header and bounds)."""
        with httpx.Client(timeout=self.src.timeout_s, auth=http_auth(self.src, self._password)) as client:
            while not self._stop.is_set():
                started = time.time()
                payload, ts = self._snapshot(client, url)
                if payload is not None:
                    self._taken(payload, ts)
                self._stop.wait(max(0.0, started + self.interval_s - time.time()))

    def _snapshot(self, client: httpx.Client, url: str) -> tuple[bytes | None, float]:
        try:
            with client.stream("GET", url) as resp:
                ts = time.time()  # the camera answered: its picture is of about now
                if resp.status_code in (401, 403):
                    raise SourceError(f"{redact(url)} refused the camera's user and password (HTTP {resp.status_code})")
                if resp.status_code != 200:
                    raise SourceError(f"{redact(url)} answered HTTP {resp.status_code}")
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        self._refused("too_large", f"a snapshot of more than {self.max_bytes} bytes")
                        return None, ts
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise SourceError(f"{redact(url)}: {type(exc).__name__}: {exc}") from None
        return b"".join(chunks), ts


def http_auth(src: CameraSourceConfig, password: str | None) -> httpx.Auth | None:
    """httpx's digest or basic authentication for the camera's user, or None without one."""
    if not src.username:
        return None
    if src.http_auth == "basic":
        return httpx.BasicAuth(src.username, password or "")
    return httpx.DigestAuth(src.username, password or "")


# ONVIF (Profile S): the device service's GetCapabilities gives the media service's address, whose GetProfiles
# and GetStreamUri give the RTSP URL of a profile. Three SOAP calls; a library for them (onvif-zeep) would
# bring zeep and its WSDL files for nothing else.
_SOAP = "http://www.w3.org/2003/05/soap-envelope"
_NS = {
    "s": _SOAP,
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
}
_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_DIGEST = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
ONVIF_MAX_BYTES = 1_000_000  # an ONVIF answer (a few KB; a camera with many profiles, tens)


def ws_username_token(username: str, password: str, nonce: bytes, created: str) -> str:
    """The WS-Security UsernameToken header ONVIF cameras ask for: the password as
    Base64(SHA-1(nonce + created + password)), never in clear.

    >>> "PasswordDigest" in ws_username_token("admin", "pw", b"0123456789abcdef", "2026-01-01T00:00:00Z")
    True
    """
    # SHA-1 is what the WS-Security UsernameToken profile prescribes (ONVIF Core 5.12.2)
    sha1 = hashlib.sha1(nonce + created.encode() + password.encode(), usedforsecurity=False)
    digest = base64.b64encode(sha1.digest()).decode()
    return (
        f'<Security xmlns="{_WSSE}" s:mustUnderstand="1"><UsernameToken><Username>{_xml_text(username)}</Username>'
        f'<Password Type="{_DIGEST}">{digest}</Password><Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/'
        f'oasis-200401-wss-soap-message-security-1.0#Base64Binary">{base64.b64encode(nonce).decode()}</Nonce>'
        f'<Created xmlns="{_WSU}">{created}</Created></UsernameToken></Security>'
    )


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _soap(client: httpx.Client, url: str, body: str, username: str | None, password: str | None) -> ElementTree.Element:
    header = ""
    if username:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        header = f"<s:Header>{ws_username_token(username, password or '', secrets.token_bytes(16), created)}</s:Header>"
    envelope = (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{_SOAP}">{header}'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )
    try:  # read as it comes, at most 1 MB: a device that answers without end costs neither memory nor the thread
        with client.stream(
            "POST", url, content=envelope.encode(), headers={"Content-Type": "application/soap+xml; charset=utf-8"}
        ) as resp:
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > ONVIF_MAX_BYTES:
                    raise SourceError(f"ONVIF {redact(url)}: an answer of more than {ONVIF_MAX_BYTES} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise SourceError(f"ONVIF {redact(url)}: {type(exc).__name__}: {exc}") from None
    content = b"".join(chunks)
    try:
        # Python's expat refuses entity expansion bombs; the answer is the configured camera's
        root = ElementTree.fromstring(content)  # noqa: S314  # nosec B314
    except ElementTree.ParseError:
        raise SourceError(f"ONVIF {redact(url)} answered HTTP {resp.status_code} with no SOAP message") from None
    fault = root.find(".//s:Fault", _NS)
    if fault is not None or resp.status_code != 200:
        reason = " ".join("".join(fault.itertext()).split()) if fault is not None else ""
        raise SourceError(f"ONVIF {redact(url)} answered HTTP {resp.status_code}: {reason[:200] or 'no reason'}")
    return root


def onvif_stream_uri(src: CameraSourceConfig, password: str | None) -> str:
    """The RTSP URL of the camera's ``onvif_profile``-th media profile, asked of the camera (ONVIF Profile S)."""
    parts = urlsplit(src.url)
    device_url = urlunsplit(("http", parts.netloc, parts.path or "/onvif/device_service", "", ""))
    user = src.username
    with httpx.Client(timeout=src.timeout_s) as client:
        caps = _soap(client, device_url, '<GetCapabilities xmlns="http://www.onvif.org/ver10/device/wsdl">'
                     "<Category>Media</Category></GetCapabilities>", user, password)  # fmt: skip
        media = caps.find(".//tt:Media/tt:XAddr", _NS)
        media_url = (media.text or "").strip() if media is not None else ""
        if not media_url.startswith(("http://", "https://")):
            raise SourceError(f"ONVIF {redact(device_url)}: the camera names no media service")
        profiles = _soap(client, media_url, f'<GetProfiles xmlns="{_NS["trt"]}"/>', user, password)
        tokens = [p.get("token") for p in profiles.findall(".//trt:Profiles", _NS)]
        if src.onvif_profile >= len(tokens) or not tokens[src.onvif_profile]:
            raise SourceError(f"ONVIF {redact(device_url)}: profile {src.onvif_profile} of {len(tokens)}")
        token = _xml_text(str(tokens[src.onvif_profile]))
        body = (f'<GetStreamUri xmlns="{_NS["trt"]}"><StreamSetup><Stream xmlns="{_NS["tt"]}">RTP-Unicast</Stream>'
                f'<Transport xmlns="{_NS["tt"]}"><Protocol>RTSP</Protocol></Transport></StreamSetup>'
                f"<ProfileToken>{token}</ProfileToken></GetStreamUri>")  # fmt: skip
        answer = _soap(client, media_url, body, user, password)
    uri = answer.find(".//trt:MediaUri/tt:Uri", _NS)
    text = (uri.text or "").strip() if uri is not None else ""
    if not text.lower().startswith(("rtsp://", "rtsps://")):
        raise SourceError(f"ONVIF {redact(device_url)}: no RTSP URL for profile {token}")
    return text


class CameraSources:
    """Every camera of the config that has a ``source``, pulled until ``stop``; ``without_frames`` for /readyz.

    >>> from engine.config.models import EngineConfig
    >>> CameraSources(EngineConfig(), deliver=lambda c, b, t: None).sources
    []
    """

    def __init__(self, cfg: EngineConfig, deliver: Deliver, refuse: Refuse | None = None) -> None:
        max_bytes = cfg.ingest.max_payload_bytes * 16  # the intake's bound on a frame
        self.sources = [CameraSource(c, deliver, refuse, max_bytes) for c in cfg.cameras.devices if c.source]

    def __bool__(self) -> bool:
        return bool(self.sources)

    def start(self) -> None:
        ffmpeg_options()  # before the threads: the environment is set once, not while they open streams
        for s in self.sources:
            s.start()
            logger.info("pulling camera %s from %s every %g s", s.key, s.describe(), s.interval_s)
        metrics.CAMERA_SOURCES_WITHOUT_FRAMES.set_function(lambda: len(self.without_frames(time.time())))

    def stop(self, wait_s: float = 3.0) -> None:
        for s in self.sources:
            s.stop()
        deadline = time.monotonic() + wait_s
        for s in self.sources:
            s.stop(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(Exception):
            metrics.CAMERA_SOURCES_WITHOUT_FRAMES.set_function(lambda: 0)

    def without_frames(self, now: float) -> dict[str, dict[str, Any]]:
        """Pulled cameras with no frame for longer than their ``no_frames_after_s``: a readiness warning."""
        out = {}
        for s in self.sources:
            state = s.without_frames(now)
            if state is not None:
                out[s.key] = state
        return out
