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

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from detectors.vision.base import (
    Box,
    CameraDetector,
    CameraDetectorConfig,
    CameraState,
    FrameBatch,
    Observation,
    changed_share,
    register_camera,
)
from engine.core.levels import LevelName

ROOT = Path(__file__).resolve().parents[2]
Result = tuple[dict[str, float], dict[str, list[Box]], dict[str, npt.NDArray[np.float32]]]  # scores, regions, cells


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
    batch_size: int = Field(8, ge=1, description="Frames per inference call.")
    motion_gate: float = Field(
        0.002,
        ge=0,
        le=1,
        description="Frames in which less than this share of the scene changed since the camera's previous one "
        "reuse its last result instead of running the model (0: run on every frame).",
    )
    threads: int = Field(1, ge=1, description="onnxruntime intra-op threads.")
    providers: list[str] = Field(
        ["CPUExecutionProvider"], description="onnxruntime execution providers in order of preference."
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

    @classmethod
    def example_config(cls) -> SmokeFireOnnxConfig:
        return SmokeFireOnnxConfig(type="smoke_fire_onnx", confirm_k=2, confirm_n=3)

    def class_levels(self, label: str) -> dict[LevelName, float]:
        """Levels set in config apply to every class; else the card's threshold is yellow (the alarm) and
        orange and red lie half and four fifths of the way from it to 1."""
        if self.config.levels is not None:
            return dict(self.config.levels)
        t = float(self.thresholds[label])
        return {"yellow": t, "orange": round(t + (1 - t) * 0.5, 4), "red": round(t + (1 - t) * 0.8, 4)}

    def preprocess(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        import cv2  # imported where used: loading the config must not load OpenCV

        rgb = cv2.cvtColor(cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        return (rgb.transpose(2, 0, 1).astype(np.float32) / 255.0).astype(np.float32)

    def observe(self, batch: FrameBatch, state: CameraState) -> list[Observation]:
        frames = batch.frames
        # Motion gate: a static scene reuses the camera's last result; only changed frames go to the model.
        gated: list[bool] = []
        seen: set[str] = set()  # cameras with an earlier frame in this batch (its result will be there)
        for f in frames:
            gate = self.config.motion_gate
            still = gate > 0 and changed_share(state.track(f.key), f.image) < gate
            gated.append(still and (f.key in seen or "last_result" in state.track(f.key).model))
            seen.add(f.key)
        todo = [f for f, g in zip(frames, gated, strict=True) if not g]
        results: list[Result] = []
        for i in range(0, len(todo), self.config.batch_size):
            chunk = todo[i : i + self.config.batch_size]
            x = np.stack([self.preprocess(f.image) for f in chunk])
            outputs = self.session.run(None, {self.input_name: x})
            for j in range(len(chunk)):
                if self.head == "classifier_grid":
                    results.append(self._grid(outputs[0][j], outputs[1][j]))
                else:
                    results.append(self._yolo(outputs[0][j]))
        out: list[Observation] = []
        fresh = iter(results)
        for frame, g in zip(frames, gated, strict=True):
            model = state.track(frame.key).model
            if not g:
                model["last_result"] = next(fresh)
            scores, regions, cells = model["last_result"]
            out.append(Observation(frame, dict(scores), {k: list(v) for k, v in regions.items()}, cells=dict(cells)))
        return out

    def _grid(self, scores: npt.NDArray[Any], grid: npt.NDArray[Any]) -> Result:
        g = grid.shape[-1]
        result, regions, cells_of = {}, {}, {}
        for k, label in enumerate(self.labels):
            result[label] = round(float(scores[k]), 6)
            cells_of[label] = np.asarray(grid[k], np.float32).copy()
            cells = np.argwhere(grid[k] >= self.thresholds[label])
            if not len(cells):
                cells = np.argwhere(grid[k] == grid[k].max())[:1]
            regions[label] = [(float(c) / g, float(r) / g, 1.0 / g, 1.0 / g) for r, c in cells.tolist()]
        return result, regions, cells_of

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
