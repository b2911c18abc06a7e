"""``thermal_hotspot``: hot spots in thermal frames, with pre-alarm and alarm levels and hysteresis.

Frames come in degrees C (a radiometric camera, or raw counts turned into °C by the camera's linear
calibration in config) or as raw counts, which are only relative: then a pixel's heat is its robust
z-score against the scene (median and MAD), as FLAME-T's uncalibrated cameras need.

A hot spot is a blob above the pre-alarm heat. Its score is its peak heat over the alarm heat, so the
shared confirmation's levels read: pre-alarm (orange) at ``pre_alarm/alarm``, alarm (red) at 1, clear
below ``clear/alarm`` (e.g. 50 °C pre-alarm, 55 °C alarm, clear below 52 °C). A growing fire gets
hotter or larger; a static hot object (a sun-heated rock, a chimney) does not: a pixel that has been hot
in ``static_frames`` consecutive frames without the blob growing is learnt as static and ignored.
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
    static_frames: int = Field(30, ge=2, description="Hot this many frames without growing: a static object.")
    growth: float = Field(1.2, ge=1, description="A blob this many times its size when first seen is growing.")
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
            age: npt.NDArray[np.int32] | None = track.model.get("hot_age")
            if age is None or age.shape != hot.shape:
                age = np.zeros(hot.shape, np.int32)
            age = np.where(hot, age + 1, 0).astype(np.int32)
            first_area = float(track.model.get("first_area", 0.0))
            area = float(hot.sum())
            if area == 0:
                first_area = 0.0
            elif first_area == 0:
                first_area = area
            growing = first_area > 0 and area >= cfg.growth * first_area
            if growing:
                first_area = area  # a growing blob restarts the static clock
                age = np.where(hot, 1, 0).astype(np.int32)
            static = age >= cfg.static_frames
            track.model.update(hot_age=age, first_area=first_area)
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
