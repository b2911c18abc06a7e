"""``thermal_hotspot``: hot spots in thermal frames, with pre-alarm and alarm levels and hysteresis.

Frames come in degrees C (a radiometric camera, or raw counts turned into °C by the camera's linear
calibration in config) or as raw counts, which are only relative: then a pixel's heat is a robust
z-score. With ``contrast: local`` (the default) it is the pixel's excess over its own neighbourhood (the
frame minus a Gaussian blur of ``local_sigma`` of the frame's width), in units of that excess's robust
spread over the scene: a small fire stands out of the ground around it, while a sun-heated roof or a warm
slope is hot all over and scores only at its edges. ``contrast: scene`` compares each pixel with the whole
scene (median and MAD), as earlier versions did.

Which it is comes from the frame where it says (``Frame.units``: the camera's declaration, or integer counts
with no calibration) before the detector's ``units``: raw counts are never read as degrees. A frame taken
as °C whose median is no scene temperature (-90 to 300 °C) is refused, never alarmed (detail ``refused``).

Counts are auto-calibrated per camera from the scene's own statistics: the robust spread a pixel's excess is
divided by is at least ``span_floor`` of the scene's 1st-99th percentile span, and the camera keeps a running
value of it (``calibration_frames``), so a flat night scene or an automatic-gain 8-bit picture, whose spread is
a count or two, does not turn noise or a warm person into a fire, and one frame does not recalibrate a camera.

A hot spot is a blob above the pre-alarm heat. Its score is its peak heat over the alarm heat, so the
shared confirmation's levels read: pre-alarm (orange) at ``pre_alarm/alarm``, alarm (red) at 1, clear
below ``clear/alarm`` (e.g. 50 °C pre-alarm, 55 °C alarm, clear below 52 °C).

Per-camera scene memory (``scene_memory``, on by default): the frame's heat is also given as a grid of
cells of ``cell_px`` pixels (each cell's peak, in the same score units), and the shared scene memory learns
each camera's normal per cell (the median over its recent samples). A cell alarms only where it reaches
the pre-alarm *and* rises ``min_rise`` above its own normal: a sun-heated rock or a chimney that is always
hot is that camera's normal and never alarms, while a new fire in one cell does, even on a low-resolution
camera whose fire is a few pixels with less contrast than the hot rocks around it. A single frame
(`gridwatch score`) is judged on its heat alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from detectors.vision.base import (
    Box,
    CameraDetector,
    CameraDetectorConfig,
    CameraState,
    CameraTrack,
    Frame,
    FrameBatch,
    Observation,
    register_camera,
)
from engine.ingest.frames import THERMAL_SCENE_C


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
    span_floor: float = Field(
        0.1,
        ge=0,
        le=1,
        description="counts: the robust spread is at least this share of the scene's 1st-99th percentile span (an "
        "automatic-gain picture or a flat night scene has a spread of a count or two).",
    )
    calibration_frames: int = Field(
        10, ge=1, description="counts: a camera's spread is a running mean over about this many frames."
    )
    pre_alarm: float = Field(50.0, description="Pre-alarm heat (°C, or z-score with counts).")
    alarm: float = Field(55.0, description="Alarm heat (°C, or z-score with counts).")
    clear: float = Field(52.0, description="An alarmed camera clears below this heat (hysteresis).")
    min_pixels: int = Field(2, ge=1, description="Smaller hot blobs are noise (a distant fire is a few pixels).")
    rise_per_min: float = Field(
        10.0,
        ge=0,
        description="A spot heating this fast (°C or z per minute) is a pre-alarm even below pre_alarm (0: off).",
    )
    rise_floor: float = Field(35.0, description="…when it is at least this hot (°C, or z with counts).")
    rise_over_s: float = Field(
        30.0,
        ge=1,
        description="The rate of rise is measured against the camera's hottest spot at least this long ago: between "
        "frames under a second apart, flicker read as thousands of °C a minute.",
    )
    cell_px: int = Field(
        8, ge=1, description="Scene memory: the side of a cell of the heat grid, in pixels (8: 20x15 on a 160x120)."
    )
    cell_persist: int = Field(
        1, ge=1, description="Scene memory: a heat cell counts when it rose in this many of the last confirm_n frames."
    )
    confirm_k: int = Field(2, ge=1, description="An alarm needs this many of the last `confirm_n` frames.")
    confirm_n: int = Field(3, ge=1, description="Analysed frames of one camera considered for confirmation.")
    max_region_frac: float = Field(0.9, gt=0, le=1, description="A hot region larger than this share is discounted.")
    view_change: float = Field(
        0.3,
        gt=0,
        description="Scene memory: a frame whose coarse copy moved by more than this (its median pixel, in units of "
        "the scene's robust spread) since the camera's previous one is a new view (a PTZ preset, a bumped camera) "
        "and the camera's memory starts again.",
    )
    min_rise: float = Field(
        0.3, ge=0, le=1, description="Scene memory: how far above its normal a cell must rise (a share of the alarm)."
    )
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


@dataclass(frozen=True)
class DismissedHotSpot:
    """A hot spot an operator called a false alarm: where (x, y, w, h as fractions of the frame), at what time
    of day (seconds after midnight UTC, within ``window_s``), how hot (in score units) and until when."""

    region: tuple[float, float, float, float]
    time_of_day: float
    score: float
    expires_at: float
    window_s: float = 3600.0
    rise: float = 0.2


@register_camera
class ThermalHotspot(CameraDetector[ThermalHotspotConfig]):
    """Per camera: the last peak and its time (rate of rise); its normal heat per cell is the scene memory."""

    config_class = ThermalHotspotConfig
    modality: ClassVar[Literal["visible", "thermal"]] = "thermal"
    classes: ClassVar[tuple[str, ...]] = ("fire",)

    def __init__(self, config: ThermalHotspotConfig) -> None:
        super().__init__(config)
        # Per camera (``site/camera``): hot spots operators called false alarms (the camera stage's learning).
        self.dismissed: dict[str, list[DismissedHotSpot]] = {}

    @classmethod
    def example_config(cls) -> ThermalHotspotConfig:
        return ThermalHotspotConfig(type="thermal_hotspot")

    def units_of(self, frame: Frame) -> str:
        """``counts`` where the frame or the detector says so: counts are never read as degrees."""
        return "counts" if "counts" in (frame.units, self.config.units) else "celsius"

    def heat(
        self, image: npt.NDArray[Any], key: str = "", units: str | None = None, model: dict[str, Any] | None = None
    ) -> npt.NDArray[np.float32]:
        """Heat in the detector's units, scaled so that the camera's own alarm (``camera_alarm``) reads as
        the detector's ``alarm``; ``model``: the camera's state, where counts keep their calibration."""
        heat = self._heat(image, units or self.config.units, model)
        own = self.config.alarm_of(key)
        return heat if own == self.config.alarm else (heat * (self.config.alarm / own)).astype(np.float32)

    def _heat(self, image: npt.NDArray[Any], units: str, model: dict[str, Any] | None) -> npt.NDArray[np.float32]:
        import cv2  # imported where used: loading the config must not load OpenCV

        cfg = self.config
        img = image.astype(np.float32)  # a copy: worked on in place below
        if img.ndim == 3:
            img = img.mean(axis=2)
        if units == "celsius":
            return img
        span = 0.0
        if cfg.span_floor:
            lo, hi = np.percentile(img[::4, ::4], (1.0, 99.0))
            span = float(hi - lo) * cfg.span_floor
        if cfg.contrast == "local":
            img -= cv2.GaussianBlur(img, (0, 0), cfg.local_sigma * img.shape[1])
        sample = img[::4, ::4]  # the scene's robust statistics from a sixteenth of its pixels: 16x cheaper
        med = float(np.median(sample))
        spread = max(float(np.median(np.abs(sample - med))) * 1.4826, span, 1e-6)
        if model is not None:  # the camera's running calibration: one frame does not recalibrate it
            known = model.get("spread")
            spread = spread if known is None else known + (spread - known) / cfg.calibration_frames
            model["spread"] = spread
        img -= np.float32(med)
        img /= np.float32(spread)
        return img

    def observe(self, batch: FrameBatch, state: CameraState) -> list[Observation]:
        import cv2  # imported where used: loading the config must not load OpenCV

        cfg = self.config
        out: list[Observation] = []
        for frame in batch.frames:
            model = state.track(frame.key).model
            units = self.units_of(frame)
            if units == "celsius":
                median = float(np.median(frame.image))
                if not THERMAL_SCENE_C[0] <= median <= THERMAL_SCENE_C[1]:
                    # Not degrees (raw counts taken for °C, a wrong calibration): never an alarm.
                    refused = {"refused": "implausible_temperature", "median": round(median, 1)}
                    out.append(Observation(frame, {"fire": 0.0}, {"fire": []}, refused))
                    continue
            heat = self.heat(frame.image, frame.key, units, model)
            h, w = heat.shape
            hot = (heat >= cfg.pre_alarm).astype(np.uint8)
            best, region, area = 0.0, [], 0
            kept = np.zeros(heat.shape, bool)  # hot pixels in blobs of at least min_pixels
            if hot.any():
                _n, labels, stats, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
                big = stats[:, cv2.CC_STAT_AREA] >= cfg.min_pixels
                big[0] = False
                kept = big[labels]
                for k in np.flatnonzero(big).tolist():
                    peak = float(heat[labels == k].max())
                    if peak > best:
                        x, y, bw, bh = (int(v) for v in stats[k, :4])
                        best, region, area = peak, [(x / w, y / h, bw / w, bh / h)], int(stats[k, cv2.CC_STAT_AREA])
            # Rate of rise against the camera's previous frame: a spot heating fast is at least a pre-alarm
            # even below the pre-alarm heat.
            rise = 0.0
            # The heat grid for scene memory, in score units; a hot pixel outside a blob of min_pixels is noise
            # and counts just under the pre-alarm. Cell peaks are taken before scaling (the same maxima).
            noise = (hot > 0) & ~kept
            raw = self.cell_peaks(heat, floor=False)
            rising = float(raw.max())
            if noise.any():
                raw = self.cell_peaks(np.where(noise, np.float32(cfg.pre_alarm * 0.999), heat), floor=False)
            cells = (np.maximum(raw, 0.0) / np.float32(cfg.alarm)).astype(np.float32, copy=False)
            rise = self.rate_of_rise(model, frame.ts, rising)
            new_view = self.view_changed(frame.image, model)
            score = max(0.0, best / cfg.alarm) if best > 0 else 0.0
            if cfg.rise_per_min and rise >= cfg.rise_per_min and rising >= cfg.rise_floor:
                score = max(score, min(cfg.levels.values()))
                yy, xx = np.unravel_index(int(np.argmax(heat)), heat.shape)
                cell = (int(yy) // cfg.cell_px, int(xx) // cfg.cell_px)
                cells[cell] = max(float(cells[cell]), min(cfg.levels.values()))
                if not region:
                    region = [(max(0, xx - 2) / w, max(0, yy - 2) / h, 5 / w, 5 / h)]
            detail: dict[str, Any] = {"peak": round(best, 2), "area_px": area, "rise_per_min": round(rise, 3),
                                      "units": units}  # fmt: skip
            if new_view:
                detail["new_view"] = True
            obs = Observation(frame, {"fire": round(score, 6)}, {"fire": region}, detail, cells={"fire": cells})
            self.leave_out_dismissed(obs)
            out.append(obs)
        return out

    def view_changed(self, image: npt.NDArray[Any], model: dict[str, Any]) -> bool:
        """Whether the camera looks at another scene than in its previous frame: the median pixel of a 32-pixel
        wide copy, in units of that copy's robust spread, moved by more than ``view_change``. A fire or a hot
        vehicle changes a few pixels, not the median; a pan or a new preset changes most."""
        import cv2  # imported where used: loading the config must not load OpenCV

        h, w = image.shape[:2]
        small = cv2.resize(image, (32, max(1, round(h * 32 / w))), interpolation=cv2.INTER_AREA).astype(np.float32)
        if small.ndim == 3:
            small = small.mean(axis=2)
        med = float(np.median(small))
        spread = max(float(np.median(np.abs(small - med))) * 1.4826, 1.0)
        coarse = (small - med) / spread
        prev = model.get("coarse")
        model["coarse"] = coarse
        if prev is None or prev.shape != coarse.shape:
            return False
        return float(np.median(np.abs(coarse - prev))) > self.config.view_change

    def against_memory(self, obs: Observation, track: CameraTrack) -> tuple[str, float, list[Box]]:
        """As every camera detector, after forgetting the camera's normal when its view changed."""
        if obs.detail.get("new_view"):
            track.memory.clear()
        return super().against_memory(obs, track)

    def rate_of_rise(self, model: dict[str, Any], ts: float, peak: float) -> float:
        """Per minute, the rise of the camera's peak since the newest peak kept at least ``rise_over_s`` before
        ``ts`` (0 until there is one); ``model["peaks"]`` keeps [time, peak] pairs a quarter of that apart and
        only one older than it, so a 1 fps camera keeps five pairs, a tower's one frame a minute two."""
        over = self.config.rise_over_s
        peaks: list[list[float]] = model.setdefault("peaks", [])
        while len(peaks) >= 2 and peaks[1][0] <= ts - over:
            peaks.pop(0)
        rise = 0.0
        if peaks and peaks[0][0] <= ts - over:
            then, before = peaks[0]
            rise = (peak - before) / ((ts - then) / 60.0)
        if not peaks or ts - peaks[-1][0] >= over / 4:
            peaks.append([ts, peak])
        return rise

    def leave_out_dismissed(self, obs: Observation) -> None:
        """Cells of the camera's dismissed hot spots (``dismissed``: set by the camera stage's learning from
        operators' "false alarm" verdicts) count as cold while the frame is within ``window_s`` of the time
        of day of the dismissal and they are no hotter than ``rise`` above the heat dismissed: a roof the
        afternoon sun heats stays quiet every afternoon, a fire on it still alarms."""
        spots = self.dismissed.get(obs.frame.key)
        cells = obs.cells.get("fire")
        if not spots or cells is None:
            return
        day = obs.frame.ts % 86400.0
        gh, gw = cells.shape
        rows = (np.arange(gh) + 0.5) / gh * (gh * self.config.cell_px) / obs.frame.image.shape[0]
        cols = (np.arange(gw) + 0.5) / gw * (gw * self.config.cell_px) / obs.frame.image.shape[1]
        left_out = np.zeros(cells.shape, bool)
        for spot in spots:
            if (
                obs.frame.ts >= spot.expires_at
                or min(abs(day - spot.time_of_day), 86400.0 - abs(day - spot.time_of_day)) > spot.window_s
            ):
                continue
            x, y, w, h = spot.region
            inside = ((rows >= y) & (rows <= y + h))[:, None] & ((cols >= x) & (cols <= x + w))[None, :]
            left_out |= inside & (cells <= spot.score * (1.0 + spot.rise))
        if left_out.any():
            cells = np.where(left_out, np.float32(0.0), cells).astype(np.float32)
            obs.cells["fire"] = cells
            obs.scores["fire"] = min(obs.scores.get("fire", 0.0), round(float(cells.max(initial=0.0)), 6))
            obs.detail["dismissed_cells"] = int(left_out.sum())

    def cell_peaks(self, scored: npt.NDArray[np.float32], floor: bool = True) -> npt.NDArray[np.float32]:
        """Each ``cell_px`` cell's peak of ``scored`` (a partial cell at the right or bottom edge counts), at
        least 0 unless ``floor`` is false."""
        c = self.config.cell_px
        h, w = scored.shape
        gh, gw = -(-h // c), -(-w // c)
        if h % c == 0 and w % c == 0:  # no partial cell: no padded copy
            peaks: npt.NDArray[np.float32] = scored.reshape(gh, c, gw, c).max(axis=(1, 3))
        else:
            padded = np.full((gh * c, gw * c), -np.inf, np.float32)
            padded[:h, :w] = scored
            peaks = padded.reshape(gh, c, gw, c).max(axis=(1, 3))
        return np.maximum(peaks, 0.0) if floor else peaks
