"""The camera stage: frames through the camera detectors, findings with their snapshot and region.

It runs beside the sensor step, not inside it: a slow model delays only its own cameras' frames (their
queues drop the oldest), never the sensor path. Findings join the sensor findings in the incident
tracker (``Pipeline.observe``), so a camera's smoke and a thermal hot spot fuse like any other evidence.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from time import perf_counter
from typing import Any

from detectors.vision.base import CameraDetector, CameraState, Frame, FrameBatch, frame_registry
from engine import metrics
from engine.config.models import EngineConfig
from engine.core.findings import Finding

logger = logging.getLogger(__name__)


class CameraStage:
    """The configured camera detectors and their per-camera state.

    ``snapshot_dir``: where the frame behind each finding is written as JPEG; the finding's evidence then
    names it (``snapshot``: the API path that serves it) beside the detected ``region``.
    """

    def __init__(self, cfg: EngineConfig, snapshot_dir: Path | None = None) -> None:
        self.detectors: list[CameraDetector[Any]] = [
            frame_registry.build(d) for d in cfg.cameras.detectors if d.enabled
        ]
        self.states: list[CameraState] = [d.new_state() for d in self.detectors]
        self.snapshot_dir = snapshot_dir
        self.thermal = {(c.site, c.id) for c in cfg.cameras.devices if c.kind == "thermal"}
        self.failures: list[tuple[str, str, list[str]]] = []  # (detector, error, cameras), newest last

    def __bool__(self) -> bool:
        return bool(self.detectors)

    def step(self, frames: list[Frame], thermal: set[tuple[str, str]] | None = None) -> list[Finding]:
        if not frames or not self.detectors:
            return []
        thermal = self.thermal | (thermal or set())
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
            findings.extend(self._with_snapshot(x, by_key.get((x.site, x.device, x.ts))) for x in found)
        findings.sort(key=lambda f: (f.ts, f.site, f.device, f.detector))
        return findings

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
            path.write_bytes(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
        snapshot = f"/api/snapshots/{frame.site}/{frame.camera}/{name}"
        return dataclasses.replace(finding, evidence={**finding.evidence, "snapshot": snapshot})


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
