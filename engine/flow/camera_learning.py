"""Cameras that learn their own scene from the operators' verdicts, per camera, in the engine.

A verdict (``Verdict``: "false_alarm", "fire" or "smoke", optionally with the region corrected on the
snapshot) on a camera's alarm labels the cells of the alarm's frames:

- visible cameras (``smoke_fire_onnx``): the cells in the region become the camera's labelled examples
  (``detectors.vision.camera_heads``: confirmed, dismissed, and anchors from the rest of the frame), and the
  camera's head is refit at once; a head that still finds every confirmed cell and keeps every dismissed one
  under the alarm becomes the camera's next version, else the verdict is refused with the reason;
- thermal cameras (``thermal_hotspot``): a "false alarm" adds the hot spot, its time of day and its heat to the
  camera's hot-spot memory (``DismissedHotSpot``);
- large, far cameras' changes (``plume_change``): a "false alarm" on its finding adds the place (the verdict's
  region, else the finding's) to the camera's dismissed places (``DismissedPlace``: a chimney, a dust road, a
  spray at a fixed place), where a change no longer counts; a plume elsewhere in the view still does.

Each alarm frame says which detector's finding it was (``AlarmFrame.detector``): an incident with the smoke
model's findings and plume_change's teaches both, each from its own frames and region.

Safe learning: a dismissed region larger than ``max_dismissed_share`` of the frame is refused with an
explanation (``VerdictError``); dismissed scenes and places expire ``dismissed_expire_s`` after the last verdict
that named them (``expire`` refits); a confirmed fire is never outvoted: a head that would miss it is refused,
and a "fire" or "smoke" verdict lifts the dismissed hot spots and places its region covers.

Each camera's state is one record (``CameraModel.record``): the ``heads.json`` document (every version, the
current one, the hot spots, the dismissed places, the log of verdicts and rollbacks) and its examples as npz
bytes, so a restart gives the same heads. Where it is kept (``HeadKeeping``): files under
``data_dir/camera_heads/<site>/<camera>/`` (``CameraHeadFiles``, the local engine), the shared store
(``engine.store.camera_heads.StoredCameraHeads``, the scale-out's workers, read per site as a worker takes the
site's partition up), or nowhere (a replay). Rolling back to any earlier version (0: the shipped head) is one
call.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from detectors.thermal.thermal_hotspot import DismissedHotSpot, ThermalHotspot
from detectors.vision.base import Box, iou, union_box
from detectors.vision.camera_heads import ANCHOR, DISMISSED, REAL, Examples, LearnedHead, fit_head, read_head
from detectors.vision.plume_change import DismissedPlace, PlumeChange
from detectors.vision.smoke_fire_onnx import SmokeFireOnnx
from engine.config.models import CameraLearningConfig

logger = logging.getLogger(__name__)
VERDICTS = ("false_alarm", "fire", "smoke")
MAX_VERSIONS = 50  # versions kept per camera (the log keeps every verdict)
MAX_PLACES = 32  # dismissed places kept per camera (the soonest to expire go first)


def use_head_file(det: Any, path: Path, version: int | None = None) -> LearnedHead | None:
    """Score every camera of ``det`` (a ``smoke_fire_onnx`` detector) with a camera's learned head, read from
    its folder or ``heads.json`` (``gridwatch score/tune --head``); ``ValueError`` says why it cannot."""
    if not isinstance(det, SmokeFireOnnx):
        raise ValueError(f"--head: only a smoke_fire_onnx detector has learned heads, not {det.name}")
    head = read_head(path, version)
    if head is not None:
        if not det.enable_cell_outputs():
            raise ValueError(f"--head: the model {det.model_path} gives no per-cell features (or onnx is missing)")
        det.set_head("*", head)
    return head


class VerdictError(ValueError):
    """A verdict refused before anything was learned (the region is too large, the camera unknown…)."""


@dataclass(frozen=True)
class Verdict:
    """An operator's verdict on one camera's alarm. ``region``: x, y, w, h as fractions of the frame (None:
    the alarm's own cells); ``at``: when it was given, on the engine clock."""

    site: str
    camera: str
    verdict: Literal["false_alarm", "fire", "smoke"]
    at: float
    actor: str = ""
    region: Box | None = None
    incident_id: str = ""
    comment: str = ""

    @property
    def key(self) -> str:
        return f"{self.site}/{self.camera}"

    def to_json(self) -> dict[str, Any]:
        """As JSON (a scale-out worker queues it for the camera's owner).

        >>> v = Verdict("S1", "cam-1", "false_alarm", 5.0, "ops", (0.1, 0.2, 0.3, 0.4))
        >>> Verdict.from_json(v.to_json()) == v
        True
        """
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Verdict:
        region = doc.get("region")
        return cls(**{**doc, "region": tuple(region) if region is not None else None})


@dataclass
class AlarmFrame:
    """One frame of an alarm: the picture (visible BGR, thermal as decoded), its time, and the alarm's
    region and cells on it (x, y, w, h as fractions), score, class and detector (its name, the finding's)."""

    ts: float
    image: npt.NDArray[Any]
    boxes: list[Box]
    score: float = 0.0
    label: str = ""  # the class that alarmed ("": unknown, a dismissal then quiets every class there)
    detector: str = ""  # whose finding it was ("": unknown, learned as the smoke model's)


@dataclass
class CameraModel:
    """One camera's learned state: its head versions, the current one (0: shipped), examples, hot spots,
    dismissed places and log."""

    versions: list[LearnedHead] = field(default_factory=list)
    current: int = 0
    examples: Examples | None = None
    hot_spots: list[DismissedHotSpot] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    places: list[DismissedPlace] = field(default_factory=list)

    def head(self) -> LearnedHead | None:
        return next((h for h in self.versions if h.version == self.current), None)

    def record(self) -> tuple[dict[str, Any], bytes | None]:
        """The camera as it is kept: the ``heads.json`` document and the examples as npz bytes (None: none yet)."""
        doc = {"current": self.current, "versions": [h.to_json() for h in self.versions],
               "hot_spots": [asdict(h) for h in self.hot_spots], "places": [asdict(p) for p in self.places],
               "log": self.log[-1000:]}  # fmt: skip
        if self.examples is None:
            return doc, None
        npz = io.BytesIO()
        np.savez(npz, **self.examples.save())  # type: ignore[arg-type]
        return doc, npz.getvalue()

    @classmethod
    def from_record(cls, doc: Any, examples: bytes | None) -> CameraModel:
        """A camera from what ``record`` kept; ``ValueError``, ``KeyError``, ``TypeError``, ``AttributeError`` or
        ``zipfile.BadZipFile`` when it is damaged (``UNREADABLE``).

        >>> cam = CameraModel(current=0, log=[{"action": "rollback", "version": 0}],
        ...                   places=[DismissedPlace((0.1, 0.2, 0.05, 0.05), 100.0)])
        >>> CameraModel.from_record(*cam.record()) == cam, CameraModel.from_record({"current": 0}, None).places
        (True, [])
        """
        cam = cls(
            versions=[LearnedHead.from_json(h) for h in doc.get("versions", [])],
            current=int(doc.get("current", 0)),
            hot_spots=[DismissedHotSpot(**{**h, "region": tuple(h["region"])}) for h in doc.get("hot_spots", [])],
            log=list(doc.get("log", [])),
            # (records kept before plume_change learned have none)
            places=[DismissedPlace(**{**p, "region": tuple(p["region"])}) for p in doc.get("places", [])],
        )
        if examples is not None:
            with np.load(io.BytesIO(examples)) as arrays:
                cam.examples = Examples.load(arrays)
        return cam


# what a damaged record raises (``CameraModel.from_record``)
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile)


class HeadKeeping(Protocol):
    """Where the cameras' learned state is kept, one record per camera (``CameraModel.record``)."""

    def save(self, key: str, doc: dict[str, Any], examples: bytes | None) -> None:
        """Keep camera ``key``'s record (``examples`` None: none yet, those kept stay); raises when it cannot."""
        ...

    def load(self, sites: Collection[str] | None = None) -> Iterator[tuple[str, Any, bytes | None]]:
        """(key, document, examples) of every camera kept, or of the cameras of ``sites``."""
        ...


class CameraHeadFiles:
    """``HeadKeeping`` in files, the local engine's: ``root/<site>/<camera>/heads.json`` and ``examples.npz``,
    each written whole and then moved into place.

    >>> import tempfile
    >>> files = CameraHeadFiles(Path(tempfile.mkdtemp()))
    >>> files.save("S1/cam-1", {"current": 0}, b"npz")
    >>> list(files.load()), list(files.load(["S2"]))
    ([('S1/cam-1', {'current': 0}, b'npz')], [])
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def __str__(self) -> str:
        return str(self.root)

    def save(self, key: str, doc: dict[str, Any], examples: bytes | None) -> None:
        site, _, camera = key.partition("/")
        folder = self.root / site / camera
        folder.mkdir(parents=True, exist_ok=True)
        if examples is not None:
            tmp = folder / "examples.tmp.npz"
            tmp.write_bytes(examples)
            os.replace(tmp, folder / "examples.npz")
        tmp_json = folder / "heads.tmp.json"
        tmp_json.write_text(json.dumps(doc))
        os.replace(tmp_json, folder / "heads.json")

    def load(self, sites: Collection[str] | None = None) -> Iterator[tuple[str, Any, bytes | None]]:
        if not self.root.is_dir():
            return
        for heads in sorted(self.root.glob("*/*/heads.json")):
            folder = heads.parent
            if sites is not None and folder.parent.name not in sites:
                continue
            try:
                doc = json.loads(heads.read_text())
                examples = (folder / "examples.npz").read_bytes() if (folder / "examples.npz").is_file() else None
            except (OSError, ValueError) as exc:
                logger.error("%s: cannot read the camera's learned head (%s); it uses the shipped head", folder, exc)
                continue
            yield f"{folder.parent.name}/{folder.name}", doc, examples


def region_share(boxes: list[Box]) -> float:
    """The share of the frame the boxes cover (overlaps counted once, on a 200x200 raster).

    >>> region_share([(0.0, 0.0, 0.5, 0.5), (0.25, 0.25, 0.5, 0.5)])
    0.4375
    """
    raster = np.zeros((200, 200), bool)
    for x, y, w, h in boxes:
        raster[round(y * 200) : round((y + h) * 200), round(x * 200) : round((x + w) * 200)] = True
    return float(raster.mean())


def merged(boxes: list[Box]) -> list[Box]:
    """``boxes`` with those that overlap (directly or through others) replaced by the box around them.

    >>> merged([(0.0, 0.25, 0.25, 0.25), (0.125, 0.0, 0.25, 0.5), (0.75, 0.75, 0.125, 0.125)])
    [(0.0, 0.0, 0.375, 0.5), (0.75, 0.75, 0.125, 0.125)]
    """
    out: list[Box] = []
    for box in boxes:
        grown = box
        while (hit := next((o for o in out if iou(o, grown) > 0), None)) is not None:
            out.remove(hit)
            grown = union_box([hit, grown]) or grown
        out.append(grown)
    return out


def cells_in(cells: npt.NDArray[np.float32], boxes: list[Box]) -> npt.NDArray[np.bool_]:
    """Which cells (rows of x, y, w, h) have their centre in one of ``boxes``; where none does, the cells
    that overlap them (a box smaller than a cell still names it).

    >>> c = np.array([[0, 0, 0.5, 0.5], [0.5, 0, 0.5, 0.5]], np.float32)
    >>> cells_in(c, [(0.1, 0.1, 0.2, 0.2)]).tolist(), cells_in(c, [(0.6, 0.0, 0.3, 0.5)]).tolist()
    ([True, False], [False, True])
    """
    cx, cy = cells[:, 0] + cells[:, 2] / 2, cells[:, 1] + cells[:, 3] / 2
    inside = np.zeros(len(cells), bool)
    overlap = np.zeros(len(cells), bool)
    for x, y, w, h in boxes:
        inside |= (cx >= x) & (cx <= x + w) & (cy >= y) & (cy <= y + h)
        overlap |= (cells[:, 0] < x + w) & (cells[:, 0] + cells[:, 2] > x) & (cells[:, 1] < y + h)
        overlap &= cells[:, 1] + cells[:, 3] > y
    return inside if inside.any() else overlap


class CameraLearning:
    """The cameras' learned heads, hot-spot memories and dismissed places, their examples and versions,
    installed in the detectors they belong to (``visible``: smoke_fire_onnx, ``thermal``: thermal_hotspot,
    ``plume``: plume_change; None where there is none). Thread-safe: verdicts come from the API's thread,
    frames from the camera stage's.

    ``keeping``: a folder (the local engine's ``data_dir/camera_heads``, every camera read at once), a
    ``HeadKeeping`` (a scale-out worker's store: the cameras of a site are read with ``load`` when the worker
    takes the site's partition up, and let go with ``forget`` when it leaves), or None (in memory).
    """

    def __init__(
        self,
        settings: CameraLearningConfig,
        visible: SmokeFireOnnx | None,
        thermal: ThermalHotspot | None,
        keeping: HeadKeeping | Path | None = None,
        plume: PlumeChange | None = None,
    ) -> None:
        self.settings = settings
        self.plume = plume
        self._visible = visible
        self._enabled: bool | None = None  # the model's cell outputs are added at first need (a second's work)
        self._reference: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None
        self.thermal = thermal
        self.keeping: HeadKeeping | None = CameraHeadFiles(keeping) if isinstance(keeping, Path) else keeping
        self.cameras: dict[str, CameraModel] = {}
        self.lock = threading.Lock()
        self.next_expiry = float("inf")
        if isinstance(keeping, Path):
            self.load()

    @property
    def visible(self) -> SmokeFireOnnx | None:
        """The visible detector, once its model gives per-cell features (None: it cannot learn)."""
        if self._visible is None:
            return None
        if self._enabled is None:
            self._enabled = self._visible.enable_cell_outputs() > 0
        return self._visible if self._enabled else None

    def reference(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Cells the shipped head is sure of on fire and plume scenes of the camera simulator (its training
        scenes), computed once: what a camera's head must keep as it is (``fit_head``'s ``reference``)."""
        if self._reference is None:
            from simulators.camera import visible_frame

            det = self.visible
            assert det is not None
            bar = np.log(np.array([t / (1 - t) for t in (det.frame_threshold(k) for k in det.labels)]))
            feats, logits = [], []
            for scene, t, start in (("fire", 60.0, 5.0), ("smoke", 60.0, 5.0), ("distant-smoke", 600.0, 5.0)):
                for seed in (1, 2, 3):
                    _cells, f, z = det.cell_table(visible_frame(scene, t, seed=seed, start_s=start), "reference/sim")
                    sure = (z >= bar).any(axis=1)
                    feats.append(f[sure])
                    logits.append(z[sure])
            self._reference = (np.concatenate(feats), np.concatenate(logits))
        return self._reference

    # Verdicts

    def verdict(self, v: Verdict, frames: list[AlarmFrame], thermal: bool) -> dict[str, Any]:
        """Learn from a verdict on the camera's alarm ``frames`` (newest first), each by the detector whose
        finding it was: plume_change's frames teach its dismissed places, the others the camera's head (or,
        ``thermal``, its hot-spot memory). Returns what happened: the camera's version, whether a new head was
        accepted (``learned``) or why not (``reason``), the examples and the refit's seconds, the dismissed
        places, and ``taught``: what learned, in words. ``VerdictError`` when the verdict is refused outright."""
        if not self.settings.enabled:
            raise VerdictError("cameras.learning.enabled is false: verdicts are not taken")
        if v.verdict not in VERDICTS:
            raise VerdictError(f"verdict {v.verdict!r}: one of {', '.join(VERDICTS)}")
        if v.region is not None:
            x, y, w, h = v.region
            if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 - x + 1e-6 and 0 < h <= 1 - y + 1e-6):
                raise VerdictError(f"region {list(v.region)}: x, y, w, h as fractions of the frame, inside it")
        if not frames:
            raise VerdictError(
                f"no frame of {v.key}'s alarm is kept to learn from: none is held in memory, and the frames kept "
                "beside its snapshots (.frame.jpg) are gone (pruned, or on the scale-out worker that saw the alarm "
                "before the camera's site moved to another)"
            )
        # the operator's box, else the alarm's cells in its frames (a frame the alarm only held has none)
        boxes = [v.region] if v.region is not None else list(dict.fromkeys(b for f in frames for b in f.boxes))
        if not boxes:
            raise VerdictError("the alarm has no region: draw a box on the snapshot around what was judged")
        share = region_share(boxes)
        if v.verdict == "false_alarm" and share > self.settings.max_dismissed_share:
            raise VerdictError(
                f"the dismissed region covers {share:.0%} of the frame, more than cameras.learning."
                f"max_dismissed_share ({self.settings.max_dismissed_share:.0%}): a camera must not learn to ignore "
                "its whole view; draw a box around the part that is not fire"
            )
        n = self.settings.frames_per_verdict
        if thermal:
            with self.lock:
                return self._thermal_verdict(v, frames[:n], boxes)
        plume = self.plume.name if self.plume is not None else None
        changes = [f for f in frames if f.detector == plume][:n]
        cells = [f for f in frames if f.detector != plume][:n]

        def boxes_of(mine: list[AlarmFrame]) -> list[Box]:
            return [v.region] if v.region is not None else list(dict.fromkeys(b for f in mine for b in f.boxes))

        with self.lock:
            # A confirmed fire lifts the places it covers whichever detector's finding was judged.
            confirmed = v.verdict != "false_alarm" and bool(self.cameras.get(v.key, CameraModel()).places)
            places = self._place_verdict(v, boxes_of(changes) or boxes) if changes or confirmed else None
            if cells and (self.visible is not None or places is None):  # (no visible model and nothing else: refused)
                return self._visible_verdict(v, cells, boxes_of(cells) or boxes, places)
            return self._places_only(v, changes, places or {}, bool(cells))

    def _visible_verdict(self, v: Verdict, frames: list[AlarmFrame], boxes: list[Box],
                         places: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        det = self.visible
        if det is None:
            raise VerdictError("the visible model gives no per-cell features (or onnx is missing): nothing to learn")
        cam = self.cameras.setdefault(v.key, CameraModel())
        ex = cam.examples if cam.examples is not None else Examples.empty(det.feature_count, len(det.labels))
        verdict_id = len(cam.log) + 1
        if v.verdict == "false_alarm":
            for b in boxes:
                ex = ex.refreshed(b, v.at)  # dismissed again: its expiry starts again
        else:  # now confirmed: what was dismissed here is no longer
            old = cells_in(ex.box, boxes) & (ex.kind == DISMISSED) if len(ex) else np.zeros(0, bool)
            ex = ex.where(~old)
        labelled = 0
        for f in frames:
            if v.verdict == "false_alarm":
                cls = det.labels.index(f.label) if f.label in det.labels else -1
            else:
                cls = det.labels.index(v.verdict)
            cells, feats, logits = det.cell_table(f.image, v.key, near=boxes)
            mine = cells_in(cells, boxes)
            labelled += int(mine.sum())
            kind = DISMISSED if v.verdict == "false_alarm" else REAL
            ex = ex.added(feats[mine], logits[mine], kind, cls, v.at, verdict_id, cells[mine])
            if kind == DISMISSED and self.settings.anchors_per_frame:
                rest = np.flatnonzero(~mine)
                top = rest[np.argsort(-logits[rest].max(axis=1), kind="stable")[: self.settings.anchors_per_frame]]
                ex = ex.added(feats[top], logits[top], ANCHOR, -1, v.at, verdict_id, cells[top])
        ex = ex.bounded(self.settings.max_examples)
        fit = self._fit(cam, ex, v.at)
        entry = {"at": v.at, "actor": v.actor, "action": "verdict", "verdict": v.verdict, "incident_id": v.incident_id,
                 "region": list(v.region) if v.region else None, "frames": len(frames), "cells": labelled,
                 "learned": fit["learned"], "reason": fit["reason"], "version": cam.current,
                 "refit_s": fit["refit_s"]}  # fmt: skip
        what = f"{det.name}: head v{cam.current}" if fit["learned"] else f"{det.name}: no new head"
        entry |= {**(places or {}), "taught": [what, *(places or {}).get("taught", [])]}
        entry["learned"] = fit["learned"] or places is not None  # (``reason`` still says why the head was not)
        cam.log.append(entry)
        self._save(v.key, cam)
        return {"camera": v.key, "kind": "visible", **entry, "examples": cam.examples.counts() if cam.examples else {}}

    def _place_verdict(self, v: Verdict, boxes: list[Box]) -> dict[str, Any]:
        """plume_change's dismissed places of the camera: a false alarm adds ``boxes`` (and renews the places
        they overlap: dismissed again, their expiry starts again); a fire or smoke lifts those they cover."""
        assert self.plume is not None
        cam = self.cameras.setdefault(v.key, CameraModel())
        before = len(cam.places)
        if v.verdict == "false_alarm":
            expires = v.at + self.settings.dismissed_expire_s
            boxes = merged(boxes)  # one place per blob: its frames' regions grow with it
            for b in boxes:
                again = cells_in(np.asarray([p.region for p in cam.places], np.float32).reshape(-1, 4), [b])
                cam.places = [replace(p, expires_at=max(p.expires_at, expires)) if hit else p
                              for p, hit in zip(cam.places, again.tolist(), strict=True)]  # fmt: skip
                if not any(union_box([p.region, b]) == p.region for p in cam.places):  # (none holds it yet)
                    cam.places.append(DismissedPlace(b, expires))
            cam.places = sorted(cam.places, key=lambda p: p.expires_at)[-MAX_PLACES:]
            what = f"{self.plume.name}: a change at {len(boxes)} place{'s' if len(boxes) > 1 else ''} no longer counts"
        else:  # confirmed: no dismissal covering it stands
            cam.places = [p for p in cam.places if not cells_in(np.asarray([p.region], np.float32), boxes)[0]]
            what = f"{self.plume.name}: {before - len(cam.places)} dismissed place(s) lifted"
        self.plume.dismissed[v.key] = list(cam.places)
        self._plan_expiry()
        return {"dismissed_places": len(cam.places), "taught": [what]}

    def _places_only(self, v: Verdict, frames: list[AlarmFrame], places: dict[str, Any], cells: bool) -> dict[str, Any]:
        """The verdict's entry when only plume_change learned: no cells of the smoke model to label (or, with
        ``cells``, no model that gives per-cell features: said in ``reason``)."""
        cam = self.cameras.setdefault(v.key, CameraModel())
        reason = "the visible model gives no per-cell features (or onnx is missing): its head learned nothing"
        entry = {"at": v.at, "actor": v.actor, "action": "verdict", "verdict": v.verdict, "incident_id": v.incident_id,
                 "region": list(v.region) if v.region else None, "frames": len(frames), "learned": True,
                 "reason": reason if cells else "", "version": cam.current, **places}  # fmt: skip
        cam.log.append(entry)
        self._save(v.key, cam)
        return {"camera": v.key, "kind": "visible", **entry}

    def _fit(self, cam: CameraModel, ex: Examples, now: float) -> dict[str, Any]:
        """Refit on ``ex``; a head that passes becomes the next version and ``ex`` the camera's examples."""
        det = self.visible
        assert det is not None
        thresholds = np.array([det.frame_threshold(k) for k in det.labels])
        number = max((h.version for h in cam.versions), default=0) + 1
        s = self.settings
        fit = fit_head(ex, thresholds, now, s.dismissed_expire_s, s.margin, number, det.model_sha, self.reference())
        out = {"learned": False, "reason": fit.reason, "refit_s": round(fit.seconds, 3)}
        live = ex.live(now, s.dismissed_expire_s)
        if fit.head is None and not (live.kind != ANCHOR).any():  # nothing left to learn: the shipped head
            cam.examples, cam.current = live, 0
            out.update(learned=True, reason="")
        elif fit.head is not None:
            cam.versions.append(fit.head)
            del cam.versions[:-MAX_VERSIONS]
            cam.examples, cam.current = live, fit.head.version
            out["learned"] = True
        self._install_head(cam, self._key_of(cam))
        self._plan_expiry()
        return out

    def _thermal_verdict(self, v: Verdict, frames: list[AlarmFrame], boxes: list[Box]) -> dict[str, Any]:
        if self.thermal is None:
            raise VerdictError("no thermal_hotspot detector is configured: nothing to learn")
        if v.verdict == "smoke":
            raise VerdictError("a thermal camera sees heat, not smoke: call it a real fire or a false alarm")
        cam = self.cameras.setdefault(v.key, CameraModel())
        s = self.settings
        if v.verdict == "false_alarm":
            for f in frames:
                for b in boxes:
                    expires = v.at + s.dismissed_expire_s
                    spot = DismissedHotSpot(b, f.ts % 86400.0, f.score, expires, s.hot_spot_window_s, s.hot_spot_rise)
                    cam.hot_spots.append(spot)
        else:  # confirmed: no dismissal covering it stands
            cam.hot_spots = [h for h in cam.hot_spots if not cells_in(np.asarray([h.region], np.float32), boxes)[0]]
        self.thermal.dismissed[v.key] = list(cam.hot_spots)
        entry = {"at": v.at, "actor": v.actor, "action": "verdict", "verdict": v.verdict, "incident_id": v.incident_id,
                 "region": list(v.region) if v.region else None, "frames": len(frames), "learned": True,
                 "reason": "", "hot_spots": len(cam.hot_spots)}  # fmt: skip
        cam.log.append(entry)
        self._save(v.key, cam)
        return {"camera": v.key, "kind": "thermal", **entry}

    # Versions

    def rollback(self, key: str, version: int, actor: str, at: float) -> dict[str, Any]:
        """Use version ``version`` of camera ``key``'s head again (0: the shipped head); examples are kept."""
        with self.lock:
            cam = self.cameras.get(key)
            if cam is None:
                raise VerdictError(f"{key} has learned nothing: it uses the shipped head")
            if version != 0 and all(h.version != version for h in cam.versions):
                known = ", ".join(str(h.version) for h in cam.versions) or "none"
                raise VerdictError(f"{key} has no head version {version} (versions: 0 (shipped), {known})")
            cam.current = version
            self._install_head(cam, key)
            cam.log.append({"at": at, "actor": actor, "action": "rollback", "version": version})
            self._save(key, cam)
            return self.status(key)

    def status(self, key: str) -> dict[str, Any]:
        """Camera ``key``'s version, examples and versions, as the page shows them (``camera_status``)."""
        return camera_status(key, self.cameras.get(key))

    def expire(self, now: float) -> list[dict[str, Any]]:
        """Refit the cameras whose dismissed scenes expired by ``now`` (data time), and let their expired hot
        spots and dismissed places go; what changed."""
        if now < self.next_expiry:
            return []
        out = []
        with self.lock:
            s = self.settings
            for key, cam in self.cameras.items():
                cam.hot_spots = [h for h in cam.hot_spots if h.expires_at > now]
                if self.thermal is not None and key in self.thermal.dismissed:
                    self.thermal.dismissed[key] = list(cam.hot_spots)
                live = [p for p in cam.places if p.expires_at > now]
                gone = len(cam.places) - len(live)  # (plume_change leaves them out by capture time already)
                cam.places = live
                if self.plume is not None and key in self.plume.dismissed:
                    self.plume.dismissed[key] = list(live)
                ex = cam.examples
                result: dict[str, Any] = {"learned": True, "reason": ""}
                if ex is not None and len(ex.live(now, s.dismissed_expire_s)) < len(ex) and self.visible is not None:
                    result = self._fit(cam, ex, now)
                elif not gone:
                    continue
                result |= {"version": cam.current, "dismissed_places": len(live)}
                cam.log.append({"at": now, "actor": "engine", "action": "expired", **result})
                self._save(key, cam)
                out.append({"camera": key, **result})
            self._plan_expiry()
        return out

    def _plan_expiry(self) -> None:
        soon = [float(c.examples.at[c.examples.kind != REAL].min()) for c in self.cameras.values()
                if c.examples is not None and (c.examples.kind != REAL).any()]  # fmt: skip
        soon += [h.expires_at - self.settings.dismissed_expire_s for c in self.cameras.values() for h in c.hot_spots]
        soon += [p.expires_at - self.settings.dismissed_expire_s for c in self.cameras.values() for p in c.places]
        self.next_expiry = min(soon, default=float("inf")) + self.settings.dismissed_expire_s

    def _key_of(self, cam: CameraModel) -> str:
        return next(k for k, c in self.cameras.items() if c is cam)

    def _install_head(self, cam: CameraModel, key: str) -> None:
        if self._visible is None or (cam.current == 0 and key not in self._visible.heads):
            return  # nothing to install: no model reload for a camera on the shipped head
        if self.visible is None:
            return
        head = cam.head()
        try:
            self.visible.set_head(key, head)
        except ValueError as exc:  # fitted on another model (a retrained file): the shipped head
            logger.warning("%s; it uses the shipped head until it learns again", exc)
            self.visible.set_head(key, None)

    # Keeping

    def _save(self, key: str, cam: CameraModel) -> None:
        """Keep the camera's state; a disk that is full or read-only, or a store that is out, costs the kept copy
        (said in the log), never the camera stage (``expire`` saves on its thread) nor what was learned."""
        if self.keeping is None:
            return
        try:
            self.keeping.save(key, *cam.record())
        except Exception as exc:
            logger.error("%s: cannot save the camera's learned head of %s (%s); it is in use until the engine stops, "
                         "and saved with the camera's next change", self.keeping, key, exc)  # fmt: skip

    def load(self, sites: Collection[str] | None = None) -> list[str]:
        """Read the kept cameras (of ``sites``: those a worker takes up) and install their heads, in place of
        what is held of them here; a damaged record leaves its camera on the shipped head. The cameras read."""
        if self.keeping is None:
            return []
        read: list[str] = []
        with self.lock:  # read under the lock too: no change of these cameras between reading and installing
            kept = list(self.keeping.load(sites))
            if sites is not None:
                self._forget(sites)
            for key, doc, examples in kept:
                try:
                    cam = CameraModel.from_record(doc, examples)
                except UNREADABLE as exc:
                    logger.error("%s: cannot read the camera's learned head of %s (%s); it uses the shipped head",
                                 self.keeping, key, exc)  # fmt: skip
                    continue
                self.cameras[key] = cam
                self._install_head(cam, key)
                if self.thermal is not None and cam.hot_spots:
                    self.thermal.dismissed[key] = list(cam.hot_spots)
                if self.plume is not None and cam.places:
                    self.plume.dismissed[key] = list(cam.places)
                read.append(key)
            self._plan_expiry()
        return read

    def forget(self, sites: Collection[str]) -> None:
        """Let the cameras of ``sites`` go (their partition moved to another worker, which learns from now on):
        the shipped head and no hot-spot memory nor dismissed places here until they are read again."""
        with self.lock:
            self._forget(sites)
            self._plan_expiry()

    def _forget(self, sites: Collection[str]) -> None:
        for key in [k for k in self.cameras if k.partition("/")[0] in sites]:
            cam = self.cameras.pop(key)
            cam.current = 0
            self._install_head(cam, key)
            if self.thermal is not None:
                self.thermal.dismissed.pop(key, None)
            if self.plume is not None:
                self.plume.dismissed.pop(key, None)


def camera_status(key: str, cam: CameraModel | None) -> dict[str, Any]:
    """Camera ``key``'s version, examples and versions, as the page shows them (None: it learned nothing).

    >>> camera_status("S1/cam-1", None)["version"]
    0
    """
    cam = cam or CameraModel()
    head = cam.head()
    return {
        "camera": key,
        "version": cam.current,
        "examples": cam.examples.counts() if cam.examples is not None else {},
        "versions": [{"version": h.version, "created_at": h.created_at, "examples": h.examples} for h in cam.versions],
        "hot_spots": len(cam.hot_spots),
        "dismissed_places": len(cam.places),
        "model": head.model[:12] if head else None,
        "log": cam.log[-20:],
    }
