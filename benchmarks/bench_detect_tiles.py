"""Seconds per frame on one core for the smoke-and-fire model in tiles, JPEG decode included (issue 29).

Targets: a 3072x2048 tower frame, tiles and all, in at most 0.5 s on one core (a core then serves 120
cameras at a frame a minute); a 640x360 CCTV frame at 40 frames/s or more per core. The frames are a real
outdoor surveillance picture (``../shared/data/dfire-tower-sample``, CC0; a simulator hillside where it is
not there) scaled to each size, 8 JPEGs of each with different noise, decoded per frame as the engine does.
The process is pinned to one core, onnxruntime and OpenCV use one thread. Rows per size:

- ``every tile``: the motion gate off, every tile scored on every frame (the worst case);
- ``static scene``: one unchanging frame with the gate on (a still tower: tiles reuse their scores until
  ``motion_max_age_s``);
- ``whole frame (former)``: baseline in the same run, the frame squashed into one model input
  (``tile_px: 0``, the behaviour before tiles);
- ``plume_change``: the change detector that runs beside the model on frames at least 1280 wide (a young
  plume against the scene's own past), and its per-camera state in bytes; the tower target is judged on
  the model's every-tile time plus this (the camera stage's whole cost per frame).

Prints a table, writes benchmarks/results/detect_tiles.json.
Run: .venv/bin/python benchmarks/bench_detect_tiles.py [--quick]
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.output import write_results  # noqa: E402
from detectors.vision.base import CameraDetector, Frame, FrameBatch  # noqa: E402
from detectors.vision.plume_change import PlumeChange, PlumeChangeConfig  # noqa: E402
from detectors.vision.smoke_fire_onnx import SmokeFireOnnx, SmokeFireOnnxConfig  # noqa: E402
from engine.ingest.frames import decode  # noqa: E402
from simulators.camera import visible_frame  # noqa: E402

BACKGROUND = ROOT.parent / "shared" / "data" / "dfire-tower-sample" / "images" / "AoF00010.jpg"
SIZES = {"tower 3072x2048": (3072, 2048), "1920x1080": (1920, 1080), "CCTV 640x360": (640, 360)}
TARGETS = {"tower 3072x2048": ("s_per_frame", 0.5), "CCTV 640x360": ("fps", 40.0)}
console = Console()


def jpegs(size: tuple[int, int], n: int = 8) -> list[bytes]:
    base = cv2.imread(str(BACKGROUND)) if BACKGROUND.exists() else None
    if base is None:
        base = visible_frame("haze", 0.0)
    base = cv2.resize(base, size, interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        noisy = np.clip(base.astype(np.int16) + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
        out.append(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def measure(det: CameraDetector[Any], payloads: list[bytes], seconds: float) -> dict[str, Any]:
    state = det.new_state()
    det.observe(FrameBatch([Frame("B", "cam", 0.0, decode(payloads[0]))]), state)  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or done < 3:
        frame = Frame("B", "cam", 1.0 + done, decode(payloads[done % len(payloads)]))
        det.observe(FrameBatch([frame]), state)
        done += 1
    elapsed = time.perf_counter() - t0
    out = {"frames": done, "s_per_frame": round(elapsed / done, 4), "fps": round(done / elapsed, 1), "tiles": 0}
    if isinstance(det, SmokeFireOnnx):
        lay = det.layout(frame.image.shape, frame.key)
        out.update(tiles=len(lay.origins), grid=[lay.gh, lay.gw])
    else:  # the camera's state as a checkpoint would hold it
        out["state_bytes"] = len(pickle.dumps(state.snapshot()))
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    seconds = 2.0 if quick else 8.0
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core
    cv2.setNumThreads(1)
    tiled = SmokeFireOnnx(SmokeFireOnnxConfig(threads=1, motion_gate=0))
    gated = SmokeFireOnnx(SmokeFireOnnxConfig(threads=1))
    whole = SmokeFireOnnx(SmokeFireOnnxConfig(threads=1, motion_gate=0, tile_px=0))
    change = PlumeChange(PlumeChangeConfig())
    runs: list[dict[str, Any]] = []
    for name, size in SIZES.items():
        payloads = jpegs(size)
        for how, det, frames in (
            ("every tile", tiled, payloads),
            ("static scene (motion gate)", gated, payloads[:1]),
            ("whole frame (former)", whole, payloads),
            ("plume_change", change, payloads),
        ):
            if how == "plume_change" and size[0] < change.config.min_width:
                continue  # not looked at: a close view is left to the model
            r = measure(det, frames, seconds)
            runs.append({"size": name, "run": how, **r})
            what = f"{r['tiles']} tile(s)" if r["tiles"] else f"{r['state_bytes'] / 1e6:.1f} MB of state per camera"
            console.print(f"{name}, {how}: {r['s_per_frame']:.3f} s/frame, {r['fps']:.1f} frames/s, {what}")
    verdicts = {}
    for name, (key, target) in TARGETS.items():
        worst = next(r for r in runs if r["size"] == name and r["run"] == "every tile")
        extra = next((r for r in runs if r["size"] == name and r["run"] == "plume_change"), None)
        measured = worst[key]
        if extra is not None and key == "s_per_frame":
            measured = round(worst[key] + extra[key], 4)
        ok = measured <= target if key == "s_per_frame" else measured >= target
        verdicts[name] = {"figure": key, "target": target, "measured": measured, "met": ok,
                          "with": "every tile + plume_change" if extra is not None else "every tile"}  # fmt: skip
    cfg = SmokeFireOnnxConfig()
    write_results(
        "detect_tiles",
        {"config": {"tile_px": cfg.tile_px, "tile_overlap": cfg.tile_overlap, "band": list(cfg.band),
                    "batch_size": cfg.batch_size, "threads": 1},
         "load_average_1min": round(os.getloadavg()[0], 2), "runs": runs, "targets": verdicts},
        quick=quick, onnxruntime=ort.__version__, opencv=cv2.__version__,
    )  # fmt: skip
    table = Table(title="detect_tiles: smoke_fire_onnx on one core, JPEG decode included")
    for col in ("frame", "run", "tiles", "s/frame", "frames/s"):
        table.add_column(col, justify="left" if col in ("frame", "run") else "right")
    for r in runs:
        table.add_row(r["size"], r["run"], str(r["tiles"] or "-"), f"{r['s_per_frame']:.3f}", f"{r['fps']:.1f}")
    console.print(table)
    for name, v in verdicts.items():
        console.print(f"{name} ({v['with']}): {v['figure']} {v['measured']} (target {v['target']}): "
                      f"{'met' if v['met'] else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
