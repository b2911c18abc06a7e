"""What the training and the evaluation scripts share: which clip a Roboflow image comes from, and
frame-level precision, recall and F1."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


def clip_of(name: str) -> str:
    """The clip an image comes from: `fire1_mp4-24_jpg.rf…` → fire1_mp4; `img_1002_jpg.rf…` → img_block50."""
    stem = name.split(".rf.", maxsplit=1)[0]
    m = re.match(r"img_(\d+)_", stem)
    if m:
        return f"img_block{int(m.group(1)) // 20}"
    return re.sub(r"-\d+_(jpg|jpeg|png)$", "", stem)


def prf(pred: Sequence[bool] | np.ndarray, truth: Sequence[bool] | np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 (3 decimals) and the counts, from per-frame predictions and truth."""
    p_, t_ = np.asarray(pred, bool), np.asarray(truth, bool)
    tp, fp, fn = int((p_ & t_).sum()), int((p_ & ~t_).sum()), int((~p_ & t_).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f1, 3), "tp": tp, "fp": fp, "fn": fn}
