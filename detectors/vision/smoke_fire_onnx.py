"""``smoke_fire_onnx``: smoke and fire from an ONNX model, run on frames in batches with onnxruntime.

The model comes with a card (JSON beside it, `models/smoke_fire.json` for the shipped one) that names the
file, the input size, the labels, the per-class thresholds and the head:
- ``classifier_grid``: outputs ``scores`` (N, C) and ``grid`` (N, C, G, G) of probabilities; the region
  of a class is the cells at or above its threshold (a coarse heat grid);
- ``yolo``: one output (N, 4+C, A) of boxes (cx, cy, w, h in input pixels) and class scores per anchor,
  as YOLOv5/v8 exports give; boxes are filtered by the class threshold and non-maximum suppression.
Config fields override the card, so a stronger model drops in with its own card or a few lines of YAML.

Motion gating: a cheap per-camera background model (a 64-pixel-wide grey copy of the last frame) tells
whether the scene changed; a frame in which less than ``motion_gate`` of it did reuses the camera's last
result, so static cameras cost almost nothing.

onnxruntime's threads are sized from config and do not busy-wait (``session.intra_op.allow_spinning``
0): on a loaded 2-core box a spinning pool starves the ingest path.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from detectors.vision.base import (
    Box,
    CameraDetector,
    CameraDetectorConfig,
    CameraState,
    FrameBatch,
    Observation,
    register_camera,
    waves,
)
from detectors.vision.camera_heads import LearnedHead
from engine.core.levels import LevelName

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
Result = tuple[dict[str, float], dict[str, list[Box]], dict[str, npt.NDArray[np.float32]]]  # scores, regions, cells


class TileSettings(BaseModel):
    """One camera's tiling (see ``SmokeFireOnnxConfig``); a field left out takes the detector's."""

    model_config = ConfigDict(extra="forbid")
    tile_px: int | None = Field(
        None, ge=0, description="The side of a tile in the frame's pixels (0: whole frame); set, it tiles any size."
    )
    tile_overlap: int | None = Field(None, ge=0, le=4, description="Grid cells shared by neighbouring tiles.")
    band: tuple[float, float] | None = Field(None, description="Rows scored: top and bottom as fractions.")

    @field_validator("band")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        return v if v is None else check_band(v)


def check_band(v: tuple[float, float]) -> tuple[float, float]:
    if not 0.0 <= v[0] < v[1] <= 1.0:
        raise ValueError(f"band {list(v)}: top and bottom as fractions of the frame, 0 <= top < bottom <= 1")
    return v


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of a frame lie: the band scored, its scale to the model's input, the grid of cells
    over it and each tile's top-left cell. Tiles share a grid, so their cells paste into one per-frame grid."""

    y0: int  # first row of the band, in frame pixels
    y1: int
    sx: float  # model pixels per frame pixel, across and down
    sy: float
    gh: int  # the grid over the band, in cells
    gw: int
    origins: tuple[tuple[int, int], ...]  # (row, col) of each tile's top-left cell
    grid_area: Box  # the grid on the frame, as fractions (it may reach past the right and bottom edges)
    context: bool = False  # the whole band is one more input, its cells spread over the grid
    used: tuple[int, int] = (0, 0)  # (rows, cols) of the grid over the band itself (the rest is padding)


class SmokeFireOnnxConfig(CameraDetectorConfig):
    """Config of the ``smoke_fire_onnx`` detector."""

    type: Literal["smoke_fire_onnx"] = Field("smoke_fire_onnx", description="Detector type.")
    model: str = Field("models/smoke_fire.json", description="Model card (JSON) or .onnx file, relative to the repo.")
    head: Literal["classifier_grid", "yolo"] | None = Field(None, description="Output head; default from the card.")
    input_size: int | None = Field(None, gt=0, description="Square input side in pixels; default from the card.")
    labels: list[str] | None = Field(None, description="Class names in output order; default from the card.")
    thresholds: dict[str, float] | None = Field(None, description="Per-class score thresholds; default from the card.")
    levels: dict[LevelName, float] | None = Field(  # type: ignore[assignment]
        None,
        description="Score per level for every class; default from the card: its threshold is yellow (the alarm), "
        "orange and red lie half and four fifths of the way from it to 1.",
    )
    nms_iou: float = Field(0.45, gt=0, le=1, description="YOLO head: IoU above which overlapping boxes merge.")
    batch_size: int = Field(4, ge=1, description="Model inputs (tiles) per inference call (4: fastest on one core).")
    tile_px: int = Field(
        384,
        ge=0,
        description="Tiles: the side, in the frame's own pixels, of each square the model sees at its input size (a "
        "frame whose band is smaller uses the band's short side): a 3072x2048 tower frame is seen at 0.42 of its "
        "resolution in 48 tiles, a 640x360 CCTV frame in two. 0: the whole frame squashed into one input.",
    )
    tile_min_side: int = Field(
        768,
        ge=0,
        description="Tiles only where the band's short side has at least this many pixels (1-8 MP tower frames); a "
        "smaller frame (640x360 or 1280x720 CCTV) is seen whole, as one input.",
    )
    context: bool = Field(
        True,
        description="With tiles, the whole band is also seen as one input (what the model was trained on: a big fire "
        "or a plume across tiles); its cells are spread over the tiles' grid and the higher score counts.",
    )
    tile_overlap: int = Field(
        0, ge=0, le=4, description="Tiles: grid cells (of the model's grid across a tile) shared by neighbouring tiles."
    )
    band: tuple[float, float] = Field(
        (0.0, 1.0),
        description="Tiles: the rows of the frame scored, top and bottom as fractions (e.g. [0.2, 0.8] leaves out "
        "the sky above a ridge and the foreground below it).",
    )
    camera_tiles: dict[str, TileSettings] = Field(
        default_factory=dict,
        description="Per camera (`site/camera` or `camera`): its own tile_px, tile_overlap and band.",
    )
    max_new_share: float = Field(
        0.02,
        gt=0,
        le=1,
        description="Tiles: cells newly rising in one frame above this share of the grid are a change of the light, "
        "not a plume (learned, not counted); a distant plume starts in a few cells.",
    )
    memory_normal: Literal["median", "max"] = Field(
        "max",
        description="Scene memory: a cell must rise above the highest it scored in the memory (max), not its "
        "median: the model's scores on an outdoor tile swing with the light.",
    )
    motion_gate: float = Field(
        0.002,
        ge=0,
        le=1,
        description="A tile in which less than this share changed since the model last scored it (not since the "
        "previous frame: slow growth adds up) reuses that score instead of running the model (0: run every tile).",
    )
    motion_pixel_delta: float = Field(
        6.0, gt=0, description="Motion gate: a grey-level change (of 255) that counts a pixel of a tile as changed."
    )
    motion_max_age_s: float = Field(
        300.0, gt=0, description="A tile's reused score is at most this old: after it the model scores it again."
    )
    threads: int = Field(1, ge=1, description="onnxruntime intra-op threads.")
    providers: list[str] = Field(
        ["CPUExecutionProvider"], description="onnxruntime execution providers in order of preference."
    )

    @field_validator("band")
    @classmethod
    def _band(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_band(v)

    def tiling_of(self, key: str) -> tuple[int, int, tuple[float, float], int]:
        """(tile_px, tile_overlap, band, tile_min_side) of the camera ``site/camera``: its own where set, else
        the detector's; a camera that sets its own tile_px is tiled whatever its size."""
        own = self.camera_tiles.get(key) or self.camera_tiles.get(key.rpartition("/")[2]) or TileSettings()
        return (
            self.tile_px if own.tile_px is None else own.tile_px,
            self.tile_overlap if own.tile_overlap is None else own.tile_overlap,
            self.band if own.band is None else own.band,
            self.tile_min_side if own.tile_px is None else 0,
        )

    @field_validator("model")
    @classmethod
    def _model_exists(cls, v: str) -> str:
        path = Path(v) if Path(v).is_absolute() else ROOT / v
        if not path.is_file():
            raise ValueError(f"no model file {path}; give a model card (.json) or an .onnx file")
        return v


def load_card(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        card: dict[str, Any] = json.loads(path.read_text())
        card["path"] = path.parent / card["file"]
        return card
    return {"path": path, "labels": ["fire", "smoke"], "thresholds": {}, "head": "classifier_grid"}


@register_camera
class SmokeFireOnnx(CameraDetector[SmokeFireOnnxConfig]):
    """Runs the model on every analysed frame; findings go through the shared temporal confirmation."""

    config_class = SmokeFireOnnxConfig
    modality: ClassVar[Literal["visible", "thermal"]] = "visible"

    def __init__(self, config: SmokeFireOnnxConfig) -> None:
        import onnxruntime as ort  # imported where used: loading the config must not load OpenCV

        super().__init__(config)
        path = Path(config.model)
        card = load_card(path if path.is_absolute() else ROOT / path)
        self.head: str = config.head or card.get("head", "classifier_grid")
        self.labels: list[str] = config.labels or list(card["labels"])
        self.size: int = config.input_size or int(card.get("input", {}).get("shape", [0, 3, 160, 160])[-1])
        card_thr = card.get("thresholds", {})
        self.thresholds = {k: (config.thresholds or {}).get(k, card_thr.get(k, 0.5)) for k in self.labels}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = config.threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        available = ort.get_available_providers()
        providers = [p for p in config.providers if p in available] or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(card["path"]), opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.grid: int = int(card.get("grid", 5))
        self.model_path = Path(card["path"])
        self._session_args = (opts, providers)
        # Per-camera learned heads (detectors.vision.camera_heads), installed by the camera stage's learning;
        # the model's per-cell features and logits are outputs only once ``enable_cell_outputs`` has run.
        self.heads: dict[str, LearnedHead] = {}
        self.feature_count = 0
        self.model_sha = ""

    @classmethod
    def example_config(cls) -> SmokeFireOnnxConfig:
        return SmokeFireOnnxConfig(type="smoke_fire_onnx", confirm_k=2, confirm_n=3)

    def enable_cell_outputs(self) -> int:
        """Reload the model with its per-cell features and logits as outputs (``cell_features``); returns the
        feature count F (0: this model has no such layer, or the ``onnx`` package is missing: no learning). The
        shipped outputs are unchanged, bit for bit."""
        if self.feature_count or self.head != "classifier_grid":
            return self.feature_count
        try:
            import onnx
        except ImportError:
            logger.warning("the onnx package is not installed: cameras cannot learn from verdicts (pip install onnx)")
            return 0
        import onnxruntime as ort

        from detectors.vision.cell_features import with_cell_outputs

        data = self.model_path.read_bytes()
        added = with_cell_outputs(onnx.load_from_string(data))
        if not added.features:
            logger.warning("model %s has no per-cell features under its grid: cameras cannot learn", self.model_path)
            return 0
        opts, providers = self._session_args
        self.session = ort.InferenceSession(added.model, opts, providers=providers)
        self.feature_count, self.model_sha = added.features, hashlib.sha256(data).hexdigest()
        return self.feature_count

    def head_of(self, key: str) -> LearnedHead | None:
        """Camera ``key``'s learned head, else the one set for every camera (``*``), else None (shipped)."""
        return self.heads.get(key) or self.heads.get("*")

    def set_head(self, key: str, head: LearnedHead | None) -> None:
        """Camera ``key`` (``site/camera``; ``*``: every camera without its own, as ``gridwatch score --head``)
        scores with ``head`` from its next frame (None: the shipped head)."""
        if head is None:
            self.heads.pop(key, None)
        elif head.features != self.feature_count or head.model != self.model_sha:
            raise ValueError(f"{key}'s learned head v{head.version} was fitted on another model's features")
        else:
            self.heads[key] = head

    def inputs(self, image: npt.NDArray[np.uint8], lay: TileLayout) -> list[npt.NDArray[np.uint8]]:
        """The model's inputs for a frame: its tiles, then (``lay.context``) the whole band."""
        import cv2  # imported where used: loading the config must not load OpenCV

        s, cell = self.size, self.size // self.grid
        view = self.model_view(image, lay)
        out = [view[r * cell : r * cell + s, c * cell : c * cell + s] for r, c in lay.origins]
        if lay.context:  # the band whole, as the model was trained to see a frame
            rows, cols = lay.used
            whole = cv2.resize(view[: rows * cell, : cols * cell], (s, s), interpolation=cv2.INTER_AREA)
            out.append(np.asarray(whole, np.uint8))
        return out

    def _run(self, crops: list[npt.NDArray[np.uint8]], keys: list[str]) -> list[npt.NDArray[np.float32]]:
        """Per-cell probabilities of each input (of camera ``keys[i]``), with that camera's learned head."""
        out: list[npt.NDArray[np.float32]] = []
        learned = bool(self.heads) and self.feature_count > 0
        for i in range(0, len(crops), self.config.batch_size):
            chunk = np.stack(crops[i : i + self.config.batch_size])[..., ::-1]  # BGR to RGB
            pixels = np.ascontiguousarray(chunk.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
            res = self.session.run(None, {self.input_name: pixels})
            grid = np.asarray(res[1], np.float32)
            if learned:
                for j, key in enumerate(keys[i : i + self.config.batch_size]):
                    head = self.head_of(key)
                    if head is not None:
                        z = head.correct(res[3][j : j + 1], res[2][j : j + 1])[0]
                        grid[j] = 1.0 / (1.0 + np.exp(-z))
            out.extend(grid)
        return out

    def cell_table(
        self, image: npt.NDArray[np.uint8], key: str, near: list[Box] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Every input cell of a frame as it reaches the shipped head: its box on the frame (x, y, w, h as
        fractions, clipped), its features (F) and its shipped logits (C); (M, 4), (M, F), (M, C). ``near``: only
        the inputs (tiles, the whole band) that overlap these boxes. Needs ``enable_cell_outputs``."""
        if not self.feature_count:
            raise RuntimeError("enable_cell_outputs first: the model gives no per-cell features")
        lay = self.layout(image.shape, key)
        g = self.grid
        ax, ay, aw, ah = lay.grid_area
        cw, ch = aw / lay.gw, ah / lay.gh  # one grid cell, as fractions of the frame
        per_input = [[(ax + (c0 + c) * cw, ay + (r0 + r) * ch, cw, ch) for r in range(g) for c in range(g)]
                     for r0, c0 in lay.origins]  # fmt: skip
        if lay.context:  # the band's cells, each spread over the grid cells it covers
            rows, cols = lay.used
            per_input.append([(ax + c * cols / g * cw, ay + r * rows / g * ch, cols / g * cw, rows / g * ch)
                              for r in range(g) for c in range(g)])  # fmt: skip

        def touches(cells: list[Box]) -> bool:
            x0, y0 = cells[0][0], cells[0][1]
            x1, y1 = cells[-1][0] + cells[-1][2], cells[-1][1] + cells[-1][3]
            return any(x0 < x + w and x < x1 and y0 < y + h and y < y1 for x, y, w, h in near or [])

        chosen = [i for i, cells in enumerate(per_input) if near is None or touches(cells)]
        crops = self.inputs(image, lay)
        crops = [crops[i] for i in chosen]
        feats, logits = [], []
        for i in range(0, len(crops), self.config.batch_size):
            chunk = np.stack(crops[i : i + self.config.batch_size])[..., ::-1]
            pixels = np.ascontiguousarray(chunk.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
            res = self.session.run(None, {self.input_name: pixels})
            feats.append(np.asarray(res[2], np.float32))
            logits.append(np.asarray(res[3], np.float32))
        n_feat, n_cls = self.feature_count, len(self.labels)
        f = np.concatenate(feats).transpose(0, 2, 3, 1).reshape(-1, n_feat) if feats else np.zeros((0, n_feat))
        z = np.concatenate(logits).transpose(0, 2, 3, 1).reshape(-1, n_cls) if logits else np.zeros((0, n_cls))
        b = np.asarray([box for i in chosen for box in per_input[i]], np.float32).reshape(-1, 4)
        x1, y1 = np.minimum(1.0, b[:, 0] + b[:, 2]), np.minimum(1.0, b[:, 1] + b[:, 3])
        b[:, 2], b[:, 3] = x1 - b[:, 0], y1 - b[:, 1]
        return b, f.astype(np.float32), z.astype(np.float32)

    def class_levels(self, label: str) -> dict[LevelName, float]:
        """Levels set in config apply to every class; else the card's threshold is yellow (the alarm) and
        orange and red lie half and four fifths of the way from it to 1."""
        if self.config.levels is not None:
            return dict(self.config.levels)
        t = float(self.thresholds[label])
        return {"yellow": t, "orange": round(t + (1 - t) * 0.5, 4), "red": round(t + (1 - t) * 0.8, 4)}

    def layout(self, shape: tuple[int, ...], key: str) -> TileLayout:
        """The tiles of a frame of ``shape`` from camera ``key`` (see ``TileLayout``)."""
        h, w = shape[:2]
        tile_px, overlap, band, min_side = self.config.tiling_of(key)
        y0 = min(h - 1, int(band[0] * h))
        y1 = max(y0 + 1, min(h, round(band[1] * h)))
        bh, s = y1 - y0, self.size
        g = self.grid
        if tile_px <= 0 or min(bh, w) < min_side:  # the whole band squashed into one input
            return TileLayout(y0, y1, s / w, s / bh, g, g, ((0, 0),), (0.0, y0 / h, 1.0, bh / h), False, (g, g))
        side = min(tile_px, bh, w)
        scale = s / side
        cell = s / g  # model pixels per cell
        gw, gh = max(g, -(-round(w * scale) // cell)), max(g, -(-round(bh * scale) // cell))
        gw, gh = int(gw), int(gh)
        step = max(1, g - min(overlap, g - 1))
        cols = sorted({*range(0, gw - g + 1, step), gw - g})
        rows = sorted({*range(0, gh - g + 1, step), gh - g})
        cell_px = cell / scale  # frame pixels per cell
        area = (0.0, y0 / h, gw * cell_px / w, gh * cell_px / h)
        used = (max(1, round(bh / cell_px)), max(1, round(w / cell_px)))
        origins = tuple((r, c) for r in rows for c in cols)
        return TileLayout(y0, y1, scale, scale, gh, gw, origins, area, self.config.context, used)

    def model_view(self, image: npt.NDArray[np.uint8], lay: TileLayout) -> npt.NDArray[np.uint8]:
        """The band at the model's scale, padded (edge pixels repeated) to whole cells: tiles are crops of it."""
        import cv2  # imported where used: loading the config must not load OpenCV

        band = image[lay.y0 : lay.y1]
        cell = self.size // self.grid
        size = (max(1, round(band.shape[1] * lay.sx)), max(1, round(band.shape[0] * lay.sy)))
        view = cv2.resize(band, size, interpolation=cv2.INTER_AREA)
        ph, pw = lay.gh * cell - view.shape[0], lay.gw * cell - view.shape[1]
        if ph > 0 or pw > 0:
            view = cv2.copyMakeBorder(view, 0, max(0, ph), 0, max(0, pw), cv2.BORDER_REPLICATE)
        return np.asarray(view[: lay.gh * cell, : lay.gw * cell], np.uint8)

    def preprocess(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """One frame as the model's whole-frame input (the former single-input path; tests, tools)."""
        import cv2  # imported where used: loading the config must not load OpenCV

        rgb = cv2.cvtColor(cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        return (rgb.transpose(2, 0, 1).astype(np.float32) / 255.0).astype(np.float32)

    def observe(self, batch: FrameBatch, state: CameraState) -> list[Observation]:
        """Each frame in tiles at (or near) its own resolution; a tile whose content has not changed since the
        model last scored it (its own reference, not the previous frame) and whose score is recent reuses it."""
        import cv2  # imported where used: loading the config must not load OpenCV

        if self.head != "classifier_grid":
            return self._observe_whole(batch, state)
        # A camera's frames go one after another (each is gated against what the one before left); frames of
        # different cameras share the model's calls: the k-th frame of every camera is one wave.
        parts = waves(batch)
        if len(parts) > 1:
            observed: dict[int, Observation] = {}
            for wave in parts:
                for i, obs in zip(wave, self.observe(FrameBatch([batch.frames[i] for i in wave]), state), strict=True):
                    observed[i] = obs
            return [observed[i] for i in range(len(batch.frames))]
        cfg, g = self.config, self.grid
        ref = 8  # gate-copy pixels per cell
        todo: list[tuple[int, int]] = []  # (frame, input) the model must score
        crops: list[npt.NDArray[np.uint8]] = []
        plans = []
        for fi, frame in enumerate(batch.frames):
            lay = self.layout(frame.image.shape, frame.key)
            model = state.track(frame.key).model
            tiles = model.get("tiles")
            head = self.head_of(frame.key)
            version = head.version if head is not None else 0  # a new head: every tile is scored again
            if tiles is None or tiles["layout"] != lay or tiles.get("head", 0) != version:
                n = len(lay.origins) + int(lay.context)
                tiles = model["tiles"] = {
                    "layout": lay,
                    "ref": np.zeros((n, ref * g, ref * g), np.uint8),  # each input's content when last scored
                    "scored_at": np.full(n, -np.inf),
                    "cells": np.zeros((n, len(self.labels), g, g), np.float32),
                    "head": version,
                }
            inputs = self.inputs(frame.image, lay)
            # The gate's copy of each input (8 pixels a cell), against its own copy from when the model last
            # scored it: haze thickening a little each minute adds up until the tile is scored again.
            blank = np.zeros((ref * g, ref * g), np.uint8)
            now = [cv2.resize(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), (ref * g, ref * g), interpolation=cv2.INTER_AREA)
                   if cfg.motion_gate > 0 else blank for x in inputs]  # fmt: skip
            # A tile with a cell that rose lately is looked at again on every frame until it is confirmed or
            # gone: persistence must come from new looks, never from a reused score.
            suspect = np.zeros((lay.gh, lay.gw), bool)
            for memory in state.track(frame.key).memory.values():
                for rose in memory.rose:
                    if rose.shape == suspect.shape:
                        suspect |= rose
            whole_suspect = bool(suspect.any())
            for ti, x in enumerate(inputs):
                fresh = frame.ts - tiles["scored_at"][ti] < cfg.motion_max_age_s
                if ti < len(lay.origins):
                    r, c = lay.origins[ti]
                    fresh = fresh and not suspect[r : r + g, c : c + g].any()
                else:
                    fresh = fresh and not whole_suspect
                if fresh and cfg.motion_gate > 0:
                    changed = float(np.mean(cv2.absdiff(now[ti], tiles["ref"][ti]) > cfg.motion_pixel_delta))
                    if changed < cfg.motion_gate:
                        continue
                todo.append((fi, ti))
                crops.append(x)
            plans.append((lay, tiles, now))
        fresh_cells = self._run(crops, [batch.frames[fi].key for fi, _ti in todo])
        for (fi, ti), cells in zip(todo, fresh_cells, strict=True):
            lay, tiles, now = plans[fi]
            tiles["cells"][ti] = cells
            tiles["ref"][ti] = now[ti]
            tiles["scored_at"][ti] = batch.frames[fi].ts
        out: list[Observation] = []
        for frame, (lay, tiles, _now) in zip(batch.frames, plans, strict=True):
            grid = np.zeros((len(self.labels), lay.gh, lay.gw), np.float32)
            fresh = np.zeros((lay.gh, lay.gw), bool)
            for (r, c), cells, at in zip(lay.origins, tiles["cells"], tiles["scored_at"], strict=False):
                np.maximum(grid[:, r : r + g, c : c + g], cells, out=grid[:, r : r + g, c : c + g])
                fresh[r : r + g, c : c + g] |= at == frame.ts
            if lay.context:  # the whole band's cells, each spread over the tiles' cells it covers
                rows, cols = lay.used
                for k in range(len(self.labels)):
                    spread = cv2.resize(tiles["cells"][-1][k], (cols, rows), interpolation=cv2.INTER_NEAREST)
                    np.maximum(grid[k, :rows, :cols], spread, out=grid[k, :rows, :cols])
            obs = Observation(frame, {}, {}, grid_area=lay.grid_area, fresh=fresh)
            for k, label in enumerate(self.labels):
                cells = grid[k]
                obs.scores[label] = round(float(cells.max()), 6)
                obs.cells[label] = cells
                mark = np.argwhere(cells >= self.thresholds[label])
                if not len(mark):  # no cell reaches the threshold: the region is the best cell
                    mark = np.argwhere(cells == cells.max())[:1]
                obs.regions[label] = [obs.cell_box(r, c, cells.shape) for r, c in mark.tolist()]
            obs.detail["tiles"] = len(lay.origins)
            out.append(obs)
        return out

    def _observe_whole(self, batch: FrameBatch, state: CameraState) -> list[Observation]:
        """A detection head (YOLO): the whole frame as one input, every frame."""
        frames = batch.frames
        results: list[Result] = []
        for i in range(0, len(frames), self.config.batch_size):
            chunk = frames[i : i + self.config.batch_size]
            x = np.stack([self.preprocess(f.image) for f in chunk])
            outputs = self.session.run(None, {self.input_name: x})
            results.extend(self._yolo(outputs[0][j]) for j in range(len(chunk)))
        return [
            Observation(f, dict(scores), {k: list(v) for k, v in regions.items()}, cells=dict(cells))
            for f, (scores, regions, cells) in zip(frames, results, strict=True)
        ]

    def _yolo(self, raw: npt.NDArray[Any]) -> Result:
        import cv2  # imported where used: loading the config must not load OpenCV

        pred = raw.T if raw.shape[0] == 4 + len(self.labels) else raw  # to (anchors, 4 + C)
        boxes_px = pred[:, :4]
        result: dict[str, float] = {}
        regions: dict[str, list[Box]] = {}
        for k, label in enumerate(self.labels):
            cls_scores = pred[:, 4 + k]
            keep = np.flatnonzero(cls_scores >= self.thresholds[label])
            result[label] = round(float(cls_scores.max()), 6) if cls_scores.size else 0.0
            if not keep.size:
                regions[label] = []
                continue
            xywh = [[float(cx - w / 2), float(cy - h / 2), float(w), float(h)] for cx, cy, w, h in boxes_px[keep]]
            chosen = cv2.dnn.NMSBoxes(xywh, cls_scores[keep].tolist(), self.thresholds[label], self.config.nms_iou)
            s = float(self.size)
            regions[label] = [
                (max(0.0, xywh[i][0] / s), max(0.0, xywh[i][1] / s), xywh[i][2] / s, xywh[i][3] / s)
                for i in np.asarray(chosen).reshape(-1).tolist()
            ]
        return result, regions, {}
