"""Camera detectors: the frame batch, per-camera state, the plugin base and temporal confirmation.

A camera detector takes a ``FrameBatch`` (decoded frames of several cameras, each with its capture time)
and returns, per frame, an ``Observation`` (per-class scores and the region that scored), and turns
confirmed observations into findings. Confirmation is written once here and composed by every camera
detector: an alarm needs ``k`` of the last ``n`` analysed frames of a camera with overlapping regions;
while a camera is alarmed it clears only after ``n`` frames below the clear score (hysteresis); a region
covering most of the frame (fog, a lens flare, a sunset) is discounted.

One alarm rule: a frame shows a class when its score reaches the class's lowest level
(``class_levels``; for a model, the thresholds on its card), and its level is the highest level it reaches.
``gridwatch score``, ``gridwatch tune``, the accuracy benchmark and the engine all call ``level_of`` and
``frame_threshold``.

Scene memory: each camera learns its own normal per grid cell, the median of the cell's score over
samples of its recent frames (one sample every ``memory_interval_s``, ``memory_size`` samples). In the
engine a cell counts only where it reaches the alarm threshold *and* rises ``min_rise`` above its own
normal, so a ridge that always scores as fire or a sky that always looks hazy never alarms, while a new
plume in one cell does. A cell in alarm is not learned (the fire does not become normal) for at most
``memory_size`` samples, after which a scene that stays the same is learned and its alarm resolves. A
camera's first ``memory_warm_frames`` frames are all sampled whatever their spacing (a warm start): until
then the normal is their per-cell maximum, so the memory protects from the second frame, not after half an
hour of samples. With tiles (``smoke_fire_onnx``) the grid is the whole frame's, cell by cell, so a
plume must be new against its own cell's recent past, and k of n frames with overlapping regions confirm
that it persists.

Camera detectors register in ``frame_registry`` (built-ins from this package, third parties through the
``gridwatch.camera_detectors`` entry points) and are configured under ``cameras.detectors``.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import DetectorConfig, DetectorPlugin, DetectorRegistry
from detectors.decision import RequiredLevels
from engine.core.findings import Finding
from engine.core.levels import Level, LevelName

Box = tuple[float, float, float, float]  # x, y, w, h as fractions of the frame


@dataclass
class Frame:
    """One decoded frame: visible frames are BGR uint8 (OpenCV's order), thermal frames float32, in °C
    (``units`` "celsius": calibrated, or a radiometric camera's floats) or raw relative counts (``units``
    "counts": integer frames of a camera with no calibration); "" where the source did not say."""

    site: str
    camera: str
    ts: float
    image: npt.NDArray[Any]
    source: str = ""  # file, frame number or topic, for `gridwatch score`
    units: str = ""

    @property
    def key(self) -> str:
        return f"{self.site}/{self.camera}"


@dataclass
class FrameBatch:
    frames: list[Frame]

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class Observation:
    """What a detector sees in one frame, before temporal confirmation."""

    frame: Frame
    scores: dict[str, float]  # per class
    regions: dict[str, list[Box]] = field(default_factory=dict)  # per class
    detail: dict[str, Any] = field(default_factory=dict)  # detector-specific evidence (heat, area, rise)
    cells: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)  # per class: per-cell scores, if any
    # Where the cell grid lies on the frame (x, y, w, h as fractions; it may reach past the frame's edge, as a
    # tiled grid of whole cells does); None: the grid covers the frame exactly.
    grid_area: Box | None = None
    # Per cell (the shape of ``cells``): whether its score is new this frame; None: every cell is. A score a
    # motion gate reused is no new evidence: it cannot rise again, nor count twice for persistence.
    fresh: npt.NDArray[np.bool_] | None = None

    def cell_box(self, row: int, col: int, shape: tuple[int, ...]) -> Box:
        """The box of grid cell (row, col) of a grid of ``shape``, as fractions of the frame, clipped to it.

        >>> o = Observation(Frame("S", "c", 0.0, np.zeros((4, 4), np.uint8)), {}, grid_area=(0.0, 0.5, 1.2, 0.6))
        >>> o.cell_box(1, 1, (2, 2))
        (0.6, 0.8, 0.4, 0.2)
        """
        gh, gw = shape[:2]
        x0, y0, w, h = self.grid_area or (0.0, 0.0, 1.0, 1.0)
        x, y = x0 + col * w / gw, y0 + row * h / gh
        x1, y1 = min(1.0, x + w / gw), min(1.0, y + h / gh)
        return (round(x, 6), round(y, 6), round(x1 - x, 6), round(y1 - y, 6))

    def best(self) -> tuple[str, float]:
        label = max(self.scores, key=lambda k: self.scores[k]) if self.scores else ""
        return label, self.scores.get(label, 0.0)


class CameraDetectorConfig(DetectorConfig):
    """Fields every camera detector has, on top of the common ones."""

    hazard: str = Field("fire", description="Hazard findings are filed under (smoke is filed as fire too).")
    confirm_k: int = Field(3, ge=1, description="An alarm needs this many of the last `confirm_n` frames…")
    confirm_n: int = Field(5, ge=1, description="…analysed frames of one camera, with overlapping regions.")
    min_overlap: float = Field(0.1, ge=0, le=1, description="IoU that counts as the same region across frames.")
    max_region_frac: float = Field(
        0.7, gt=0, le=1, description="A region larger than this share of the frame is discounted (fog, glare)."
    )
    large_region_factor: float = Field(0.5, ge=0, le=1, description="The score of such a region is multiplied by this.")
    levels: RequiredLevels = Field(
        {"yellow": 0.5, "orange": 0.7, "red": 0.9}, description="Confirmed score per level (at least one)."
    )
    clear_score: float = Field(
        0.3, ge=0, le=1, description="An alarm level holds while the frame's score stays at or above this (hysteresis)."
    )
    scene_memory: bool = Field(
        True, description="Learn each camera's normal per grid cell; a cell must rise above it to alarm."
    )
    min_rise: float = Field(
        0.25, ge=0, le=1, description="Scene memory: how far above its own normal a cell's score must rise to alarm."
    )
    memory_interval_s: float = Field(
        60.0, gt=0, description="Scene memory: one sample of a camera's cell scores per this many seconds."
    )
    memory_size: int = Field(30, ge=1, description="Scene memory: samples whose per-cell median is the normal.")
    cell_persist: int = Field(
        2,
        ge=1,
        description="Scene memory: a cell counts when it rose above its normal to the alarm in at least this many "
        "of the camera's last confirm_n frames (a plume stays where it is; a model's flicker moves from cell to "
        "cell).",
    )
    max_new_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Scene memory on a grid of more than 100 cells (tiles): cells newly rising in one frame above this "
        "share of the grid are a change of the light, not a plume (a plume starts in a few cells): they are learned, "
        "not counted. 1: off.",
    )
    memory_normal: Literal["median", "max"] = Field(
        "median",
        description="Scene memory: a cell's normal is the median of its samples, or their maximum (a cell must then "
        "rise above the highest it scored in the memory: for a model whose scores swing with the light).",
    )
    memory_warm_frames: int = Field(
        5,
        ge=0,
        description="Scene memory: a camera's first frames are all sampled whatever their spacing, and until there "
        "are this many samples the normal is their per-cell maximum, so the memory protects from the second frame "
        "instead of after memory_size samples.",
    )


C = TypeVar("C", bound=CameraDetectorConfig)


@dataclass
class CameraTrack:
    """Per-camera memory of the confirmation: the last n observations' scores and regions, and the alarm."""

    recent: deque[tuple[float, Box | None]] = field(default_factory=deque)
    level: int = 0  # the alarm level held (0: none)
    quiet: int = 0  # frames without alarm since it was last held
    model: dict[str, Any] = field(default_factory=dict)  # the detector's own per-camera state (background, …)
    memory: dict[str, SceneMemory] = field(default_factory=dict)  # per class


@dataclass
class SceneMemory:
    """One camera's normal for one class: per-cell scores sampled over its recent frames.

    >>> m = SceneMemory()
    >>> ridge = np.array([[0.8, 0.1]], np.float32)
    >>> for t in range(0, 300, 60):
    ...     m.learn(ridge, float(t), interval_s=60.0, size=30, alarmed=np.zeros((1, 2), bool))
    >>> m.normal(ridge).tolist()
    [[0.800000011920929, 0.10000000149011612]]
    """

    samples: list[npt.NDArray[np.float32]] = field(default_factory=list)
    last_ts: float = float("-inf")
    frozen: npt.NDArray[np.int32] | None = None  # per cell: samples it has been kept out of learning
    rose: list[npt.NDArray[np.bool_]] = field(default_factory=list)  # the last frames' cells that rose to alarm

    def persistence(self, rose: npt.NDArray[np.bool_], frames: int) -> npt.NDArray[np.int32]:
        """Per cell, in how many of the last ``frames`` frames (this one included) it rose to alarm."""
        self.rose = [r for r in self.rose if r.shape == rose.shape][-(frames - 1) :] if frames > 1 else []
        self.rose.append(rose)
        out: npt.NDArray[np.int32] = np.sum(self.rose, axis=0, dtype=np.int32)
        return out

    def normal(self, cells: npt.NDArray[np.float32], warm: int = 0, how: str = "median") -> npt.NDArray[np.float32]:
        """Per-cell median (``how``: or maximum) of the samples of the same grid shape (the frame itself on a
        camera's first frame); while there are fewer than ``warm`` samples, their maximum (the warm start)."""
        same = [s for s in self.samples if s.shape == cells.shape]
        if not same:
            return cells
        stack = np.stack(same)
        top = len(same) < warm or how == "max"
        out: npt.NDArray[np.float32] = (stack.max(axis=0) if top else np.median(stack, axis=0)).astype(np.float32)
        return out

    def learn(self, cells: npt.NDArray[np.float32], ts: float, interval_s: float, size: int,
              alarmed: npt.NDArray[np.bool_], normal: npt.NDArray[np.float32] | None = None,
              warm: int = 0) -> None:  # fmt: skip
        """Take a sample at most every ``interval_s``; cells in alarm keep their normal (``normal``, as the
        caller already has it, else computed) for ``size`` samples. The first ``warm`` samples are taken from
        every frame, whatever their spacing (the warm start)."""
        warming = len(self.samples) < warm
        if self.samples and ts - self.last_ts < interval_s and not warming:
            return
        normal = self.normal(cells, warm) if normal is None else normal
        if self.frozen is None or self.frozen.shape != cells.shape:
            self.frozen = np.zeros(cells.shape, np.int32)
        self.frozen = np.where(alarmed, self.frozen + 1, 0).astype(np.int32)
        keep = alarmed & (self.frozen <= size)
        self.samples.append(np.where(keep, normal, cells).astype(np.float32))
        del self.samples[:-size]
        self.last_ts = ts


class CameraState:
    """Per-camera tracks, created on first sight of a camera; snapshot and restore by deep copy."""

    def __init__(self) -> None:
        self.tracks: dict[str, CameraTrack] = {}

    def track(self, key: str) -> CameraTrack:
        t = self.tracks.get(key)
        if t is None:
            t = self.tracks[key] = CameraTrack()
        return t

    def snapshot(self) -> dict[str, Any]:
        return {"tracks": copy.deepcopy(self.tracks)}

    def restore(self, snap: dict[str, Any]) -> None:
        self.tracks = copy.deepcopy(snap["tracks"])


def waves(batch: FrameBatch) -> list[list[int]]:
    """The batch's frame indices in waves: wave k holds the k-th frame of every camera, in batch order.

    >>> f = [Frame("S", c, 0.0, np.zeros((1, 1), np.uint8)) for c in "aab"]
    >>> waves(FrameBatch(f))
    [[0, 2], [1]]
    """
    out: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, f in enumerate(batch.frames):
        k = seen[f.key] = seen.get(f.key, -1) + 1
        if k == len(out):
            out.append([])
        out[k].append(i)
    return out


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes.

    >>> iou((0, 0, 0.5, 0.5), (0.25, 0.25, 0.5, 0.5))
    0.142857
    """
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return round(inter / union, 6) if union > 0 else 0.0


def union_box(boxes: list[Box]) -> Box | None:
    if not boxes:
        return None
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


class CameraDetector(DetectorPlugin[C]):
    """Base of camera detectors: ``observe`` a batch of frames; ``process`` confirms and files findings."""

    modality: ClassVar[Literal["visible", "thermal"]] = "visible"
    classes: ClassVar[tuple[str, ...]] = ("fire", "smoke")

    def new_state(self) -> CameraState:
        return CameraState()

    def observe(self, batch: FrameBatch, state: CameraState) -> list[Observation]:
        """Per-frame scores and regions, no temporal confirmation (what `gridwatch score` prints)."""
        raise NotImplementedError

    def class_levels(self, label: str) -> dict[LevelName, float]:
        """The score per level for ``label``; the lowest is the alarm threshold. A model reads its card."""
        return dict(self.config.levels)

    def frame_threshold(self, label: str) -> float:
        """The score at which one frame counts as showing ``label``: the one alarm rule's threshold."""
        return min(self.class_levels(label).values())

    def level_of(self, label: str, score: float) -> Level:
        """The highest level ``score`` reaches for ``label`` (``Level.NONE`` below the alarm threshold)."""
        level = Level.NONE
        for name, threshold in self.class_levels(label).items():
            if score >= threshold:
                level = max(level, Level.from_name(name))
        return level

    def process(self, batch: FrameBatch, state: CameraState) -> list[Finding]:
        """Observe and confirm wave by wave (the k-th frame of every camera is one wave), so that a camera's
        frame is observed knowing what the confirmation of its previous frame left (a detector's gate may ask
        its scene memory): a batch of many gives the findings of batches of one."""
        found: list[tuple[int, Finding]] = []
        for wave in waves(batch):
            for i, obs in zip(wave, self.observe(FrameBatch([batch.frames[i] for i in wave]), state), strict=True):
                finding = self.confirm(obs, state.track(obs.frame.key))
                if finding is not None:
                    found.append((i, finding))
        return [f for _, f in sorted(found, key=lambda x: x[0])]

    def against_memory(self, obs: Observation, track: CameraTrack) -> tuple[str, float, list[Box]]:
        """The class, score and region that count after scene memory: only cells at or above the class's
        threshold that rose ``min_rise`` above the camera's own normal; then the memory learns the frame."""
        cfg = self.config
        best: tuple[str, float, list[Box]] = ("", 0.0, [])
        for label, score in obs.scores.items():
            threshold = self.frame_threshold(label)
            cells = obs.cells.get(label)
            if cells is None:
                cells = np.array([[score]], np.float32)
            memory = track.memory.setdefault(label, SceneMemory())
            normal = memory.normal(cells, cfg.memory_warm_frames, cfg.memory_normal)
            above = cells - normal >= cfg.min_rise  # cells that stand out of their own recent past
            rose = (cells >= threshold) & above
            if obs.fresh is not None and obs.fresh.shape == rose.shape:
                rose &= obs.fresh
            before = memory.rose[-1] if memory.rose and memory.rose[-1].shape == rose.shape else None
            new = rose if before is None else rose & ~before
            if cells.size > 100 and new.sum() > cfg.max_new_share * cells.size:
                above = above & ~new  # a change of the light: learned as the new normal, not counted
                rose = rose & ~new
            # A cell that stands out of its own past is not learned, even below the alarm: a plume's first,
            # fainter frames must not become the normal it has to rise above.
            memory.learn(cells, obs.frame.ts, cfg.memory_interval_s, cfg.memory_size, above, normal,
                         cfg.memory_warm_frames)  # fmt: skip
            alarmed = rose & (memory.persistence(rose, cfg.confirm_n) >= cfg.cell_persist)
            if not alarmed.any():
                # What holds an alarm (hysteresis) is a cell that still stands above its own normal, never a
                # cell that always scores high; one that has just risen counts from its next frame.
                value = float(np.max(cells[above], initial=0.0)) if cells.size else 0.0
                value = min(value, score, float(np.nextafter(np.float32(threshold), np.float32(0.0))))
                if value > best[1] and not best[2]:
                    best = (label, value, [])
                continue
            value = float(cells[alarmed].max())
            if label in obs.cells:  # the region is the cells that rose; a detector without a grid gives its own
                boxes = [obs.cell_box(r, c, cells.shape) for r, c in np.argwhere(alarmed).tolist()]
            else:
                boxes = obs.regions.get(label, [])
            if not best[2] or self.level_of(label, value) > self.level_of(best[0], best[1]):
                best = (label, value, boxes)
        return best

    def confirm(self, obs: Observation, track: CameraTrack) -> Finding | None:
        """k of the last n frames with overlapping regions confirm; an alarm level holds while the score
        stays at or above ``clear_score``, and the camera is quiet again after n frames without alarm."""
        cfg = self.config
        if cfg.scene_memory:
            label, score, boxes = self.against_memory(obs, track)
        else:
            label, score = obs.best()
            boxes = obs.regions.get(label, [])
        region = union_box(boxes)
        if sum(b[2] * b[3] for b in boxes) > cfg.max_region_frac:
            score *= cfg.large_region_factor  # fog, glare, a sunset: most of the frame at once
        low = self.frame_threshold(label or self.classes[0])
        track.recent.append((score if score >= low else 0.0, region))
        while len(track.recent) > cfg.confirm_n:
            track.recent.popleft()
        hits = [(s, r) for s, r in track.recent if s > 0.0]
        if region is not None:
            hits = [(s, r) for s, r in hits if r is None or iou(r, region) >= cfg.min_overlap]
        held = Level(track.level)
        holding = held > Level.NONE and score >= cfg.clear_score
        if (score < low or len(hits) < cfg.confirm_k) and not holding:  # confirm a frame that shows it
            if held:
                track.quiet += 1
                if track.quiet >= cfg.confirm_n:
                    track.level, track.quiet = 0, 0
            return None
        track.quiet = 0
        confirmed = float(np.median([s for s, _ in hits])) if hits else score
        level = self.level_of(label, confirmed)
        if holding and level < held:
            level = held  # hysteresis: the alarm level holds until the score falls below clear_score
        if level == Level.NONE:
            levels = self.class_levels(label)
            level = Level.from_name(min(levels, key=lambda k: levels[k]))
        track.level = int(level)
        f = obs.frame
        evidence: dict[str, Any] = {
            "class": label, "score": round(score, 4), "confirmed_score": round(confirmed, 4),
            "frames": f"{len(hits)}/{len(track.recent)}", "region": [round(v, 4) for v in region] if region else None,
            **obs.detail,
        }  # fmt: skip
        if len(boxes) > 1:  # the cells (tiles' cells, heat cells) the evidence is in, drawn on the snapshot
            evidence["region_cells"] = [[round(v, 4) for v in b] for b in boxes[:64]]
        return Finding(self.name, cfg.hazard, f.site, f.camera, f.ts, level, confirmed, evidence)


frame_registry: DetectorRegistry[CameraDetector[Any]] = DetectorRegistry("gridwatch.camera_detectors")
register_camera = frame_registry.register
