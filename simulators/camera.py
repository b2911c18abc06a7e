"""Camera feeds: synthetic scenes with fire, smoke and the things that look like them, replayed recordings.

Synthetic visible scenes (640x360 BGR, deterministic by seed) draw a hillside under a sky and add:
- ``fire``: flames that start at ``start_s``, grow and flicker, with a smoke plume rising from them;
- ``smoke``: a grey plume that rises and spreads, no flame;
- ``distant-smoke``: a thin plume rising from a far ridge under a hazy sky, a few per cent of the frame
  (what a wildfire tower camera sees in the first minutes);
- distractors that must not raise an alarm: ``fog`` (a bank drifting across most of the frame),
  ``clouds`` (white clouds moving in the sky), ``sunset`` (an orange glow over the sky),
  ``red-vehicle`` (a red car driving along the road), ``headlights`` (a night road with car lights),
  ``haze`` (a brownish-white haze over the whole sky), ``ridge`` (a bare brown ridge lit by a low sun),
  ``red-interior`` (a room with red walls and a warm lamp), ``lights`` (street lamps and lit windows
  at night).
The thermal scene (160x120 float32 °C) has a 15-25 °C hillside, two sun-heated rocks at 45-58 °C, a
walking person at 34 °C, and from ``start_s`` a fire that grows to several hundred degrees.

A feed (``synthetic``; recordings with their frame times come from ``engine/ingest/camera_recording.py``)
publishes over MQTT (``gw/cameras/<site>/<camera>`` JPEG, ``gw/thermal/<site>/<camera>`` .npy °C) with
the capture time in the MQTT v5 user property ``ts`` (``gridwatch camera``), or is written as an image
folder (``write_folder``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

SCENES: tuple[str, ...] = (
    "fire", "smoke", "distant-smoke", "fog", "clouds", "sunset", "red-vehicle", "headlights", "haze", "ridge",
    "red-interior", "lights", "thermal-fire",
)  # fmt: skip
HARD_NEGATIVES: tuple[str, ...] = (
    "fog", "clouds", "sunset", "red-vehicle", "headlights", "haze", "ridge", "red-interior", "lights"
)  # fmt: skip
W, H = 640, 360


def _landscape(rng: np.random.Generator, night: bool = False) -> npt.NDArray[np.uint8]:
    img = np.zeros((H, W, 3), np.uint8)
    top, bottom = ((30, 20, 10), (60, 40, 20)) if night else ((235, 200, 150), (250, 230, 200))  # BGR sky
    for y in range(H // 2):
        a = y / (H / 2)
        img[y] = [int(top[c] * (1 - a) + bottom[c] * a) for c in range(3)]
    hill = np.array([[0, 190], [120, 160], [260, 185], [400, 150], [520, 175], [640, 160], [640, 360], [0, 360]])
    cv2.fillPoly(img, [hill], (40, 70, 50) if night else (60, 110, 80))
    cv2.fillPoly(img, [np.array([[0, 300], [640, 280], [640, 310], [0, 335]])], (70, 70, 70))  # the road
    return _noisy(img, rng, 6)


def _noisy(img: npt.NDArray[np.uint8], rng: np.random.Generator, amplitude: int) -> npt.NDArray[np.uint8]:
    """The picture with sensor noise of up to ``amplitude`` grey levels, as every scene has."""
    noise = rng.integers(-amplitude, amplitude + 1, img.shape)
    out: npt.NDArray[np.uint8] = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return out


def _plume(img: npt.NDArray[np.uint8], x: int, y: int, age: float, rng: np.random.Generator) -> None:
    overlay = img.copy()
    for k in range(int(6 + 10 * min(age, 1.0))):
        r = int(10 + 40 * min(age, 1.0) * (k + 1) / 10)
        cx = x + int(rng.normal(0, 5)) + k * 4
        cy = y - k * 14
        cv2.circle(overlay, (cx, cy), r, (170, 170, 175), -1)
    cv2.addWeighted(overlay, 0.55, img, 0.45, 0, dst=img)


def _flames(img: npt.NDArray[np.uint8], x: int, y: int, size: float, rng: np.random.Generator) -> None:
    for _ in range(int(6 + 12 * size)):
        w = int(rng.integers(6, 10 + int(30 * size)))
        h = int(rng.integers(15, 20 + int(60 * size)))
        cx = x + int(rng.normal(0, 8 + 20 * size))
        colour = (0, int(rng.integers(90, 200)), 255)  # BGR: red to orange to yellow
        cv2.ellipse(img, (cx, y - h // 2), (w // 2, h // 2), 0, 0, 360, colour, -1)
    cv2.ellipse(img, (x, y - 8), (int(6 + 12 * size), 8), 0, 0, 360, (120, 230, 255), -1)  # the hot core


def visible_frame(scene: str, t: float, seed: int = 0, start_s: float = 5.0) -> npt.NDArray[np.uint8]:
    """One frame of a synthetic scene at ``t`` seconds from its start."""
    rng = np.random.default_rng([seed, round(t * 1000)])
    if scene == "red-interior":
        return _red_interior(rng, t)
    img = _landscape(rng, night=scene in ("headlights", "lights"))
    age = max(0.0, (t - start_s) / 60.0)  # grows over a minute
    if scene == "fire" and t >= start_s:
        _plume(img, 300, 150, age, rng)
        _flames(img, 300, 200, min(1.0, 0.3 + age), rng)
    elif scene == "smoke" and t >= start_s:
        _plume(img, 300, 190, age, rng)
    elif scene == "fog":
        overlay = img.copy()
        x = int(-200 + 30 * t) % (W + 400) - 200
        cv2.ellipse(overlay, (x + 300, 200), (420, 160), 0, 0, 360, (235, 235, 235), -1)
        cv2.addWeighted(overlay, 0.75, img, 0.25, 0, dst=img)
    elif scene == "clouds":
        for k in range(3):
            cx = int((80 + 200 * k + 15 * t) % (W + 200)) - 100
            for j in range(5):
                cv2.circle(img, (cx + 25 * j, 70 + 12 * (j % 2) + 20 * k), 28, (250, 250, 250), -1)
    elif scene == "sunset":
        overlay = img.copy()
        for y in range(H // 2):
            overlay[y] = (40, 110 + y // 2, 255)
        cv2.circle(overlay, (480, 150), 30, (60, 160, 255), -1)
        cv2.addWeighted(overlay, 0.6, img, 0.4, 0, dst=img)
    elif scene == "red-vehicle":
        x = int((40 * t) % (W + 120)) - 60
        cv2.rectangle(img, (x, 285), (x + 70, 310), (30, 30, 200), -1)
        cv2.rectangle(img, (x + 12, 272), (x + 52, 288), (40, 40, 170), -1)
    elif scene == "headlights":
        for k in range(2):
            x = int((60 * t + 300 * k) % (W + 100)) - 50
            for dx in (0, 24):
                cv2.circle(img, (x + dx, 300), 7, (200, 245, 255), -1)
    elif scene in ("haze", "distant-smoke"):
        _haze(img, rng)
        if scene == "distant-smoke" and t >= start_s:
            _thin_plume(img, 455, 152, age, rng)
    elif scene == "ridge":
        ridge = np.array([[0, 200], [150, 120], [300, 170], [430, 110], [640, 190], [640, 260], [0, 260]])
        cv2.fillPoly(img, [ridge], (40, 95, 150))  # BGR: bare brown earth
        overlay = img.copy()
        cv2.fillPoly(overlay, [ridge], (60, 140, 235))  # lit orange by the low sun
        cv2.addWeighted(overlay, 0.35 + 0.1 * np.sin(t / 30), img, 0.65 - 0.1 * np.sin(t / 30), 0, dst=img)
    elif scene == "lights":
        for k in range(8):
            x = 40 + 75 * k
            cv2.line(img, (x, 300), (x, 250), (60, 60, 60), 2)
            cv2.circle(img, (x, 248), 6, (80, 170, 255), -1)  # sodium street lamps
        for k in range(12):
            x, y = 30 + 50 * k, 200 + 18 * (k % 3)
            cv2.rectangle(img, (x, y), (x + 10, y + 8), (90, 200, 250), -1)  # lit windows
    return img


def _haze(img: npt.NDArray[np.uint8], rng: np.random.Generator) -> None:
    """A brownish-white haze thickening towards the horizon, over the sky and the far hills."""
    ramp = np.linspace(0.25, 0.75, H // 2 + 40, dtype=np.float32)[:, None, None]
    tint = np.array([185, 200, 210], np.float32)  # BGR: warm grey
    top = img[: H // 2 + 40].astype(np.float32)
    img[: H // 2 + 40] = np.clip(top * (1 - ramp) + tint * ramp + rng.normal(0, 2, top.shape), 0, 255).astype(np.uint8)


def _thin_plume(img: npt.NDArray[np.uint8], x: int, y: int, age: float, rng: np.random.Generator) -> None:
    """A distant plume: a few small grey puffs leaning with the wind, a few per cent of the frame."""
    overlay = img.copy()
    for k in range(int(3 + 7 * min(age, 1.0))):
        r = int(4 + 10 * min(age, 1.0) * (k + 1) / 8)
        cv2.circle(overlay, (x + k * 5 + int(rng.normal(0, 2)), y - k * 7), r, (150, 155, 160), -1)
    cv2.addWeighted(overlay, 0.6, img, 0.4, 0, dst=img)


def _red_interior(rng: np.random.Generator, t: float) -> npt.NDArray[np.uint8]:
    """A room with red walls, a wooden floor and a warm lamp: red and orange, no fire."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:240] = (40, 40, 170)  # red wall
    img[240:] = (40, 90, 150)  # wooden floor
    cv2.rectangle(img, (80, 120), (240, 230), (30, 30, 120), -1)  # a darker red sofa
    cv2.circle(img, (480, 110), 24 + int(2 * np.sin(t)), (120, 210, 255), -1)  # the lamp's shade, lit
    cv2.circle(img, (480, 110), 60, (60, 120, 220), 3)
    return _noisy(img, rng, 5)


def thermal_frame(t: float, seed: int = 0, start_s: float = 5.0) -> npt.NDArray[np.float32]:
    """One thermal frame (°C) of the hillside with hot rocks, a walker and, from ``start_s``, a fire."""
    rng = np.random.default_rng([seed, round(t * 1000)])
    img = (15.0 + 10.0 * np.linspace(0, 1, 120)[:, None] + rng.normal(0, 0.4, (120, 160))).astype(np.float32)
    cv2.circle(img, (30, 90), 5, 58.0, -1)  # sun-heated rocks
    cv2.circle(img, (130, 100), 4, 45.0, -1)
    px = int((5 * t) % 160)
    cv2.ellipse(img, (px, 70), (2, 6), 0, 0, 360, 34.0, -1)  # a person walking
    if t >= start_s:
        r = int(2 + 10 * min(1.0, (t - start_s) / 60.0))
        cv2.circle(img, (85, 60), r, float(300 + rng.normal(0, 20)), -1)
    return img


def synthetic(
    scene: str, fps: float, frames: int, seed: int = 0, start_s: float = 5.0
) -> Iterator[tuple[float, bytes]]:
    """(seconds from the start, payload) of a synthetic feed: JPEG, or .npy °C for ``thermal-fire``."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; scenes: {', '.join(SCENES)}")
    for k in range(frames):
        t = k / fps
        if scene == "thermal-fire":
            buf = io.BytesIO()
            np.save(buf, thermal_frame(t, seed, start_s))
            yield t, buf.getvalue()
        else:
            yield (
                t,
                cv2.imencode(".jpg", visible_frame(scene, t, seed, start_s), [cv2.IMWRITE_JPEG_QUALITY, 85])[
                    1
                ].tobytes(),
            )


def write_folder(feed: Iterator[tuple[float, bytes]], folder: Path, start_ts: float, thermal: bool = False) -> int:
    """Writes a feed as ``<folder>/<epoch_ms>.jpg`` (or ``.npy``); returns the number of frames."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for t, payload in feed:
        (folder / f"{round((start_ts + t) * 1000)}.{'npy' if thermal else 'jpg'}").write_bytes(payload)
        n += 1
    return n
