"""Bytes the camera stage leaves on disk after N alarm frames, without a bound and within one.

Alarms one after another on ``--cameras`` cameras (a sample smoke photo scaled to 1920x1080 with a little
sensor noise per frame, so that each JPEG is a camera's size), ``--frames`` frames in all, one every
``--every`` seconds of capture time, through the real ``CameraStage`` (``smoke_fire_onnx``, learning on: a
snapshot per frame and the frame as it came every 30 s) and an ``IncidentTracker``; each camera's alarm
lasts ``--frames / --cameras`` frames, then it is quiet while the next one alarms. Run once with the
retention out of reach (what the engine did before ``cameras.snapshot_quota_mb``) and once within
``--quota-mb`` and ``--retention-h``, pruning after every take as the local runner does, sparing what the
open incidents show. Not a ``bench_*`` (no results file): a check of the bound, figures printed.

Run: .venv/bin/python benchmarks/snapshot_disk.py [--frames 400] [--quota-mb 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.vision.base import Frame  # noqa: E402
from engine.config.models import EngineConfig  # noqa: E402
from engine.flow.cameras import CameraStage  # noqa: E402
from engine.flow.snapshot_retention import held_snapshots  # noqa: E402
from engine.incidents.tracker import IncidentPolicy, IncidentTracker  # noqa: E402


def run(args: argparse.Namespace, bounded: bool) -> dict[str, float]:
    quota_mb, days = (args.quota_mb, args.retention_h / 24) if bounded else (1e9, 1e6)
    spec = {"type": "smoke_fire_onnx", "confirm_k": 1, "confirm_n": 1, "scene_memory": False}
    cfg = EngineConfig.model_validate(
        {"cameras": {"detectors": [spec], "snapshot_quota_mb": quota_mb, "snapshot_retention_days": days}}
    )
    base = cv2.resize(cv2.imread(str(ROOT / "tests" / "data" / "frames" / "smoke.jpg")), (1920, 1080))
    rng = np.random.default_rng(1)
    per_camera = max(1, args.frames // args.cameras)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stage = CameraStage(cfg, root, None)
        tracker = IncidentTracker(IncidentPolicy(resolve_after_s=300.0))
        prune_s, pruned, peak = 0.0, 0, 0
        for i in range(args.frames):
            ts = 1_000_000.0 + i * args.every
            noise = rng.normal(0.0, 4.0, base.shape)
            image = np.clip(base + noise, 0, 255).astype(np.uint8)
            found = stage.step([Frame("S1", f"cam-{i // per_camera % args.cameras}", ts, image)])
            tracker.apply(found, watermark=ts)
            t0 = time.perf_counter()
            pruned += len(stage.prune(ts, held_snapshots(tracker.open.values())))
            prune_s += time.perf_counter() - t0
            peak = max(peak, stage.retention.bytes if stage.retention else 0)
        files = [p for p in root.rglob("*.jpg")]
        on_disk = sum(p.stat().st_size for p in files)
        assert stage.retention is not None and stage.retention.bytes == on_disk
        return {"bytes": on_disk, "files": len(files), "pruned": pruned, "peak": peak,
                "prune_ms_per_take": 1000 * prune_s / args.frames}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--every", type=float, default=2.0, help="seconds of capture time between frames")
    p.add_argument("--quota-mb", type=float, default=20.0)
    p.add_argument("--retention-h", type=float, default=24.0)
    args = p.parse_args()
    print(f"{args.frames} alarm frames (1920x1080), {args.cameras} cameras, one every {args.every} s")
    for bounded in (False, True):
        t0 = time.perf_counter()
        r = run(args, bounded)
        label = f"quota {args.quota_mb} MB, {args.retention_h} h" if bounded else "no bound (before)"
        print(f"{label:>28}: {r['bytes'] / 1e6:8.2f} MB in {r['files']} files on disk (peak {r['peak'] / 1e6:.2f} "
              f"MB), {r['pruned']} pruned, prune {r['prune_ms_per_take']:.3f} ms per take; "
              f"{time.perf_counter() - t0:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
