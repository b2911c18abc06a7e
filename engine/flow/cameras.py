"""The camera stage: frames through the camera detectors, findings with their snapshot and region.

It runs beside the sensor step, not inside it: a slow model delays only its own cameras' frames (their
queues drop the oldest), never the sensor path. Findings join the sensor findings in the incident
tracker (``Pipeline.observe``), so a camera's smoke and a thermal hot spot fuse like any other evidence.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Collection
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from detectors.thermal.thermal_hotspot import ThermalHotspot
from detectors.vision.base import Box, CameraDetector, CameraState, Frame, FrameBatch, frame_registry
from detectors.vision.plume_change import PlumeChange
from detectors.vision.smoke_fire_onnx import SmokeFireOnnx
from engine import metrics
from engine.config.models import EngineConfig
from engine.core.findings import Finding
from engine.flow.camera_learning import AlarmFrame, CameraLearning, HeadKeeping, Verdict, VerdictError
from engine.flow.snapshot_retention import SnapshotRetention

ALARM_CAMERAS = 64  # cameras whose latest alarm frames are held in memory for a verdict (the rest: on disk)
# and at most this many bytes of them: 4 frames of 64 cameras at 3072x2048 are 4.8 GB (the rest: on disk)
ALARM_FRAME_BYTES = 512 * 1024 * 1024
CLEAN_FRAME_EVERY_S = 30.0

logger = logging.getLogger(__name__)


class CameraStage:
    """The configured camera detectors and their per-camera state.

    ``snapshot_dir``: where the frame behind each finding is written as JPEG; the finding's evidence then
    names it (``snapshot``: the API path that serves it) beside the detected ``region``; with learning, the
    frame as it came (``<ms>.frame.jpg``, what a verdict learns from) beside it, one per camera every
    ``CLEAN_FRAME_EVERY_S`` of capture time at most; both within ``cameras.snapshot_quota_mb`` and
    ``snapshot_retention_days`` (``retention``; the runner calls ``prune``). ``learning_dir``: where the
    cameras' learned heads are kept (a folder, the store's ``HeadKeeping`` on a scale-out worker, None: in
    memory; see ``CameraLearning``).
    """

    def __init__(self, cfg: EngineConfig, snapshot_dir: Path | None = None,
                 learning_dir: Path | HeadKeeping | None = None) -> None:  # fmt: skip
        self.detectors: list[CameraDetector[Any]] = [
            frame_registry.build(d) for d in cfg.cameras.detectors if d.enabled
        ]
        self.states: list[CameraState] = [d.new_state() for d in self.detectors]
        self.snapshot_dir = snapshot_dir
        self.retention: SnapshotRetention | None = None
        if snapshot_dir is not None:
            quota = round(cfg.cameras.snapshot_quota_mb * 1e6)
            self.retention = SnapshotRetention(snapshot_dir, quota, cfg.cameras.snapshot_retention_days * 86400.0)
        self.thermal = {(c.site, c.id) for c in cfg.cameras.devices if c.kind == "thermal"}
        self.failures: list[tuple[str, str, list[str]]] = []  # (detector, error, cameras), newest last
        self.learning: CameraLearning | None = None
        settings = cfg.cameras.learning
        self.alarm_frames: OrderedDict[str, deque[AlarmFrame]] = OrderedDict()
        self.thermal_seen: set[tuple[str, str]] = set()  # cameras whose frames came as thermal, not in the config
        self._clean_at: dict[str, float] = {}  # per camera: the capture time of the last frame kept as it came
        # Cameras whose held alarm a verdict restarts: the verdict comes on the API's thread, the tracks are the
        # stage's, so the stage restarts them itself at its next step (never while a detector is updating one).
        self._restart: set[str] = set()
        self._restart_lock = threading.Lock()
        self.frames_per_verdict = settings.frames_per_verdict
        visible = next((d for d in self.detectors if isinstance(d, SmokeFireOnnx)), None)
        heat = next((d for d in self.detectors if isinstance(d, ThermalHotspot)), None)
        plume = next((d for d in self.detectors if isinstance(d, PlumeChange)), None)
        if settings.enabled and (visible is not None or heat is not None or plume is not None):
            self.learning = CameraLearning(settings, visible, heat, learning_dir, plume)

    def __bool__(self) -> bool:
        return bool(self.detectors)

    def step(self, frames: list[Frame], thermal: set[tuple[str, str]] | None = None) -> list[Finding]:
        if not frames or not self.detectors:
            return []
        with self._restart_lock:
            restart, self._restart = self._restart, set()
        for key in restart:
            for state in self.states:
                track = state.tracks.get(key)
                if track is not None:
                    track.level, track.quiet = 0, 0
                    track.recent.clear()
        thermal = self.thermal | (thermal or set())
        self.thermal_seen.update(k for k in thermal if k not in self.thermal)
        findings: list[Finding] = []
        for det, state in zip(self.detectors, self.states, strict=True):
            mine = [f for f in frames if ((f.site, f.camera) in thermal) == (det.modality == "thermal")]
            if not mine:
                continue
            t0 = perf_counter()
            try:
                found = det.process(FrameBatch(mine), state)
            except Exception as exc:
                # One bad frame must not stop fire detection: its cameras start afresh in this detector (what
                # it half-applied cannot be trusted), the other detectors and later frames go on.
                logger.exception("camera detector %s raised on %d frames; their cameras start afresh", det.name,
                                 len(mine))  # fmt: skip
                metrics.DETECTOR_ERRORS.labels(det.name).inc()
                for f in mine:
                    state.tracks.pop(f.key, None)
                self.failures.append((det.name, f"{type(exc).__name__}: {exc}"[:300], [f.key for f in mine]))
                del self.failures[:-100]
                continue
            metrics.FRAME_SECONDS.labels(det.name).observe(perf_counter() - t0)
            by_key = {(f.site, f.camera, f.ts): f for f in mine}
            for x in found:
                frame = by_key.get((x.site, x.device, x.ts))
                if frame is not None and self.learning is not None:
                    self._hold_alarm_frame(frame, x)
                findings.append(self._with_snapshot(x, frame))
        findings.sort(key=lambda f: (f.ts, f.site, f.device, f.detector))
        if self.learning is not None:
            for changed in self.learning.expire(max(f.ts for f in frames)):
                logger.info("camera %s: dismissed scenes expired; head version %s", changed["camera"],
                            changed["version"])  # fmt: skip
        return findings

    def _hold_alarm_frame(self, frame: Frame, finding: Finding) -> None:
        """The camera's latest alarm frames, ``frames_per_verdict`` per detector that alarmed, for a verdict on
        them (a few cameras' worth, newest used)."""
        held = self.alarm_frames.pop(frame.key, None) or deque()
        label = str(finding.evidence.get("class", ""))
        held.appendleft(AlarmFrame(frame.ts, frame.image, boxes_of(finding.evidence), float(finding.score), label,
                                   finding.detector))  # fmt: skip
        mine = [i for i, a in enumerate(held) if a.detector == finding.detector]
        if len(mine) > self.frames_per_verdict:
            del held[mine[-1]]  # that detector's oldest
        self.alarm_frames[frame.key] = held
        while len(self.alarm_frames) > ALARM_CAMERAS:
            self.alarm_frames.popitem(last=False)
        total = sum(a.image.nbytes for q in self.alarm_frames.values() for a in q)
        while total > ALARM_FRAME_BYTES and len(self.alarm_frames) > 1:  # the camera that alarmed last stays
            _key, gone = self.alarm_frames.popitem(last=False)
            total -= sum(a.image.nbytes for a in gone)

    def verdict(self, v: Verdict, findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Learn from an operator's verdict on camera ``v``'s alarm: the frames of ``findings`` (the incident's
        findings of that camera, as the store gives them), else the camera's latest alarm frames held here. Each
        frame carries the detector whose finding it was, and teaches that detector: a thermal camera's hot-spot
        memory, plume_change's dismissed places, the smoke model's head (``CameraLearning.verdict``)."""
        if self.learning is None:
            raise VerdictError("no camera detector here learns (cameras.learning.enabled; smoke_fire_onnx, "
                               "plume_change or thermal_hotspot)")  # fmt: skip
        # Thermal when the config says so, when its frames came as thermal, or when its findings are a thermal
        # detector's (the same camera id is never both).
        modality = {d.name: d.modality for d in self.detectors}
        judged = [f for f in findings or [] if f.get("device") == v.camera]
        thermal = (v.site, v.camera) in self.thermal | self.thermal_seen or any(
            modality.get(f.get("detector", "")) == "thermal" for f in judged
        )
        frames = self._alarm_frames_of(v, findings, thermal)
        t0 = perf_counter()
        try:
            result = self.learning.verdict(v, frames, thermal)
        except VerdictError:
            metrics.CAMERA_VERDICTS.labels(v.verdict, "refused").inc()
            raise
        metrics.CAMERA_VERDICTS.labels(v.verdict, "learned" if result.get("learned") else "kept").inc()
        if "refit_s" in result:  # the smoke model's head was refit
            metrics.CAMERA_REFIT_SECONDS.observe(perf_counter() - t0)
        if v.verdict == "false_alarm" and result.get("learned"):
            # Not fire: the alarm the camera holds (hysteresis, k of n) starts afresh with what it learned, from
            # the stage's next step (its own thread).
            with self._restart_lock:
                self._restart.add(v.key)
        return result

    def _alarm_frames_of(self, v: Verdict, findings: list[dict[str, Any]] | None, thermal: bool) -> list[AlarmFrame]:
        held = list(self.alarm_frames.get(v.key, ()))
        if findings is None:
            return held
        mine = sorted((f for f in findings if f.get("device") == v.camera), key=lambda f: -float(f["ts"]))
        out: list[AlarmFrame] = []
        for f in mine:
            detector = str(f.get("detector", ""))
            if sum(a.detector == detector for a in out) >= self.frames_per_verdict:
                continue
            ts = float(f["ts"])
            frame = next((a for a in held if a.ts == ts and a.detector == detector), None)
            ev = f.get("evidence") or {}
            if frame is None and thermal:  # a hot spot is learned from where, when and how hot: no pixels needed
                frame = AlarmFrame(ts, np.zeros((1, 1), np.float32), boxes_of(ev), float(f.get("score", 0.0)),
                                   detector=detector)  # fmt: skip
            if frame is None and self.snapshot_dir is not None and not thermal:
                import cv2

                path = self.snapshot_dir / v.site / v.camera / f"{round(ts * 1000)}.frame.jpg"
                image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
                if image is not None:
                    frame = AlarmFrame(ts, image, boxes_of(ev), float(f.get("score", 0.0)), str(ev.get("class", "")),
                                       detector)  # fmt: skip
            if frame is not None:
                out.append(frame)
        return out

    def _with_snapshot(self, finding: Finding, frame: Frame | None) -> Finding:
        if frame is None or self.snapshot_dir is None:
            return finding
        import cv2
        import numpy as np

        img = frame.image
        if img.ndim == 2:  # thermal: scaled to 8 bits and coloured, for people to look at
            lo, hi = float(img.min()), float(img.max())
            grey = ((img - lo) / max(hi - lo, 1e-6) * 255.0).astype(np.uint8)
            img = cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)
        img = draw_region(img, finding.evidence.get("region"), finding.evidence.get("region_cells") or [])
        name = f"{round(frame.ts * 1000)}.jpg"
        path = self.snapshot_dir / frame.site / frame.camera / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            self._write(path, cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
        # The frame as it came, what a verdict learns from: at most one per camera every CLEAN_FRAME_EVERY_S of
        # capture time (an alarm's findings come with every frame; a verdict learns from a few of them).
        clean = path.with_suffix(".frame.jpg")
        last = self._clean_at.get(frame.key, float("-inf"))
        if self.learning is not None and frame.image.ndim == 3 and abs(frame.ts - last) >= CLEAN_FRAME_EVERY_S:
            self._write(clean, cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
            self._clean_at[frame.key] = frame.ts
        snapshot = f"/api/snapshots/{frame.site}/{frame.camera}/{name}"
        return dataclasses.replace(finding, evidence={**finding.evidence, "snapshot": snapshot})

    def _write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)
        if self.retention is not None:
            self.retention.kept(path, len(data))

    def prune(self, now: float, held: Collection[str] = ()) -> list[str]:
        """Keep the snapshots and kept frames within their quota and age at capture time ``now``, sparing
        ``held`` (``held_snapshots`` of the open incidents); the files deleted."""
        return self.retention.prune(now, held) if self.retention is not None else []


def boxes_of(evidence: dict[str, Any]) -> list[Box]:
    """A finding's cells (``region_cells``), else its ``region``, as boxes."""
    cells = evidence.get("region_cells") or ([evidence["region"]] if evidence.get("region") else [])
    return [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in cells]


def draw_region(image: Any, region: list[float] | None, cells: list[list[float]]) -> Any:
    """A copy of ``image`` with the alarm's cells (thin, orange) and the box around them (red) drawn on it;
    boxes are x, y, w, h as fractions of the frame.

    >>> import numpy as np
    >>> out = draw_region(np.zeros((100, 200, 3), np.uint8), [0.5, 0.5, 0.25, 0.25], [])
    >>> out[50, 120].tolist(), out[10, 10].tolist()
    ([0, 0, 255], [0, 0, 0])
    """
    import cv2

    if not region and not cells:
        return image
    out = image.copy()
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 400))

    def corners(box: list[float]) -> tuple[tuple[int, int], tuple[int, int]]:
        x, y, bw, bh = box
        return (round(x * w), round(y * h)), (min(w - 1, round((x + bw) * w)), min(h - 1, round((y + bh) * h)))

    for cell in cells:
        cv2.rectangle(out, *corners(cell), (0, 165, 255), thick)
    if region:
        cv2.rectangle(out, *corners(region), (0, 0, 255), thick + 1)
    return out
