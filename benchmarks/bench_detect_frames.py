"""Frames per second per core for each camera detector at 640x360, JPEG decode included.

Every detector sees the same JPEG frames (a held-out sample photo, scaled to 640x360, 60 frames with
different noise), decoded per frame as the engine does, in batches of 8, on one core (onnxruntime
intra-op threads 1, OpenCV threads 1), the model with its motion gate off; one more row feeds it one
unchanging frame with the gate on (a static camera). Baseline in the same run: JPEG decode alone.
Thermal: a 320x256 16-bit frame (FLAME-T's largest camera) through TIFF decode and ``thermal_hotspot``.

Prints a table, writes benchmarks/results/detect_frames.json and detect_frames.png.
Run: .venv/bin/python benchmarks/bench_detect_frames.py [--quick]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
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

from benchmarks.output import results_dir  # noqa: E402
from detectors.thermal.thermal_hotspot import ThermalHotspot, ThermalHotspotConfig  # noqa: E402
from detectors.vision.base import Frame, FrameBatch  # noqa: E402
from detectors.vision.flame_color_motion import FlameColorMotion, FlameColorMotionConfig  # noqa: E402
from detectors.vision.smoke_fire_onnx import SmokeFireOnnx, SmokeFireOnnxConfig  # noqa: E402
from engine.ingest.frames import decode  # noqa: E402

RESULTS = results_dir()  # outside the checkout for --quick: only full runs write results files
console = Console()


def jpeg_frames(n: int) -> list[bytes]:
    base = cv2.resize(cv2.imread(str(ROOT / "tests" / "data" / "frames" / "fire.jpg")), (640, 360))
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        noisy = np.clip(base.astype(np.int16) + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
        out.append(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    return out


def measure(payloads: list[bytes], det: Any | None, thermal: bool = False, seconds: float = 5.0) -> dict[str, float]:
    state = det.new_state() if det is not None else None
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(0, len(payloads), 8):
            frames = [
                Frame("B", "cam", float(done + j), decode(p, thermal=thermal))
                for j, p in enumerate(payloads[i : i + 8])
            ]
            if det is not None:
                det.process(FrameBatch(frames), state)
            done += len(frames)
    elapsed = time.perf_counter() - t0
    return {"frames": done, "seconds": round(elapsed, 2), "fps": round(done / elapsed, 1)}


def main() -> None:
    quick = "--quick" in sys.argv
    seconds = 2.0 if quick else 6.0
    cv2.setNumThreads(1)
    jpegs = jpeg_frames(60)
    tif = cv2.imencode(".tiff", (np.random.default_rng(2).normal(3000, 40, (256, 320))).astype(np.uint16))[1].tobytes()
    runs: list[dict[str, Any]] = []
    plan: list[tuple[str, Any, list[bytes], bool]] = [
        ("JPEG decode only (baseline)", None, jpegs, False),
        ("flame_color_motion", FlameColorMotion(FlameColorMotionConfig()), jpegs, False),
        (
            "smoke_fire_onnx (CPU, 1 thread)",
            SmokeFireOnnx(SmokeFireOnnxConfig(threads=1, batch_size=8, motion_gate=0)),
            jpegs,
            False,
        ),
        (
            "smoke_fire_onnx, static scene (motion gate)",
            SmokeFireOnnx(SmokeFireOnnxConfig(threads=1, batch_size=8)),
            [jpegs[0]] * 16,
            False,
        ),
        (
            "thermal_hotspot (320x256 TIFF)",
            ThermalHotspot(ThermalHotspotConfig(units="counts", alarm=40, pre_alarm=24, clear=36)),
            [tif] * 16,
            True,
        ),
    ]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        gpu = SmokeFireOnnx(SmokeFireOnnxConfig(providers=["CUDAExecutionProvider"], batch_size=8))
        plan.append(("smoke_fire_onnx (CUDA)", gpu, jpegs, False))
    for name, det, payloads, thermal in plan:
        r = measure(payloads, det, thermal, seconds)
        runs.append({"name": name, **r})
    base = runs[0]["fps"]
    for r in runs:
        r["share_of_decode_rate"] = round(r["fps"] / base, 3)
    result = {
        "benchmark": "detect_frames",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "onnxruntime": ort.__version__,
            "opencv": cv2.__version__,
            "providers": ort.get_available_providers(),
        },
        "frame": "640x360 JPEG (visible), 320x256 16-bit TIFF (thermal)",
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "detect_frames.json").write_text(json.dumps(result, indent=2))
    table = Table(title="detect_frames: frames/s on one core, decode included")
    for col in ("detector", "frames/s", "× decode only"):
        table.add_column(col, justify="left" if col == "detector" else "right")
    for r in runs:
        table.add_row(r["name"], f"{r['fps']:,.1f}", f"{r['share_of_decode_rate']:.3f}")
    console.print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh([r["name"] for r in runs], [r["fps"] for r in runs], color="tab:orange")
    ax.set_xscale("log")
    ax.set_xlabel("frames per second on one core (log scale)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(RESULTS / "detect_frames.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
