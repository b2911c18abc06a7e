"""``thermal_hotspot``: hot spots in thermal frames, with pre-alarm and alarm levels and hysteresis.

Frames come in degrees C (a radiometric camera, or raw counts turned into °C by the camera's linear
calibration in config) or as raw counts, which are only relative: then a pixel's heat is a robust
z-score. With ``contrast: local`` (the default) it is the pixel's excess over its own neighbourhood (the
frame minus a Gaussian blur of ``local_sigma`` of the frame's width), in units of that excess's robust
spread over the scene: a small fire stands out of the ground around it, while a sun-heated roof or a warm
slope is hot all over and scores only at its edges. ``contrast: scene`` compares each pixel with the whole
scene (median and MAD), as earlier versions did.

A hot spot is a blob above the pre-alarm heat. Its score is its peak heat over the alarm heat, so the
shared confirmation's levels read: pre-alarm (orange) at ``pre_alarm/alarm``, alarm (red) at 1, clear
below ``clear/alarm`` (e.g. 50 °C pre-alarm, 55 °C alarm, clear below 52 °C). A fire flickers: its
pixels change from frame to frame by degrees; a static hot object (a sun-heated rock, a chimney) holds
steady. Steady heat is learnt as static and ignored: at once for what is already hot when the camera is
first seen, after ``static_frames`` frames for what appears later.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

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
    contrast: Literal["local", "scene"] = Field(
        "local", description="counts: heat against the pixel's neighbourhood (local) or the whole scene (scene)."
    )
    local_sigma: float = Field(
        0.0125, gt=0, le=0.5, description="contrast local: the neighbourhood's Gaussian sigma, a share of the width."
    )
    pre_alarm: float = Field(50.0, description="Pre-alarm heat (°C, or z-score with counts).")
    alarm: float = Field(55.0, description="Alarm heat (°C, or z-score with counts).")
    clear: float = Field(52.0, description="An alarmed camera clears below this heat (hysteresis).")
    min_pixels: int = Field(2, ge=1, description="Smaller hot blobs are noise (a distant fire is a few pixels).")
    static_frames: int = Field(
        30, ge=2, description="Steady heat for this many frames is a static object (a sun-heated rock) and ignored."
    )
    rise_per_min: float = Field(
        10.0,
        ge=0,
        description="A spot heating this fast (°C or z per minute) is a pre-alarm even below pre_alarm (0: off).",
    )
    rise_floor: float = Field(35.0, description="…when it is at least this hot (°C, or z with counts).")
    still_change: float = Field(
        2.0, gt=0, description="Steady: the pixel's mean frame-to-frame change is below this (°C, or z with counts)."
    )
    confirm_k: int = Field(2, ge=1, description="An alarm needs this many of the last `confirm_n` frames.")
    confirm_n: int = Field(3, ge=1, description="Analysed frames of one camera considered for confirmation.")
    max_region_frac: float = Field(0.9, gt=0, le=1, description="A hot region larger than this share is discounted.")
    scene_memory: bool = Field(False, description="Off: the detector learns static heat per pixel itself.")
    camera_alarm: dict[str, float] = Field(
        default_factory=dict,
        description="Per camera (`site/camera` or `camera`): its own alarm heat; its pre-alarm and clear scale "
        "with it (a low-resolution camera sees a small fire with less contrast).",
    )

    def alarm_of(self, key: str) -> float:
        """The alarm heat of the camera ``site/camera``: its own, else the detector's."""
        return self.camera_alarm.get(key, self.camera_alarm.get(key.rpartition("/")[2], self.alarm))

    @model_validator(mode="before")
    @classmethod
    def _levels(cls, data: Any) -> Any:
        if isinstance(data, dict) and "levels" not in data:
            alarm = float(data.get("alarm", 55.0))
            if not float(data.get("pre_alarm", 50.0)) < alarm:
                raise ValueError("pre_alarm must be below alarm")
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
        bad = {k: v for k, v in self.camera_alarm.items() if not v > 0}
        if bad:
            raise ValueError(f"camera_alarm must be above 0: {bad}")
        return self


@register_camera
class ThermalHotspot(CameraDetector[ThermalHotspotConfig]):
    """Per camera: how long each pixel has been hot, how much it flickers, and the last peak and its time."""

    config_class = ThermalHotspotConfig
    modality: ClassVar[Literal["visible", "thermal"]] = "thermal"
    classes: ClassVar[tuple[str, ...]] = ("fire",)

    @classmethod
    def example_config(cls) -> ThermalHotspotConfig:
        return ThermalHotspotConfig(type="thermal_hotspot")

    def heat(self, image: npt.NDArray[Any], key: str = "") -> npt.NDArray[np.float32]:
        """Heat in the detector's units, scaled so that the camera's own alarm (``camera_alarm``) reads as
        the detector's ``alarm``."""
        heat = self._heat(image)
        own = self.config.alarm_of(key)
        return heat if own == self.config.alarm else (heat * (self.config.alarm / own)).astype(np.float32)

    def _heat(self, image: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        import cv2  # imported where used: loading the config must not load OpenCV

        img = image.astype(np.float32)
        if img.ndim == 3:
            img = img.mean(axis=2)
        if self.config.units == "celsius":
            return img
        if self.config.contrast == "local":
            img = img - cv2.GaussianBlur(img, (0, 0), self.config.local_sigma * img.shape[1])
        sample = img[::4, ::4]  # the scene's robust statistics from a sixteenth of its pixels: 16x cheaper
        med = float(np.median(sample))
        mad = float(np.median(np.abs(sample - med))) * 1.4826
        return (img - med) / max(mad, 1e-6)

    def observe(self, batch: FrameBatch, state: CameraState) -> list[Observation]:
        import cv2  # imported where used: loading the config must not load OpenCV

        cfg = self.config
        out: list[Observation] = []
        for frame in batch.frames:
            heat = self.heat(frame.image, frame.key)
            track = state.track(frame.key)
            hot = heat >= cfg.pre_alarm
            m = track.model
            if m.get("age") is None or m["age"].shape != hot.shape:
                m.update(age=np.zeros(hot.shape, np.int32), prev=heat, jitter=np.zeros(hot.shape, np.float32), seen=0)
            m["seen"] += 1
            m["age"] = np.where(hot, m["age"] + 1, 0).astype(np.int32)
            m["jitter"] = (0.7 * m["jitter"] + 0.3 * np.abs(heat - m["prev"])).astype(np.float32)
            m["prev"] = heat
            # Static: steady heat that has been there since the camera was first seen, or for static_frames. A
            # single frame (`gridwatch score`, the first of a camera) is judged on its heat alone.
            steady = m["jitter"] < cfg.still_change
            since_first = (m["age"] == m["seen"]) & (m["seen"] >= 2)
            static = steady & (since_first | (m["age"] >= cfg.static_frames))
            live = hot & ~static
            best, region, area = 0.0, [], 0
            h, w = heat.shape
            if live.any():
                n, labels, stats, _ = cv2.connectedComponentsWithStats(live.astype(np.uint8), connectivity=8)
                for k in range(1, n):
                    if stats[k, cv2.CC_STAT_AREA] < cfg.min_pixels:
                        continue
                    peak = float(heat[labels == k].max())
                    if peak > best:
                        x, y, bw, bh = (int(v) for v in stats[k, :4])
                        best, region, area = peak, [(x / w, y / h, bw / w, bh / h)], int(stats[k, cv2.CC_STAT_AREA])
            # Rate of rise and growth against the camera's previous frame: a spot heating fast is at least a
            # pre-alarm even below the pre-alarm heat.
            rise = 0.0
            rising = float(heat.max())
            prev_peak, prev_ts = m.get("peak"), m.get("peak_ts")
            if prev_peak is not None and prev_ts is not None and frame.ts > prev_ts:
                rise = (rising - prev_peak) / ((frame.ts - prev_ts) / 60.0)
            m.update(peak=rising, peak_ts=frame.ts)
            score = max(0.0, best / cfg.alarm) if best > 0 else 0.0
            if cfg.rise_per_min and rise >= cfg.rise_per_min and rising >= cfg.rise_floor:
                score = max(score, min(cfg.levels.values()))
                if not region:
                    yy, xx = np.unravel_index(int(np.argmax(heat)), heat.shape)
                    region = [(max(0, xx - 2) / w, max(0, yy - 2) / h, 5 / w, 5 / h)]
            detail = {"peak": round(best, 2), "area_px": area, "rise_per_min": round(rise, 3)}
            out.append(Observation(frame, {"fire": round(score, 6)}, {"fire": region}, detail))
        return out
