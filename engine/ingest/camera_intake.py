"""Camera frames in: checked, throttled per camera, queued with a bound (oldest dropped), then decoded.

On the MQTT network thread a frame costs only checks of its topic, time, size and image header: it is
queued as bytes, and decoded (and masked) by ``take``, on the camera stage's thread. A slow or hostile
image therefore never holds up the sensor readings that share the connection, and a frame dropped from a
full queue is never decoded at all. Frames are not kept in the pipeline's state: the camera stage writes
the frame behind each finding as the incident's snapshot. The capture time comes from the MQTT v5 user
property ``ts`` (epoch seconds or ISO-8601 with offset) when present, else the arrival time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from detectors.vision.base import Frame
from engine import metrics
from engine.config.models import CameraConfig, EngineConfig
from engine.ingest.bounds import TimeWindow
from engine.ingest.decode import Rejection
from engine.ingest.frames import FrameError, checked_size, decode, pixel_limit
from engine.ingest.thermal_units import RefusedFrames, decode_camera_frame
from engine.ingest.timestamps import TimestampError, parse_ts_text
from engine.ingest.topics import Topic

Reject = Callable[[list[Rejection], str, bytes, float], None]


@dataclass(frozen=True)
class QueuedFrame:
    """A frame waiting to be decoded: where it came from, when it was taken, its bytes and its camera."""

    site: str
    camera: str
    ts: float
    topic: str
    payload: bytes
    config: CameraConfig
    received_at: float


def capture_time(raw: str | None, now: float) -> float:
    """The ``ts`` user property (epoch seconds or ISO-8601 with offset), else the arrival time.

    >>> capture_time("1732345678.5", 0.0), capture_time(None, 5.0)
    (1732345678.5, 5.0)
    """
    return now if raw is None else parse_ts_text(raw)


class CameraIntake:
    """Thread-safe: ``handle`` is called on the MQTT thread, ``take`` by the camera stage."""

    def __init__(self, cfg: EngineConfig, reject: Reject) -> None:
        self.cameras = {(c.site, c.id): c for c in cfg.cameras.devices}
        self.known_sites = {s.id for s in cfg.sites}
        self.reject_unknown = cfg.ingest.reject_unknown_sites
        self.max_bytes = cfg.ingest.max_payload_bytes * 16  # frames are larger than readings
        self._reject = reject
        self._lock = threading.Lock()
        self._queues: dict[tuple[str, str], deque[QueuedFrame]] = {}
        self._last: dict[tuple[str, str], float] = {}
        self.thermal: set[tuple[str, str]] = {(c.site, c.id) for c in cfg.cameras.devices if c.kind == "thermal"}
        self.queue_frames = cfg.cameras.queue_frames
        self.window = TimeWindow(cfg.ingest.max_future_s, cfg.ingest.max_past_s)
        self.arrived = threading.Event()
        self.latest: dict[tuple[str, str], QueuedFrame] = {}  # each camera's newest frame (the operator page)
        self._latest_bytes = 0
        self.latest_max_bytes = int(cfg.cameras.latest_frames_mb * 1e6)
        self.max_cameras = cfg.cameras.max_cameras  # of cameras not in the config
        self._strangers: set[tuple[str, str]] = set()  # camera ids not in the config that send frames
        self.refused = RefusedFrames()  # cameras whose frames are refused lately (a readiness warning)

    def camera(self, t: Topic) -> CameraConfig:
        cam = self.cameras.get((t.site, t.device))
        if cam is None:
            cam = CameraConfig(site=t.site, id=t.device, kind="thermal" if t.kind == "thermal" else "visible")
        return cam

    def handle(self, t: Topic, topic: str, payload: bytes, props: dict[str, str], now: float) -> None:
        if self.reject_unknown and t.site not in self.known_sites:
            self._reject([Rejection("unknown_site", f"site {t.site!r} is not in the config")], topic, payload, now)
            return
        if len(payload) > self.max_bytes:
            self._reject([Rejection("too_large", f"{len(payload)} bytes")], topic, payload[:64], now)
            return
        try:
            ts = capture_time(props.get("ts"), now)
            with self._lock:
                self.window.check(ts, now)
        except TimestampError as exc:
            self._reject([Rejection(exc.reason, str(exc))], topic, payload[:64], now)
            return
        cam = self.camera(t)
        key = (t.site, t.device)
        with self._lock:
            last = self._last.get(key)
            stranger = key not in self.cameras and key not in self._strangers
            refused = stranger and len(self._strangers) >= self.max_cameras
            if stranger and not refused:
                self._strangers.add(key)
            if last is not None and 0 <= ts - last < cam.min_interval_s:
                metrics.FRAMES.labels("skipped_interval").inc()
                return
        if refused:
            detail = (f"already {self.max_cameras} cameras not in the config (cameras.max_cameras): "
                      f"{t.site}/{t.device} not tracked; add it to cameras.devices")  # fmt: skip
            self.refused.note(t.site, t.device, "camera_limit", now)  # a readiness warning, not silence
            self._reject([Rejection("camera_limit", detail)], topic, payload[:64], now)
            return
        try:  # the header only: a bomb or a non-image is refused here, before it is queued
            checked_size(payload, pixel_limit(cam.kind == "thermal"))
        except FrameError as exc:
            self._reject([Rejection(exc.reason, str(exc))], topic, payload[:64], now)
            return
        queued = QueuedFrame(t.site, t.device, ts, topic, payload, cam, now)
        with self._lock:
            if cam.kind == "thermal":
                self.thermal.add(key)
            self._last[key] = ts
            newest = self.latest.get(key)
            if newest is None or ts >= newest.ts:
                self._keep_latest(key, queued, newest)
            q = self._queues.setdefault(key, deque())
            if len(q) >= self.queue_frames:
                q.popleft()  # a slow detector must not hold up the others: the oldest frame goes
                metrics.FRAMES.labels("dropped").inc()
            q.append(queued)
        self.arrived.set()

    def _keep_latest(self, key: tuple[str, str], frame: QueuedFrame, replaced: QueuedFrame | None) -> None:
        """``frame`` as the camera's newest, within ``cameras.latest_frames_mb`` (under the lock): the cameras
        heard from least recently are let go first (they show no frame on the page until their next one)."""
        if replaced is not None:
            self._latest_bytes -= len(replaced.payload)
            del self.latest[key]  # to the end: the dict's order is the order cameras were last heard from
        self.latest[key] = frame
        self._latest_bytes += len(frame.payload)
        while self._latest_bytes > self.latest_max_bytes and len(self.latest) > 1:
            oldest = next(iter(self.latest))
            self._latest_bytes -= len(self.latest.pop(oldest).payload)

    @staticmethod
    def mask(image: np.ndarray, cam: CameraConfig) -> np.ndarray:
        if not cam.masks:
            return image
        out = image.copy()
        h, w = out.shape[:2]
        fill = float(np.median(out)) if out.ndim == 2 else 0
        for x, y, bw, bh in cam.masks:
            out[int(y * h) : int((y + bh) * h), int(x * w) : int((x + bw) * w)] = fill
        return out

    def latest_image(self, site: str, camera: str) -> tuple[float, bytes, str] | None:
        """The camera's newest frame for a browser: (capture time, image bytes, media type). Visible JPEG and
        PNG as they came; a thermal frame as a false-colour PNG of its °C (inferno, its own min to max)."""
        with self._lock:
            f = self.latest.get((site, camera))
        if f is None:
            return None
        if f.config.kind != "thermal" and f.payload[:2] == b"\xff\xd8":
            return f.ts, f.payload, "image/jpeg"
        if f.config.kind != "thermal" and f.payload[:4] == b"\x89PNG":
            return f.ts, f.payload, "image/png"
        try:
            image = decode(f.payload, thermal=f.config.kind == "thermal", gain=f.config.gain, offset=f.config.offset)
        except FrameError:
            return None
        return f.ts, false_colour_png(image), "image/png"

    def take(self) -> list[Frame]:
        """Every queued frame, decoded and masked, oldest first per camera (call it off the network thread);
        one that does not decode is dead-lettered."""
        with self._lock:
            queued = [f for q in self._queues.values() for f in q]
            for q in self._queues.values():
                q.clear()
            self.arrived.clear()
        frames = []
        now = time.time()
        for f in queued:
            metrics.FRAME_AGE.observe(now - f.ts)  # a frame scored late is a fire seen late
            cam = f.config
            try:  # thermal: in the units the camera declares (counts are never read as degrees)
                image, units = decode_camera_frame(f.payload, cam)
            except FrameError as exc:
                self.refused.note(f.site, f.camera, exc.reason, f.received_at)
                self._reject([Rejection(exc.reason, str(exc))], f.topic, f.payload[:64], f.received_at)
                continue
            frames.append(Frame(f.site, f.camera, f.ts, self.mask(image, cam), source=f.topic, units=units))
        frames.sort(key=lambda f: (f.ts, f.site, f.camera))
        metrics.FRAMES.labels("analysed").inc(len(frames))
        return frames


def false_colour_png(image: np.ndarray) -> bytes:
    """A frame as a PNG for the eye: a thermal (°C, 2-D) frame in the inferno colour map over its own range."""
    import cv2

    if image.ndim == 2:
        lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
        scaled = np.clip((image - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
        image = cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise FrameError("not_an_image", "could not encode the frame as PNG")
    return bytes(buf.tobytes())
