"""``flame_color_motion``: the classical baseline, flame colour plus flicker, with no model.

Flame pixels follow Chen, Wu and Chiou's rules (2004, *ICIP*, "An early fire-detection method based on
image processing"): red above ``red_min``, ``R >= G > B``, and saturation high enough for the red
(``S >= (255 - R) * sat_ratio / red_min``). Flames also flicker: a flame-coloured blob counts only if
``flicker_share`` of its pixels changed brightness since the camera's previous analysed frame (a red
car, a sunset or a lamp holds steady); a picture with no previous frame (``gridwatch score`` on a photo)
counts colour at ``still_weight``. The score is the counted flame area as a share of ``full_area``;
the region is the bounding box of the largest counted blob. Visible frames only; smoke is left to
the model.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.vision.base import (
    CameraDetector,
    CameraDetectorConfig,
    CameraState,
    FrameBatch,
    Observation,
    register_camera,
)


class FlameColorMotionConfig(CameraDetectorConfig):
    """Config of the ``flame_color_motion`` detector."""

    type: Literal["flame_color_motion"] = Field("flame_color_motion", description="Detector type.")
    width: int = Field(160, ge=32, description="Frames are analysed at this width (aspect kept).")
    red_min: int = Field(150, ge=1, le=255, description="Least red of a flame pixel (Chen's R_T).")
    sat_ratio: float = Field(0.5, gt=0, description="Saturation rule's S_T (with red_min).")
    flicker_min: int = Field(12, ge=0, description="Brightness change since the previous frame that counts as flicker.")
    flicker_share: float = Field(
        0.1, gt=0, le=1, description="A flame-coloured blob counts when this share of its pixels flickered."
    )
    still_weight: float = Field(
        0.35, ge=0, le=1, description="Weight of flame colour in a frame with no previous one to judge flicker by."
    )
    full_area: float = Field(0.01, gt=0, le=1, description="Flickering flame area (share of frame) that scores 1.")
    scene_memory: bool = Field(False, description="Off: flicker between frames already tells a steady red object.")


@register_camera
class FlameColorMotion(CameraDetector[FlameColorMotionConfig]):
    """Colour rules and frame differencing per camera; state is the camera's previous small grey frame."""

    config_class = FlameColorMotionConfig
    modality: ClassVar[Literal["visible", "thermal"]] = "visible"
    classes: ClassVar[tuple[str, ...]] = ("fire",)

    @classmethod
    def example_config(cls) -> FlameColorMotionConfig:
        return FlameColorMotionConfig(type="flame_color_motion", confirm_k=2, confirm_n=3)

    def flame_mask(self, small: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        import cv2  # imported where used: loading the config must not load OpenCV

        cfg = self.config
        b, g, r = (small[:, :, i].astype(np.int16) for i in range(3))
        sat = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)[:, :, 1].astype(np.float32) / 255.0
        rule_sat = sat >= (255.0 - r) * cfg.sat_ratio / cfg.red_min
        out: npt.NDArray[np.bool_] = (r > cfg.red_min) & (r >= g) & (g > b) & rule_sat
        return out

    def observe(self, batch: FrameBatch, state: CameraState) -> list[Observation]:
        import cv2  # imported where used: loading the config must not load OpenCV

        cfg = self.config
        out: list[Observation] = []
        for frame in batch.frames:
            h, w = frame.image.shape[:2]
            size = (cfg.width, max(1, round(h * cfg.width / w)))
            small: npt.NDArray[np.uint8] = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA).astype(np.uint8)
            grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
            track = state.track(frame.key)
            prev: Any = track.model.get("grey")
            mask = self.flame_mask(small)
            track.model["grey"] = grey
            n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
            if prev is not None and prev.shape == grey.shape:
                flicker = np.abs(grey.astype(np.int16) - prev.astype(np.int16)) >= cfg.flicker_min
                # A flame-coloured blob counts whole when enough of it flickers; a steady red blob (a car, a
                # sunset, a lamp) does not count at all.
                moving = np.bincount(labels[flicker], minlength=n)
                weights = np.where(moving >= cfg.flicker_share * stats[:, cv2.CC_STAT_AREA], 1.0, 0.0)
            else:
                weights = np.full(n, cfg.still_weight)  # a still picture scored alone: colour only
            weights[0] = 0.0  # the background component
            counted = weights * stats[:, cv2.CC_STAT_AREA]
            score = min(1.0, float(counted.sum()) / mask.size / cfg.full_area)
            regions = []
            if n > 1 and counted[1:].max() > 0:
                k = 1 + int(np.argmax(counted[1:]))
                x, y, bw, bh = (int(v) for v in stats[k, :4])
                sh, sw = mask.shape
                regions = [(x / sw, y / sh, bw / sw, bh / sh)]
            out.append(Observation(frame, {"fire": round(score, 6)}, {"fire": regions}))
        return out
