"""A camera's own head: a correction of the shipped head, learned from its operators' verdicts.

The shipped model's last layer turns each grid cell's frozen features into class logits. A camera's learned
head adds a linear correction per class, ``logit + weights[c] @ (features / scale) + bias[c]``, fitted with
numpy (L2-regularised logistic regression with the shipped logit as offset, Newton steps: deterministic, well
under a second for 500 examples on one core) on that camera's labelled cells:

- ``real``: cells an operator confirmed as fire or smoke (positive for that class; they never expire and a
  head that misses one of them is refused: a later dismissal cannot outvote them);
- ``dismissed``: cells of a scene an operator called a false alarm (negative for the class that alarmed) until
  they expire (``expire_s`` after the last verdict that named them);
- ``anchor``: other cells of the same frames, whose target is the shipped head's own probability: they keep
  the correction from drifting on the rest of the scene;
- ``reference`` (not kept per camera): cells the shipped head is sure of on fire and plume scenes of its own
  training (the camera simulator), also held at the shipped head's probability: the correction must quiet the
  dismissed scene by what sets it apart, not by what every plume has.

The regularisation goes from strong to weak (``LAMBDAS``); the first head that still finds every confirmed
cell and keeps every dismissed cell ``margin`` (in logits) under the alarm is accepted, else none is and
the camera keeps the head it has, with the reason.

>>> rng = np.random.default_rng(0)
>>> ex = Examples.empty(4, 1)
>>> ex = ex.added(rng.random((20, 4), np.float32) + [2, 0, 0, 0], np.full((20, 1), 3.0, np.float32), DISMISSED, -1,
...               100.0, 1, np.zeros((20, 4), np.float32))
>>> ex = ex.added(rng.random((5, 4), np.float32) + [0, 2, 0, 0], np.full((5, 1), 3.0, np.float32), REAL, 0, 100.0, 2,
...               np.zeros((5, 4), np.float32))
>>> fit = fit_head(ex, np.array([0.9]), now=100.0, expire_s=1e9, margin=0.5, version=1, model="m")
>>> fit.head is not None, fit.reason
(True, '')
>>> z = fit.head.correct_rows(ex.logits, ex.features)
>>> bool((z[ex.kind == REAL] >= logit(0.9)).all()), bool((z[ex.kind == DISMISSED] < logit(0.9) - 0.5).all())
(True, True)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REAL, DISMISSED, ANCHOR, REFERENCE = 1, 0, 2, 3
KIND_NAMES = {REAL: "real", DISMISSED: "dismissed", ANCHOR: "anchor"}
LAMBDAS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)  # strong to weak: the first head that passes is kept
REAL_WEIGHT, ANCHOR_WEIGHT, REFERENCE_WEIGHT = 4.0, 0.25, 1.0
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def logit(p: float | F64) -> Any:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class LearnedHead:
    """One version of a camera's head: per class, ``weights[c] @ (features / scale) + bias[c]`` is added to
    the shipped logit. ``model``: the sha256 of the model file whose features it was fitted on."""

    version: int
    weights: F64  # (C, F)
    bias: F64  # (C,)
    scale: F64  # (F,)
    model: str
    created_at: float
    examples: dict[str, int] = field(default_factory=dict)  # kind name -> count
    note: str = ""

    @property
    def features(self) -> int:
        return int(self.weights.shape[1])

    def correct(self, logits: F32, features: F32) -> F32:
        """Corrected logits of model outputs ``logits`` (N, C, G, G) and ``features`` (N, F, G, G)."""
        w = (self.weights / self.scale).astype(np.float32)
        delta = np.einsum("cf,nfhw->nchw", w, features, optimize=True) + self.bias.astype(np.float32)[:, None, None]
        return np.asarray(logits + delta, np.float32)

    def correct_rows(self, logits: F32, features: F32) -> F64:
        """Corrected logits of example rows: ``logits`` (n, C), ``features`` (n, F)."""
        return logits.astype(np.float64) + (features.astype(np.float64) / self.scale) @ self.weights.T + self.bias

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "weights": self.weights.tolist(), "bias": self.bias.tolist(),
            "scale": self.scale.tolist(), "model": self.model, "created_at": self.created_at,
            "examples": dict(self.examples), "note": self.note,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LearnedHead:
        return cls(int(d["version"]), np.asarray(d["weights"], np.float64), np.asarray(d["bias"], np.float64),
                   np.asarray(d["scale"], np.float64), str(d["model"]), float(d["created_at"]),
                   dict(d.get("examples", {})), str(d.get("note", "")))  # fmt: skip


@dataclass(frozen=True)
class Examples:
    """A camera's labelled cells, one row each (columns as numpy arrays; saved as one .npz)."""

    features: F32  # (n, F)
    logits: F32  # (n, C): the shipped head's
    kind: npt.NDArray[np.int8]  # REAL, DISMISSED, ANCHOR
    cls: npt.NDArray[np.int8]  # REAL: the class confirmed; DISMISSED: the class dismissed (-1: every class)
    at: F64  # the verdict's time (a dismissed cell expires from its latest verdict)
    verdict: npt.NDArray[np.int64]  # the verdict that gave it
    box: F32  # (n, 4): the cell on the frame, x, y, w, h as fractions

    @classmethod
    def empty(cls, features: int, classes: int) -> Examples:
        return cls(np.zeros((0, features), np.float32), np.zeros((0, classes), np.float32), np.zeros(0, np.int8),
                   np.zeros(0, np.int8), np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))  # fmt: skip

    def __len__(self) -> int:
        return len(self.kind)

    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.kind == k)) for k, name in KIND_NAMES.items()}

    def added(self, features: F32, logits: F32, kind: int, cls: int, at: float, verdict: int, box: F32) -> Examples:
        n = len(features)
        return Examples(
            np.concatenate([self.features, features.astype(np.float32)]),
            np.concatenate([self.logits, logits.astype(np.float32)]),
            np.concatenate([self.kind, np.full(n, kind, np.int8)]),
            np.concatenate([self.cls, np.full(n, cls, np.int8)]),
            np.concatenate([self.at, np.full(n, at)]),
            np.concatenate([self.verdict, np.full(n, verdict, np.int64)]),
            np.concatenate([self.box, box.astype(np.float32).reshape(-1, 4)]),
        )

    def where(self, keep: npt.NDArray[np.bool_]) -> Examples:
        return Examples(self.features[keep], self.logits[keep], self.kind[keep], self.cls[keep], self.at[keep],
                        self.verdict[keep], self.box[keep])  # fmt: skip

    def refreshed(self, region: tuple[float, float, float, float], at: float) -> Examples:
        """Dismissed cells whose centre lies in ``region`` are named again at ``at`` (their expiry restarts)."""
        cx, cy = self.box[:, 0] + self.box[:, 2] / 2, self.box[:, 1] + self.box[:, 3] / 2
        x, y, w, h = region
        inside = (self.kind == DISMISSED) & (cx >= x) & (cx <= x + w) & (cy >= y) & (cy <= y + h)
        return Examples(self.features, self.logits, self.kind, self.cls, np.where(inside, at, self.at), self.verdict,
                        self.box)  # fmt: skip

    def bounded(self, size: int) -> Examples:
        """At most ``size`` rows: anchors go first, then the oldest dismissed cells; confirmed cells last."""
        if len(self) <= size:
            return self
        rank = np.where(self.kind == ANCHOR, 0, np.where(self.kind == DISMISSED, 1, 2))
        order = np.lexsort((self.at, rank))  # lowest rank, then oldest, first out
        keep = np.zeros(len(self), bool)
        keep[order[len(self) - size :]] = True
        return self.where(keep)

    def live(self, now: float, expire_s: float) -> Examples:
        """Without the dismissed cells (and the anchors of their verdicts) that expired by ``now``."""
        gone = (self.kind != REAL) & (self.at + expire_s <= now)
        return self.where(~gone)

    def save(self) -> dict[str, npt.NDArray[Any]]:
        return {k: getattr(self, k) for k in ("features", "logits", "kind", "cls", "at", "verdict", "box")}

    @classmethod
    def load(cls, arrays: Any) -> Examples:
        return cls(*(np.asarray(arrays[k]) for k in ("features", "logits", "kind", "cls", "at", "verdict", "box")))


@dataclass(frozen=True)
class Fit:
    """A refit's outcome: the head (None: refused, ``reason`` says why) and how long it took."""

    head: LearnedHead | None
    reason: str
    seconds: float
    strength: float | None = None


def _fit_class(x: F64, offset: F64, target: F64, weight: F64, lam: float, start: F64 | None = None) -> F64:
    """Weighted L2-regularised logistic regression with an offset, by Newton's method from ``start`` (the
    previous strength's answer); (F + 1,) parameters."""
    n, f = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(f + 1) if start is None else start.copy()
    wsum = float(weight.sum())
    reg = lam * np.eye(f + 1)

    def loss(th: F64) -> float:
        z = offset + xb @ th
        bce = np.logaddexp(0.0, z) - target * z  # -log-likelihood, stable for any z
        return float(weight @ bce / wsum + 0.5 * lam * th @ th)

    current = loss(theta)
    for _ in range(30):
        z = offset + xb @ theta
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        grad = xb.T @ (weight * (p - target)) / wsum + lam * theta
        hess = (xb.T * (weight * p * (1 - p))) @ xb / wsum + reg
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-4:  # a damped step: the loss must fall (a full Newton step overshoots when p saturates)
            trial = loss(theta - t * step)
            if trial <= current:
                break
            t /= 2
        theta = theta - t * step
        current = loss(theta)
        if float(np.abs(t * step).max()) < 1e-6:
            break
    return theta


def fit_head(examples: Examples, thresholds: F64, now: float, expire_s: float, margin: float, version: int,
             model: str, reference: tuple[F32, F32] | None = None) -> Fit:  # fmt: skip
    """Fit a head on the live examples; accepted only if every confirmed cell still alarms and every dismissed
    cell is ``margin`` logits under the alarm of its class (``cls``; -1: every class). ``reference``: features
    and logits of cells the shipped head is sure of on its own training scenes (fire, plumes), kept at the
    shipped head's score: a dismissal must be learned from what sets the camera's scene apart, not from what
    every plume has (see the module's docstring)."""
    t0 = time.perf_counter()
    ex = examples.live(now, expire_s)
    real, dismissed = ex.kind == REAL, ex.kind == DISMISSED
    if not (real.any() or dismissed.any()):
        return Fit(None, "no verdicts left to learn from (the dismissed scenes expired): the shipped head",
                   time.perf_counter() - t0)  # fmt: skip
    feats, logits, kind, cls = ex.features, ex.logits, ex.kind, ex.cls
    if reference is not None and len(reference[0]):
        n = len(reference[0])
        feats, logits = np.concatenate([feats, reference[0]]), np.concatenate([logits, reference[1]])
        kind = np.concatenate([kind, np.full(n, REFERENCE, np.int8)])
        cls = np.concatenate([cls, np.full(n, -1, np.int8)])
    x = feats.astype(np.float64)
    scale = np.sqrt(np.mean(x * x, axis=0)) + 1e-3
    x = x / scale
    offsets = np.clip(logits.astype(np.float64), -30, 30)
    real, dismissed = kind == REAL, kind == DISMISSED
    bar = np.asarray(logit(thresholds), np.float64)
    classes = offsets.shape[1]
    failed = ""
    thetas: dict[int, F64] = {}
    for lam in LAMBDAS:
        weights = np.zeros((classes, x.shape[1]))
        bias = np.zeros(classes)
        for c in range(classes):
            quiet = dismissed & ((cls == c) | (cls == -1))
            mine = (real & (cls == c)) | quiet
            if not mine.any():
                continue  # nothing said about this class: the shipped head as it is
            use = mine | (kind == ANCHOR) | (kind == REFERENCE)
            shipped = 1 / (1 + np.exp(-offsets[:, c]))
            target = np.where(real & (cls == c), 1.0, np.where(quiet, 0.0, shipped))
            weight = np.where(real, REAL_WEIGHT, np.where(quiet, 1.0, np.where(kind == ANCHOR, ANCHOR_WEIGHT,
                                                                                 REFERENCE_WEIGHT)))  # fmt: skip
            theta = thetas[c] = _fit_class(x[use], offsets[use, c], target[use], weight[use], lam, thetas.get(c))
            weights[c], bias[c] = theta[:-1], theta[-1]
        z = offsets + x @ weights.T + bias
        missed = [int(i) for i in np.flatnonzero(real) if z[i, cls[i]] < bar[cls[i]]]
        over = z >= bar - margin
        loud = int(
            np.sum(dismissed & np.where(cls >= 0, over[np.arange(len(z)), np.maximum(cls, 0)], over.any(axis=1)))
        )
        if not missed and not loud:
            head = LearnedHead(version, weights, bias, scale, model, now, ex.counts())
            return Fit(head, "", time.perf_counter() - t0, lam)
        failed = (f"{len(missed)} of {int(real.sum())} confirmed cells would be missed" if missed else
                  f"{loud} of {int(dismissed.sum())} dismissed cells would still alarm")  # fmt: skip
    return Fit(None, f"no head both finds every confirmed fire and quiets the dismissed scene ({failed}); the "
               "camera keeps its current head", time.perf_counter() - t0)  # fmt: skip


def read_head(path: Path, version: int | None = None) -> LearnedHead | None:
    """A camera's head from its ``heads.json`` (``data_dir/camera_heads/<site>/<camera>/``, or the folder): the
    current version, or ``version`` (0: None, the shipped head). ``ValueError`` names the file and the fix."""
    path = path / "heads.json" if path.is_dir() else path
    try:
        doc = json.loads(path.read_text())
        heads = {int(h["version"]): LearnedHead.from_json(h) for h in doc["versions"]}
        wanted = int(doc.get("current", 0)) if version is None else version
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fix = "give data_dir/camera_heads/<site>/<camera>"
        raise ValueError(f"{path}: not a camera's learned heads ({exc}); {fix}") from None
    if wanted == 0:
        return None
    if wanted not in heads:
        raise ValueError(f"{path} has no head version {wanted} (versions: {', '.join(map(str, sorted(heads)))})")
    return heads[wanted]
