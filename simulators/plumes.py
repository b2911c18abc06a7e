"""Plumes drawn onto real frames: the tile training's drawing (``models/train_tiles.py``), also used by the
plume streams (``models/plume_streams.py``) as a second drawing, so that a detector is not judged on the one
drawing it was developed on."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt


def plume(shape: tuple[int, int], height: float, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Opacity (0..1) of a plume ``height`` pixels high: a column of puffs from a base (in or below the tile),
    leaning and spreading, with a cloudy texture; or, now and then, a wisp drifting across."""
    h, w = shape
    alpha: npt.NDArray[Any] = np.zeros((h, w), np.float32)
    bx, by = rng.uniform(0.1, 0.9) * w, rng.uniform(0.3, 1.1) * h
    if rng.random() < 0.25:  # a wisp drifting with the wind: an elongated, tilted blob
        axes = (max(1, int(height * rng.uniform(0.8, 2.0))), max(1, int(height * rng.uniform(0.15, 0.4))))
        cv2.ellipse(alpha, (int(bx), int(by - height / 2)), axes, float(rng.uniform(-25, 25)), 0, 360, 1.0, -1)
    else:
        n = max(6, int(height / 1.5))
        width0 = max(0.6, height * rng.uniform(0.05, 0.15))
        spread, lean = rng.uniform(0.1, 0.45), rng.uniform(-0.8, 0.8)
        x = bx
        for i in range(n):
            z = height * i / (n - 1)
            x += lean * height / n + rng.normal(0, 0.15) * (width0 + spread * z)
            r = width0 + spread * z * rng.uniform(0.6, 1.2)
            puff = float(rng.uniform(0.6, 1.0))
            cv2.circle(alpha, (round(x), round(by - z)), max(1, round(r)), puff, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.6, 0.05 * height))
    noise = cv2.resize(rng.random((6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(alpha * (0.55 + 0.6 * noise), 0.0, 1.0).astype(np.float32)


def plume_colour(dusk: bool, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """BGR of a plume: light grey to white by day (some bluish or brownish), dimmer and warmer at dusk,
    now and then dark smoke."""
    if rng.random() < 0.12:
        grey = rng.uniform(30, 90)
    else:
        grey = rng.uniform(150, 245) * (rng.uniform(0.45, 0.8) if dusk else 1.0)
    tint = rng.normal(0, 0.06, 3)
    if dusk:
        tint += np.array([-0.08, 0.0, 0.08])
    return np.clip(grey * (1 + tint), 0, 255).astype(np.float32)
