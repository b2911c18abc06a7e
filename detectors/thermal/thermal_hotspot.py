"""``thermal_hotspot``: hot spots in thermal frames, with pre-alarm and alarm levels and hysteresis.

Frames come in degrees C (a radiometric camera, or raw counts turned into °C by the camera's linear
calibration in config) or as raw counts, which are only relative: then a pixel's heat is its robust
z-score against the scene (median and MAD), as FLAME-T's uncalibrated cameras need.

A hot spot is a blob above the pre-alarm heat. Its score is its peak heat over the alarm heat, so the
shared confirmation's levels read: pre-alarm (orange) at ``pre_alarm/alarm``, alarm (red) at 1, clear
below ``clear/alarm`` (e.g. 50 °C pre-alarm, 55 °C alarm, clear below 52 °C). A fire flickers: its
pixels change from frame to frame by degrees; a static hot object (a sun-heated rock, a chimney) holds
steady. Steady heat is learnt as static and ignored: at once for what is already hot when the camera is
first seen, after ``static_frames`` frames for what appears later.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from detectors.vision.base import (
    CameraDetector,
    CameraDetectorConfig,
    CameraState,
    FrameBatch,
    Observation,
    register_camera,
)


class ThermalHotspotConfig(CameraDetectorConfig):
    """Config of the ``thermal_hotspot`` detector."""

    type: Literal["thermal_hotspot"] = Field("thermal_hotspot", description="Detector type.")
    units: Literal["celsius", "counts"] = Field(
        "celsius", description="celsius: frames in °C (calibrated); counts: raw, judged by robust z-score."
    )
    pre_alarm: float = Field(50.0, description="Pre-alarm heat (°C, or z-score with counts).")
    alarm: float = Field(55.0, description="Alarm heat (°C, or z-score with counts).")
    clear: float = Field(52.0, description="An alarmed camera clears below this heat (hysteresis).")
    min_pixels: int = Field(4, ge=1, description="Smaller hot blobs are noise.")
    static_frames: int = Field(
        30, ge=2, description="Steady heat for this many frames is a static object (a sun-heated rock) and ignored."
    )
    still_change: float = Field(
        2.0, gt=0, description="Steady: the pixel's mean frame-to-frame change is below this (°C, or z with counts)."
    )
    confirm_k: int = Field(2, ge=1, description="An alarm needs this many of the last `confirm_n` frames.")
    confirm_n: int = Field(3, ge=1, description="Analysed frames of one camera considered for confirmation.")
    max_region_frac: float = Field(0.9, gt=0, le=1, description="A hot region larger than this share is discounted.")

    @model_validator(mode="before")
    @classmethod
    def _levels(cls, data: Any) -> Any:
        if isinstance(data, dict) and "levels" not in data:
            alarm = float(data.get("alarm", 55.0))
            data = {
                **data,
                "levels": {"orange": float(data.get("pre_alarm", 50.0)) / alarm, "red": 1.0},
                "clear_score": float(data.get("clear", 52.0)) / alarm,
            }
        return data

    @model_validator(mode="after")
    def _order(self) -> ThermalHotspotConfig:
        if not self.pre_alarm < self.alarm:
            raise ValueError("pre_alarm must be below alarm")
        if not self.clear <= self.alarm:
            raise ValueError("clear must not be above alarm")
        return self


@register_camera
class ThermalHotspot(CameraDetector[ThermalHotspotConfig]):
    """Per camera: how long each pixel has been hot, and the hot area when it was first seen."""

    config_class = ThermalHotspotConfig
    modality: ClassVar[Literal["visible", "thermal"]] = "thermal"
    classes: ClassVar[tuple[str, ...]] = ("fire",)

    @classmethod
    def example_config(cls) -> ThermalHotspotConfig:
        return ThermalHotspotConfig(type="thermal_hotspot")

    def heat(self, image: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        img = image.astype(np.float32)
        if img.ndim == 3:
            img = img.mean(axis=2)
        if self.config.units == "celsius":
            return img
        med = float(np.median(img))
        mad = float(np.median(np.abs(img - med))) * 1.4826
        return (img - med) / max(mad, 1e-6)

    def observe(self, batch: FrameBatch, state: CameraState) -> list[Observation]:
        cfg = self.config
        out: list[Observation] = []
        for frame in batch.frames:
            heat = self.heat(frame.image)
            track = state.track(frame.key)
            hot = heat >= cfg.pre_alarm
            m = track.model
            if m.get("age") is None or m["age"].shape != hot.shape:
                m.update(age=np.zeros(hot.shape, np.int32), prev=heat, jitter=np.zeros(hot.shape, np.float32), seen=0)
            m["seen"] += 1
            m["age"] = np.where(hot, m["age"] + 1, 0).astype(np.int32)
            m["jitter"] = (0.7 * m["jitter"] + 0.3 * np.abs(heat - m["prev"])).astype(np.float32)
            m["prev"] = heat
            # Static: steady heat that has been there since the camera was first seen, or for static_frames.
            steady = m["jitter"] < cfg.still_change
            static = steady & ((m["age"] == m["seen"]) | (m["age"] >= cfg.static_frames))
            live = hot & ~static
            n, labels, stats, _ = cv2.connectedComponentsWithStats(live.astype(np.uint8), connectivity=8)
            best, region = 0.0, []
            h, w = heat.shape
            for k in range(1, n):
                if stats[k, cv2.CC_STAT_AREA] < cfg.min_pixels:
                    continue
                peak = float(heat[labels == k].max())
                if peak > best:
                    x, y, bw, bh = (int(v) for v in stats[k, :4])
                    best, region = peak, [(x / w, y / h, bw / w, bh / h)]
            score = max(0.0, best / cfg.alarm) if best > 0 else 0.0
            out.append(Observation(frame, {"fire": round(score, 6)}, {"fire": region}))
        return out
