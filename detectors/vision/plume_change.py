"""``plume_change``: a young plume on a large, far camera, found as a change against the scene's own past.

A distant wildfire's first smoke is a few pixels of a 3072x2048 tower frame, as grey and soft as the haze
around it: a model looking at the frame, or at a tile of it, cannot tell it from haze, glare or a ridge
(``models/README.md``). What tells it is time: it was not there minutes ago, it stays where it started,
and it grows. This detector looks only at that, per camera, at ``width`` pixels across:

- **reference**: the per-pixel median of ``samples`` grey frames taken every ``sample_every_s`` (5 over 15
  minutes by default), so a plume growing over minutes is compared with the scene minutes ago, never only
  with the previous frame, and a plume is learned into it only once it has stood there for most of them. A
  camera's first ``warm_frames`` frames are all taken whatever their spacing (warm start: it protects from
  the second frame).
- **registration and light**: the frame is aligned to the reference by phase correlation (a tower sways),
  and its brightness matched to it block by block (median over ``block_px`` blocks), so a drift of the
  light or of the exposure is no change; clipped highlights are no evidence. A shift over ``max_shift_px``
  is a camera that moved: it starts afresh.
- **change**: a pixel changed when it stands ``z_min`` times its noise from the reference; the noise is the
  spread of its samples plus ``edge_noise`` of its local contrast (what registration leaves on an edge), at
  least ``noise_floor`` grey levels. Smoke makes a scene greyer, never more colourful: a pixel whose
  saturation rose by more than ``max_sat_rise`` is not smoke (a car, a coat, a flag); a darker pixel counts
  only against a bright reference (smoke before the sky) and when it also lost colour.
- **persistence and place**: a pixel counts when it changed in ``persist`` of the last ``confirm_n`` frames,
  and a blob of such pixels when its base (the middle of its lowest rows) lay within ``anchor_share`` of
  the width in one of the last frames and it was first seen small (``young_share``): a plume starts small
  and stays where it started; a bird or a car leaves, a cloud or its shadow comes in large and moves.
- **weather**: while more than ``weather_share`` of the frame changed (clouds or their shadows crossing the
  view) nothing counts; over ``max_change_share`` at once (the light, a haze coming in) the reference
  starts afresh.
- **score**: the largest counted blob's evidence ``e`` (its pixels weighted by contrast, in pixels at
  ``z_min``) as ``e / (e + half_evidence_px)``, so the level grows with the plume; the region is its box.
  Its levels stop at orange: a change alone is not the gravest level (the smoke model's or a thermal
  camera's agreement raises it, ``fusion``).
- **dismissed places**: a blob whose base lies in a place an operator called a false alarm on this camera
  (``dismissed``: a chimney, a dust road, a spray at a fixed place; set by the camera stage's learning from
  verdicts, ``engine.flow.camera_learning``), grown by ``anchor_share`` of the width, does not count until the
  dismissal expires; a plume starting anywhere else in the view still does.

The smoke model (``smoke_fire_onnx``) keeps judging what things look like; this judges what is new and
stays. Each files its own findings and the incident tracker fuses them. By default it looks only at frames
at least ``min_width`` wide (towers and other large, far cameras): on a close CCTV view people and cars
stop and stay, and nothing but the model should judge it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.decision import RequiredLevels
from detectors.vision.base import (
    CameraDetector,
    CameraDetectorConfig,
    CameraState,
    CameraTrack,
    Frame,
    FrameBatch,
    Observation,
    register_camera,
)

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


class PlumeChangeConfig(CameraDetectorConfig):
    """Config of the ``plume_change`` detector (see the module's docstring)."""

    type: Literal["plume_change"] = Field("plume_change", description="Detector type.")
    min_width: int = Field(
        1280,
        ge=1,
        description="Frames narrower than this are not looked at (close CCTV views: people and cars stop and stay).",
    )
    width: int = Field(1024, ge=64, description="Frames are analysed at this width (aspect kept).")
    samples: int = Field(5, ge=1, le=32, description="Grey frames whose per-pixel median is the reference.")
    sample_every_s: float = Field(
        180.0, gt=0, description="One reference sample per this many seconds of capture time."
    )
    warm_frames: int = Field(3, ge=1, description="A camera's first frames are all sampled (warm start).")
    z_min: float = Field(4.0, gt=0, description="A pixel changed when it stands this many times its noise away.")
    noise_floor: float = Field(3.0, gt=0, description="Least noise of a pixel, in grey levels (0-255).")
    edge_noise: float = Field(
        0.15, ge=0, description="Noise added per grey level of local contrast (what is left of the sway on an edge)."
    )
    max_sat_rise: float = Field(
        12.0, ge=0, description="A changed pixel whose saturation (0-255) rose more than this is not smoke."
    )
    min_sat_drop: float = Field(
        6.0, ge=0, description="A darker pixel counts only when its saturation fell at least this much."
    )
    block_px: int = Field(64, ge=8, description="Brightness is matched to the reference over blocks of this size.")
    max_shift_px: float = Field(
        24.0, gt=0, description="A shift against the reference over this many pixels (at `width`): the camera moved."
    )
    persist: int = Field(
        2, ge=1, description="A pixel counts when it changed in this many of the last confirm_n frames."
    )
    max_change_share: float = Field(
        0.03, gt=0, le=1, description="Changes over this share of the frame at once: the light or the weather."
    )
    min_blob_px: int = Field(3, ge=1, description="Least counted pixels (at `width`) of a blob.")
    weather_share: float = Field(
        0.0025, gt=0, le=1, description="While more than this share of the frame changed (clouds or their shadows "
        "crossing), nothing counts; a plume's first minutes change far less."
    )  # fmt: skip
    young_share: float = Field(
        0.0005, gt=0, le=1, description="A blob first seen larger than this share of the frame is no young plume "
        "(a cloud or its shadow coming in): it never counts."
    )  # fmt: skip
    bright_ref: float = Field(
        170.0, ge=0, le=255, description="A darker change counts only where the reference is this bright (the sky)."
    )
    anchor_frames: int = Field(
        1,
        ge=1,
        description="A blob counts when its base lay at the same place in this many of the last frames (2: a "
        "minute later on a plume, and a cloud's shadow sweeping a slope no longer counts; a drifting cloud still can).",
    )
    anchor_share: float = Field(
        0.01, gt=0, le=1, description="A blob counts when its base lay within this share of the width in one of the "
        "last confirm_n frames (a plume stays where it started; clouds and their shadows move)."
    )  # fmt: skip
    half_evidence_px: float = Field(
        40.0, gt=0, description="Evidence (pixels at z_min) that scores 0.5; twice the contrast counts twice."
    )
    levels: RequiredLevels = Field(
        {"yellow": 0.5, "orange": 0.8},
        description="Score per level (at least one); no red: a change alone, with no model or heat agreeing, is "
        "not the gravest level.",
    )
    scene_memory: bool = Field(False, description="Off: the detector's reference is its own scene memory.")


@dataclass(frozen=True)
class DismissedPlace:
    """A place where an operator called a change a false alarm: the region (x, y, w, h as fractions of the
    frame) where its blobs' bases do not count, and until when (capture time).

    >>> place = DismissedPlace((0.1, 0.2, 0.05, 0.05), 100.0)
    >>> place.holds(0.12, 0.26, 0.01, 0.02, 50.0), place.holds(0.12, 0.26, 0.01, 0.02, 100.0)
    (True, False)
    """

    region: tuple[float, float, float, float]
    expires_at: float

    def holds(self, x: float, y: float, mx: float, my: float, ts: float) -> bool:
        """Whether a base at (``x``, ``y``) lies in the region grown by ``mx`` across and ``my`` down (all as
        fractions of the frame) at capture time ``ts``."""
        rx, ry, rw, rh = self.region
        return ts < self.expires_at and rx - mx <= x <= rx + rw + mx and ry - my <= y <= ry + rh + my


@register_camera
class PlumeChange(CameraDetector[PlumeChangeConfig]):
    """Per camera: reference samples, the persistence bits of the last frames, and the cached reference."""

    config_class = PlumeChangeConfig
    modality: ClassVar[Literal["visible", "thermal"]] = "visible"
    classes: ClassVar[tuple[str, ...]] = ("smoke",)

    def __init__(self, config: PlumeChangeConfig) -> None:
        super().__init__(config)
        # Per camera (``site/camera``): places operators called false alarms (the camera stage's learning).
        self.dismissed: dict[str, list[DismissedPlace]] = {}
        self._windows: dict[tuple[int, ...], npt.NDArray[Any]] = {}

    @classmethod
    def example_config(cls) -> PlumeChangeConfig:
        # A close, small scene (the contract's): its plume is a large share of the frame from the start.
        return PlumeChangeConfig(type="plume_change", min_width=64, width=128, confirm_k=2, confirm_n=3,
                                 weather_share=0.1, young_share=0.02)  # fmt: skip

    def observe(self, batch: FrameBatch, state: CameraState) -> list[Observation]:
        return [self._observe(f, state.track(f.key)) for f in batch.frames]

    def _observe(self, frame: Frame, track: CameraTrack) -> Observation:
        import cv2  # imported where used: loading the config must not load OpenCV

        cfg = self.config
        img = frame.image
        quiet = Observation(frame, {"smoke": 0.0}, {"smoke": []})
        if img.ndim != 3 or img.shape[1] < cfg.min_width:
            return quiet
        h, w = img.shape[:2]
        size = (cfg.width, max(8, round(h * cfg.width / w)))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        sat = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)[:, :, 1]
        m: dict[str, Any] = track.model
        if m.get("shape") != grey.shape:
            m.clear()
            m.update(shape=grey.shape, grey=[], sat=[], last=float("-inf"), bits=np.zeros(grey.shape, np.uint8),
                     ref=None)  # fmt: skip
        if not m["grey"]:
            self._learn(m, grey, sat, frame.ts)
            return quiet
        ref, ref_sat, noise, ref_blocks = self._reference(m)
        # A tower sways: align the frame to the reference (sub-pixel), or start afresh when the view moved.
        window = self._windows.get(grey.shape)  # one per frame size, shared by the cameras
        if window is None:
            window = self._windows[grey.shape] = cv2.createHanningWindow(grey.shape[::-1], cv2.CV_32F)
        # (phaseCorrelate multiplies its inputs by the window in place: it gets copies)
        (dx, dy), _resp = cv2.phaseCorrelate(ref.astype(np.float32), grey.astype(np.float32), window)
        if max(abs(dx), abs(dy)) > cfg.max_shift_px:
            m.clear()
            return quiet
        g: npt.NDArray[Any] = grey.astype(np.float32)
        s: npt.NDArray[Any] = sat.astype(np.float32)
        if abs(dx) > 0.05 or abs(dy) > 0.05:
            shift = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
            g = cv2.warpAffine(g, shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            s = cv2.warpAffine(s, shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        aligned = (np.clip(np.round(g), 0, 255).astype(np.uint8), np.clip(np.round(s), 0, 255).astype(np.uint8))
        g *= self._gain(ref_blocks, g)
        z = (g - ref) / noise
        sat_change = s - ref_sat
        # Clipped highlights (sun, glare) do not follow the light: no evidence there.
        seen = (g < 250.0) & (ref < 250.0)
        # Darker counts only against a bright reference (smoke before the sky), and only losing colour: on the
        # ground a darker patch is a cloud's shadow.
        darker = (z <= -cfg.z_min) & (sat_change <= -cfg.min_sat_drop) & (ref >= cfg.bright_ref)
        changed = ((z >= cfg.z_min) | darker) & (sat_change <= cfg.max_sat_rise) & seen
        share = float(changed.mean())
        if share > cfg.max_change_share:  # the light or the weather changed: a new reference from here
            m["grey"], m["sat"] = [], []
            m["bits"][:] = 0
            m["anchors"] = []
            self._learn(m, *aligned, frame.ts)
            return Observation(frame, {"smoke": 0.0}, {"smoke": []}, {"changed_share": round(share, 4)})
        # Persistence: bit k of ``bits`` is "changed (within a pixel) k+1 frames ago".
        past = POPCOUNT[m["bits"] & np.uint8((1 << max(cfg.confirm_n - 1, 0)) - 1)]
        counted = changed & (past >= cfg.persist - 1)
        near = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        m["bits"] = ((m["bits"] << 1) | near).astype(np.uint8)
        self._learn(m, *aligned, frame.ts)  # samples aligned with the reference
        calm = Observation(frame, {"smoke": 0.0}, {"smoke": []}, {"changed_share": round(share, 5)})
        if share > cfg.weather_share:  # clouds or their shadows cross the view: no judging while they do
            counted[:] = False
        if not counted.any():
            m["anchors"] = [*m.get("anchors", []), np.zeros((0, 3), np.float32)][-(cfg.confirm_n - 1) :]
            return calm
        n, labels, stats, _ = cv2.connectedComponentsWithStats(counted.astype(np.uint8), connectivity=8)
        weight = np.minimum(np.abs(z), 3 * cfg.z_min) / cfg.z_min
        evidence = np.bincount(labels.ravel(), weights=(weight * counted).ravel(), minlength=n)
        evidence[0] = 0.0
        evidence[stats[:, cv2.CC_STAT_AREA] < cfg.min_blob_px] = 0.0
        # A plume starts small and stays where it started; a cloud, its shadow or a vehicle comes in large or
        # moves. A blob counts when its base (the middle of its lowest rows) lies where a blob's base lay in one
        # of the last frames, and that blob was born small (an anchor carries whether its first blob was).
        blobs = np.flatnonzero(evidence > 0)
        bases = np.array([(*self._base(labels, stats, int(b)), 0.0) for b in blobs], np.float32).reshape(-1, 3)
        before = [a for a in m.get("anchors", []) if len(a)]
        past = np.concatenate(before) if before else np.zeros((0, 3), np.float32)
        frame_of = np.repeat(np.arange(len(before)), [len(a) for a in before])  # which earlier frame each base is
        reach = cfg.anchor_share * grey.shape[1]
        young = cfg.young_share * grey.size
        for i, b in enumerate(blobs):
            d = np.hypot(past[:, 0] - bases[i, 0], past[:, 1] - bases[i, 1])
            if len(d) and d.min() <= reach:
                bases[i, 2] = past[int(np.argmin(d)), 2]  # the same blob as before: born as it was
                # ...and there in enough of the last frames: a fragment of a drifting cloud is somewhere else
                # each minute, even where another fragment was a minute before
                stays = len(np.unique(frame_of[d <= reach]))
                if not bases[i, 2] or stays < cfg.anchor_frames:
                    evidence[b] = 0.0
            else:  # new here: no evidence before it stays
                bases[i, 2] = float(stats[b, cv2.CC_STAT_AREA] <= young)
                evidence[b] = 0.0
        m["anchors"] = [*m.get("anchors", []), bases][-(cfg.confirm_n - 1) :]
        # A dismissed place (a chimney, a dust road) keeps its anchors, so its blob stays the same blob, but
        # never counts; the margin is the detector's own "same place".
        places = self.dismissed.get(frame.key)
        left_out = 0
        if places:
            sh, sw = grey.shape
            mx, my = cfg.anchor_share, cfg.anchor_share * sw / sh
            for i, b in enumerate(blobs):
                fx, fy = float(bases[i, 0]) / sw, float(bases[i, 1]) / sh
                if evidence[b] > 0 and any(p.holds(fx, fy, mx, my, frame.ts) for p in places):
                    evidence[b], left_out = 0.0, left_out + 1
            if left_out:
                calm.detail["dismissed_blobs"] = left_out
        k = int(np.argmax(evidence))
        if evidence[k] <= 0:
            return calm
        e = float(evidence[k])
        score = e / (e + cfg.half_evidence_px)
        x, y, bw, bh = (int(v) for v in stats[k, :4])
        sh, sw = grey.shape
        box = (round(x / sw, 5), round(y / sh, 5), round(bw / sw, 5), round(bh / sh, 5))
        detail = {"changed_px": int(stats[k, cv2.CC_STAT_AREA]), "evidence_px": round(e, 1),
                  "contrast": round(float(np.median(np.abs(z[labels == k]))), 2),
                  "shift_px": [round(dx, 2), round(dy, 2)], "changed_share": round(share, 5)}  # fmt: skip
        if left_out:
            detail["dismissed_blobs"] = left_out
        return Observation(frame, {"smoke": round(score, 6)}, {"smoke": [box]}, detail)

    @staticmethod
    def _base(labels: npt.NDArray[np.int32], stats: npt.NDArray[np.int32], k: int) -> tuple[float, float]:
        """Blob ``k``'s base: the mean column of its pixels in its lowest fifth, and its lowest row."""
        x, y, w, h = (int(v) for v in stats[k, :4])
        rows = max(1, h // 5)
        part = labels[y + h - rows : y + h, x : x + w] == k
        cols = np.nonzero(part)[1]
        return float(x + cols.mean()), float(y + h - 1)

    def _learn(self, m: dict[str, Any], grey: npt.NDArray[Any], sat: npt.NDArray[Any], ts: float) -> None:
        """Take a reference sample at most every ``sample_every_s`` (every frame while warming)."""
        cfg = self.config
        if len(m["grey"]) >= cfg.warm_frames and ts - m["last"] < cfg.sample_every_s:
            return
        for name, v in (("grey", grey), ("sat", sat)):
            m[name].append(v)
            del m[name][: -cfg.samples]
        m["last"] = ts
        m["ref"] = None

    def _reference(self, m: dict[str, Any]) -> tuple[npt.NDArray[Any], ...]:
        """The reference grey and saturation (per-pixel medians of the samples), each pixel's noise, and the
        reference's block medians (``_gain``)."""
        import cv2

        if m["ref"] is None:
            cfg = self.config
            stack = np.stack(m["grey"]).astype(np.float32)
            ref = np.median(stack, axis=0).astype(np.float32)
            ref_sat = np.median(np.stack(m["sat"]), axis=0).astype(np.float32)
            spread = np.median(np.abs(stack - ref), axis=0) * 1.4826 if len(stack) >= 3 else 0.0
            edges = cv2.morphologyEx(ref, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            noise = (cfg.noise_floor + cfg.edge_noise * edges + spread).astype(np.float32)
            # Kept as float16 between samples (medians of uint8 are whole or halves: exact; the noise to 0.05 %),
            # a third of the memory of float32 for a camera's cached reference.
            m["ref"] = (
                ref.astype(np.float16),
                ref_sat.astype(np.float16),
                noise.astype(np.float16),
                self._block_medians(ref),
            )  # what _gain matches each frame to, once per sample
        out: tuple[npt.NDArray[Any], ...] = m["ref"]
        return out

    def _block_medians(self, a: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """The median of each ``block_px`` block of ``a`` (the blocks that fit whole, at least one)."""
        b = self.config.block_px
        h, w = a.shape
        bh, bw = max(1, h // b), max(1, w // b)
        c = a[: bh * b if h >= b else h, : bw * b if w >= b else w]
        blocks = c.reshape(bh, c.shape[0] // bh, bw, c.shape[1] // bw).transpose(0, 2, 1, 3).reshape(bh, bw, -1)
        out: npt.NDArray[np.float32] = np.median(blocks, axis=2).astype(np.float32)
        return out

    def _gain(self, ref_blocks: npt.NDArray[np.float32], grey: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Per-pixel gain that matches ``grey``'s brightness to the reference's (its ``ref_blocks``), block by
        block (medians, so a plume in a block does not move it), smoothly interpolated."""
        import cv2

        h, w = grey.shape
        ratio = (ref_blocks + 4.0) / (self._block_medians(grey) + 4.0)
        gain: npt.NDArray[np.float32] = cv2.resize(ratio, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        return gain
