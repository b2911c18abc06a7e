"""Tower-camera streams made of real outdoor backgrounds with a plume composited in, replayed through the engine.

No openly licensed tower-camera smoke can be reached from here (``../shared/data/README.md``), so this checks
the camera stage's mechanism on real scenes: real outdoor surveillance frames with haze, glare and overlays
(``dfire-tower-sample``, CC0, none with fire or smoke), each made into a stream of one frame a minute, 40
minutes before and 40 after an ignition, with the light drifting slowly and sensor noise, saved as JPEG. From
ignition a plume rises from a point on the ground (a column of soft puffs, leaning with the wind, light grey,
35-60 % opaque) and grows from a few pixels to 6-15 % of the frame's height at +40 min. The same stream
without the plume is the control: any incident on it is a false alarm.

Each stream goes through ``replay_cameras`` with the shipped config (``config/gridwatch.yaml``) at its native
size (768x432 to 1281x720: seen whole) and scaled to a 3072x2048 tower frame (seen in tiles), and, for the
comparison, at 3072x2048 with ``tile_px: 0`` (the whole frame as one input, the behaviour before tiles).
Reported per stream: minutes from ignition to the first incident, incidents before ignition, whether the
first finding's region touches the plume, and incidents on the control.

Run: ``.venv/bin/python models/plume_streams.py [N [SIZE]]`` (N backgrounds, default 6; SIZE: only that row,
e.g. "3072x2048 tiles", written to plume_streams_quick.json); writes ``models/plume_streams.json``. The
plumes are drawn, not real: this measures timing, memory and regions on real backgrounds, not detection of
real smoke.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.vision.base import Box, iou  # noqa: E402
from engine.config.loader import load_config  # noqa: E402
from engine.ingest.camera_recording import FrameTimes, recorded_frames  # noqa: E402
from engine.runners.camera_replay import replay_cameras  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "dfire-tower-sample"
IGNITION_MIN, SPAN_MIN, T0 = 40, 80, 1_700_000_000.0


def backgrounds(n: int) -> list[Path]:
    """``n`` of the sample's frames with no fire and no smoke, spread over the sample."""
    empty = [p for p in sorted((DATA / "images").glob("*.jpg"))
             if not (DATA / "labels" / f"{p.stem}.txt").exists()
             or not (DATA / "labels" / f"{p.stem}.txt").read_text().strip()]  # fmt: skip
    step = max(1, len(empty) // n)
    return empty[::step][:n]


def plume_alpha(shape: tuple[int, int], minutes: float, rng_seed: int) -> tuple[np.ndarray, Box | None]:
    """The plume's opacity over a frame of ``shape`` at ``minutes`` after ignition, and its box (fractions)."""
    h, w = shape
    rng = np.random.default_rng(rng_seed)
    bx, by = rng.uniform(0.15, 0.85) * w, rng.uniform(0.45, 0.75) * h
    top, lean, opacity = rng.uniform(0.06, 0.15) * h, rng.uniform(-0.6, 0.6), rng.uniform(0.35, 0.6)
    alpha = np.zeros((h, w), np.float32)
    if minutes <= 0:
        return alpha, None
    height = max(2.0, top * (minutes / 40.0) ** 0.75)
    for z in np.linspace(0.0, height, 24):
        r = 1.0 + 0.08 * height + 0.3 * z
        cx = bx + lean * z + 0.05 * height * np.sin(z / max(height, 1.0) * 6.0)
        cv2.circle(alpha, (round(cx), round(by - z)), max(1, round(r)), 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.8, 0.06 * height)) * opacity
    ys, xs = np.nonzero(alpha > 0.05)
    if not len(xs):
        return alpha, None
    return alpha, (xs.min() / w, ys.min() / h, (xs.max() - xs.min() + 1) / w, (ys.max() - ys.min() + 1) / h)


def write_stream(bg: np.ndarray, folder: Path, seed: int, plume: bool) -> dict[int, Box | None]:
    """The stream's frames as ``<epoch_ms>.jpg``; the plume's box per minute from ignition."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi)
    grey = rng.uniform(195, 230)
    boxes: dict[int, Box | None] = {}
    for k in range(SPAN_MIN + 1):
        light = 1.0 + 0.03 * np.sin(2 * np.pi * k / SPAN_MIN + phase)
        img = bg.astype(np.float32) * light + rng.normal(0, 2.0, bg.shape).astype(np.float32)
        if plume:
            alpha, box = plume_alpha(bg.shape[:2], k - IGNITION_MIN, seed)
            boxes[k - IGNITION_MIN] = box
            img = img * (1 - alpha[..., None]) + np.float32(grey) * alpha[..., None]
        out = np.clip(img, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{round((T0 + 60 * k) * 1000)}.jpg"), out, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return boxes


def run_stream(cfg: Any, bg: np.ndarray, seed: int, plume: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        boxes = write_stream(bg, Path(tmp) / "T1" / "tower", seed, plume)
        t = time.perf_counter()
        result = replay_cameras(cfg, recorded_frames(Path(tmp), "T1", "tower", FrameTimes("epoch_ms")))
        seconds = time.perf_counter() - t
    ignition = T0 + 60 * IGNITION_MIN
    firing = [e for e in result.events if e.get("state") == "firing"]
    before = len({e["incident_id"] for e in firing if e["opened_at"] < ignition})
    first = min((e["opened_at"] for e in firing if e["opened_at"] >= ignition), default=None)
    out: dict[str, Any] = {"incidents_before_ignition": before, "s_per_frame": round(seconds / (SPAN_MIN + 1), 3)}
    if not plume:
        out["incidents"] = len({e["incident_id"] for e in firing})
        return out
    out["minutes_from_ignition"] = None if first is None else round((first - ignition) / 60, 1)
    after = [f for f in result.findings if f.ts >= ignition]
    if after:
        f = after[0]
        box = boxes.get(round((f.ts - ignition) / 60))
        region = f.evidence.get("region")
        out["first_region_on_plume"] = bool(box and region and iou((*region,), box) > 0)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    only = sys.argv[2] if len(sys.argv) > 2 else ""  # a size's name: run only it (a quick check)
    cfg = load_config(ROOT / "config" / "gridwatch.yaml")
    former = [d.model_copy(update={"tile_px": 0}) if d.type == "smoke_fire_onnx" else d for d in cfg.cameras.detectors]
    whole_cfg = cfg.model_copy(update={"cameras": cfg.cameras.model_copy(update={"detectors": former})})
    rows: list[dict[str, Any]] = []
    for seed, path in enumerate(backgrounds(n), start=1):
        native = np.asarray(cv2.imread(str(path)), np.uint8)
        tower = cv2.resize(native, (3072, 2048), interpolation=cv2.INTER_CUBIC)
        for size, bg, c in (("native", native, cfg), ("3072x2048 tiles", tower, cfg),
                            ("3072x2048 whole (former)", tower, whole_cfg)):  # fmt: skip
            if only and size != only:
                continue
            row = {"background": path.name, "size": size, "frame": f"{bg.shape[1]}x{bg.shape[0]}",
                   "plume": run_stream(c, bg, seed, True), "control": run_stream(c, bg, seed, False)}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    summary: dict[str, Any] = {}
    for size in sorted({r["size"] for r in rows}):
        mine = [r for r in rows if r["size"] == size]
        found = [r["plume"]["minutes_from_ignition"] for r in mine if r["plume"]["minutes_from_ignition"] is not None]
        summary[size] = {
            "streams": len(mine),
            "plumes_found_within_10_min": sum(1 for m in found if m <= 10),
            "plumes_found": len(found),
            "median_minutes_to_first_incident": float(np.median(found)) if found else None,
            "streams_with_incidents_before_ignition": sum(1 for r in mine if r["plume"]["incidents_before_ignition"]),
            "first_region_on_plume": sum(1 for r in mine if r["plume"].get("first_region_on_plume")),
            "controls_with_incidents": sum(1 for r in mine if r["control"]["incidents"]),
        }
    out = {"date": time.strftime("%Y-%m-%d"), "ignition_minute": IGNITION_MIN, "minutes": SPAN_MIN,
           "summary": summary, "streams": rows}  # fmt: skip
    name = "plume_streams.json" if not only else "plume_streams_quick.json"
    (ROOT / "models" / name).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
