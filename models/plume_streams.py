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

Single frames: each of the sample's no-fire frames scaled to 3072x2048 is scored once in tiles by a fresh
detector (no memory, no confirmation), and the share of frames, and of model inputs (48 tiles and the whole),
with a cell at a class's threshold is reported: what a tile's evidence is worth before time.

Run: ``.venv/bin/python models/plume_streams.py [N [SIZE]] [--model NAME=CARD ...] [--without ID ...]
[--nuisances] [--no-single] [--out FILE]`` (N backgrounds, default 6; SIZE: only that row, e.g. "3072x2048
tiles"; each ``--model`` runs every row and the single frames with that model card instead of the shipped one,
and each ``--without`` the shipped config without that camera detector, so they compare in one run;
``--nuisances`` adds the second plume drawing and the nuisance controls to every row); writes
``models/plume_streams.json`` (``plume_streams_quick.json`` with SIZE). The plumes are drawn, not real: this
measures timing, memory and regions on real backgrounds, not detection of real smoke.
"""

from __future__ import annotations

import argparse
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

from detectors.vision.base import Box, CameraState, Frame, FrameBatch, iou  # noqa: E402
from detectors.vision.smoke_fire_onnx import SmokeFireOnnx, SmokeFireOnnxConfig  # noqa: E402
from engine.config.loader import load_config  # noqa: E402
from engine.ingest.camera_recording import FrameTimes, recorded_frames  # noqa: E402
from engine.runners.camera_replay import replay_cameras  # noqa: E402
from simulators.plumes import plume as drawn_plume  # noqa: E402
from simulators.plumes import plume_colour  # noqa: E402

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


NUISANCES = ("cloud", "shadow", "sway", "exposure")  # controls with something that changes and is not smoke


def nuisance(img: np.ndarray, kind: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """Frame ``k`` of a control with a nuisance: a bright cloud drifting across the ridge, a cloud's shadow
    sweeping the slope (both 1.75 % of the width a minute), the mast swaying (3 pixels at 1536 across, one
    sigma), or the exposure stepping by -10/+8 % every 7 minutes."""
    h, w = img.shape[:2]
    if kind in ("cloud", "shadow"):
        cx, cy = (k / SPAN_MIN) * 1.4 * w - 0.2 * w, (0.2 if kind == "cloud" else 0.6) * h
        a = np.zeros((h, w), np.float32)
        axes = (int(0.08 * w), int(0.04 * h)) if kind == "cloud" else (int(0.12 * w), int(0.06 * h))
        cv2.ellipse(a, (int(cx), int(cy)), axes, 0, 0, 360, 1.0, -1)
        a = cv2.GaussianBlur(a, (0, 0), (0.02 if kind == "cloud" else 0.03) * w)
        if kind == "cloud":
            return img * (1 - 0.5 * a[..., None]) + 235.0 * 0.5 * a[..., None]
        return img * (1 - 0.35 * a[..., None])
    if kind == "sway":
        dx, dy = rng.normal(0, 3.0 * w / 1536, 2)
        shift = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        return np.asarray(cv2.warpAffine(img, shift, (w, h), borderMode=cv2.BORDER_REFLECT), np.float32)
    if kind == "exposure":
        return img * (0.9 if (k // 7) % 2 else 1.08)
    raise ValueError(kind)


def write_stream(bg: np.ndarray, folder: Path, seed: int, kind: str) -> dict[int, Box | None]:
    """The stream's frames as ``<epoch_ms>.jpg``; the plume's box per minute from ignition. ``kind``: "plume"
    (this script's drawing), "plume2" (the tile training's drawing, ``simulators.plumes``: another shape,
    colour and texture), "control" (neither), or one of ``NUISANCES``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi)
    grey = rng.uniform(195, 230)
    second = np.random.default_rng([seed, 2])
    colour, final = plume_colour(False, second), second.uniform(0.06, 0.15) * bg.shape[0]
    boxes: dict[int, Box | None] = {}
    for k in range(SPAN_MIN + 1):
        light = 1.0 + 0.03 * np.sin(2 * np.pi * k / SPAN_MIN + phase)
        img = bg.astype(np.float32) * light + rng.normal(0, 2.0, bg.shape).astype(np.float32)
        minutes = k - IGNITION_MIN
        if kind == "plume":
            alpha, box = plume_alpha(bg.shape[:2], minutes, seed)
            boxes[minutes] = box
            img = img * (1 - alpha[..., None]) + np.float32(grey) * alpha[..., None]
        elif kind == "plume2":
            boxes[minutes] = None
            if minutes > 0:  # the same plume every minute (one seed), grown: 2 pixels high at first
                alpha = drawn_plume(bg.shape[:2], max(2.0, final * (minutes / 40.0) ** 0.75),
                                    np.random.default_rng([seed, 3]))  # fmt: skip
                ys, xs = np.nonzero(alpha > 0.05)
                if len(xs):
                    h, w = bg.shape[:2]
                    boxes[minutes] = (xs.min() / w, ys.min() / h, (np.ptp(xs) + 1) / w, (np.ptp(ys) + 1) / h)
                img = img * (1 - alpha[..., None]) + colour * alpha[..., None]
        elif kind in NUISANCES:
            img = nuisance(img, kind, k, rng)
        out = np.clip(img, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{round((T0 + 60 * k) * 1000)}.jpg"), out, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return boxes


def run_stream(cfg: Any, bg: np.ndarray, seed: int, kind: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        boxes = write_stream(bg, Path(tmp) / "T1" / "tower", seed, kind)
        t = time.perf_counter()
        result = replay_cameras(cfg, recorded_frames(Path(tmp), "T1", "tower", FrameTimes("epoch_ms")))
        seconds = time.perf_counter() - t
    ignition = T0 + 60 * IGNITION_MIN
    firing = [e for e in result.events if e.get("state") == "firing"]
    before = len({e["incident_id"] for e in firing if e["opened_at"] < ignition})
    first = min((e["opened_at"] for e in firing if e["opened_at"] >= ignition), default=None)
    out: dict[str, Any] = {"incidents_before_ignition": before, "s_per_frame": round(seconds / (SPAN_MIN + 1), 3)}
    out["detectors"] = sorted({f.detector for f in result.findings})
    if not kind.startswith("plume"):
        out["incidents"] = len({e["incident_id"] for e in firing})
        return out
    out["minutes_from_ignition"] = None if first is None else round((first - ignition) / 60, 1)
    after = [f for f in result.findings if f.ts >= ignition]
    out["first_finding_by"] = after[0].detector if after else None
    if after:
        f = after[0]
        box = boxes.get(round((f.ts - ignition) / 60))
        region = f.evidence.get("region")
        out["first_region_on_plume"] = bool(box and region and iou((*region,), box) > 0)
    return out


def with_model(cfg: Any, card: str | None) -> Any:
    """``cfg`` with the smoke-and-fire detector reading the model card ``card`` (None: as shipped)."""
    if card is None:
        return cfg
    dets = [d.model_copy(update={"model": card}) if d.type == "smoke_fire_onnx" else d for d in cfg.cameras.detectors]
    return cfg.model_copy(update={"cameras": cfg.cameras.model_copy(update={"detectors": dets})})


def without(cfg: Any, detector: str) -> Any:
    """``cfg`` without the camera detector ``detector`` (its id or type): the baseline it is measured against."""
    dets = [d for d in cfg.cameras.detectors if detector not in (d.id, d.type)]
    if len(dets) == len(cfg.cameras.detectors):
        raise SystemExit(f"--without {detector}: no such camera detector in the shipped config")
    return cfg.model_copy(update={"cameras": cfg.cameras.model_copy(update={"detectors": dets})})


def single_frames(cfg: Any, paths: list[Path]) -> dict[str, Any]:
    """Each no-fire frame at 3072x2048, scored once in tiles by a fresh detector: the share of frames and of
    model inputs (tiles and the whole) with a cell at a class's threshold, per class and for either."""
    spec = next(d for d in cfg.cameras.detectors if d.type == "smoke_fire_onnx")
    det = SmokeFireOnnx(SmokeFireOnnxConfig.model_validate({**spec.model_dump(), "motion_gate": 0}))
    frames: dict[str, list[bool]] = {"fire": [], "smoke": [], "either": []}
    inputs: dict[str, list[float]] = {"fire": [], "smoke": [], "either": []}
    for path in paths:
        img = cv2.resize(np.asarray(cv2.imread(str(path)), np.uint8), (3072, 2048), interpolation=cv2.INTER_CUBIC)
        state = CameraState()
        det.observe(FrameBatch([Frame("T1", "tower", T0, img)]), state)
        cells = state.track("T1/tower").model["tiles"]["cells"]  # (inputs, classes, G, G)
        top = cells.reshape(len(cells), len(det.labels), -1).max(axis=2)
        hit = {k: top[:, i] >= det.thresholds[k] for i, k in enumerate(det.labels)}
        hit["either"] = hit["fire"] | hit["smoke"]
        for k, h in hit.items():
            frames[k].append(bool(h.any()))
            inputs[k].append(float(h.mean()))
    return {"frames": len(paths), "inputs_per_frame": len(cells), "thresholds": det.thresholds,
            "frames_alarming": {k: round(float(np.mean(v)), 3) for k, v in frames.items()},
            "inputs_alarming": {k: round(float(np.mean(v)), 3) for k, v in inputs.items()}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=6, help="Backgrounds (streams).")
    ap.add_argument("only", nargs="?", default="", help="Run only this size's row (a quick check).")
    ap.add_argument("--model", action="append", default=[], help="NAME=CARD: also run with this model card.")
    ap.add_argument("--out", type=Path, help="Where to write the results (default models/plume_streams.json).")
    ap.add_argument("--no-single", action="store_true", help="Skip the single-frame alarm shares.")
    ap.add_argument(
        "--without",
        action="append",
        default=[],
        help="DETECTOR_ID: also run the shipped config without this camera detector (a baseline).",
    )
    ap.add_argument(
        "--nuisances",
        action="store_true",
        help=f"Also the second plume drawing and the controls with {', '.join(NUISANCES)}.",
    )
    args = ap.parse_args()
    n, only = args.n, args.only
    shipped = load_config(ROOT / "config" / "gridwatch.yaml")
    models: list[tuple[str, str | None]] = [("shipped", None)]
    models += [(m.split("=", 1)[0], m.split("=", 1)[1]) for m in args.model]
    models += [(f"without {d}", f"-{d}") for d in args.without]
    rows: list[dict[str, Any]] = []
    single: dict[str, Any] = {}
    for model, card in models:
        cfg = with_model(shipped, card) if not (card or "").startswith("-") else without(shipped, (card or "")[1:])
        former = [d.model_copy(update={"tile_px": 0}) if d.type == "smoke_fire_onnx" else d
                  for d in cfg.cameras.detectors]  # fmt: skip
        whole_cfg = cfg.model_copy(update={"cameras": cfg.cameras.model_copy(update={"detectors": former})})
        if not args.no_single and not (card or "").startswith("-"):
            single[model] = single_frames(cfg, backgrounds(10_000))
            print(json.dumps({"model": model, "single_frames": single[model]}), flush=True)
        for seed, path in enumerate(backgrounds(n), start=1):
            native = np.asarray(cv2.imread(str(path)), np.uint8)
            tower = cv2.resize(native, (3072, 2048), interpolation=cv2.INTER_CUBIC)
            for size, bg, c in (("native", native, cfg), ("3072x2048 tiles", tower, cfg),
                                ("3072x2048 whole (former)", tower, whole_cfg)):  # fmt: skip
                if only and size != only:
                    continue
                row = {"model": model, "background": path.name, "size": size, "frame": f"{bg.shape[1]}x{bg.shape[0]}",
                       "plume": run_stream(c, bg, seed, "plume"),
                       "control": run_stream(c, bg, seed, "control")}  # fmt: skip
                if args.nuisances:
                    row["plume2"] = run_stream(c, bg, seed, "plume2")
                    row["nuisances"] = {k: run_stream(c, bg, seed, k) for k in NUISANCES}
                print(json.dumps(row), flush=True)
                rows.append(row)
    summary: dict[str, Any] = {}
    for key in sorted({(r["model"], r["size"]) for r in rows}):
        mine = [r for r in rows if (r["model"], r["size"]) == key]
        found = [r["plume"]["minutes_from_ignition"] for r in mine if r["plume"]["minutes_from_ignition"] is not None]
        # A first incident whose region misses the plume is no finding of it (the control's false alarm).
        on_plume = [r["plume"]["minutes_from_ignition"] for r in mine if r["plume"]["minutes_from_ignition"] is not None
                    and r["plume"].get("first_region_on_plume")]  # fmt: skip
        summary[f"{key[0]}: {key[1]}"] = {
            "streams": len(mine),
            "plumes_found_within_10_min": sum(1 for m in on_plume if m <= 10),
            "plumes_found": len(on_plume),
            "minutes_to_first_incident_on_plume": sorted(on_plume),
            "first_incidents_after_ignition": len(found),
            "streams_with_incidents_before_ignition": sum(1 for r in mine if r["plume"]["incidents_before_ignition"]),
            "first_region_on_plume": sum(1 for r in mine if r["plume"].get("first_region_on_plume")),
            "controls_with_incidents": sum(1 for r in mine if r["control"]["incidents"]),
        }
        if any("plume2" in r for r in mine):
            second = [r["plume2"] for r in mine if "plume2" in r]
            minutes = [p["minutes_from_ignition"] for p in second
                       if p["minutes_from_ignition"] is not None and p.get("first_region_on_plume")]  # fmt: skip
            summary[f"{key[0]}: {key[1]}"]["second_drawing"] = {
                "plumes_found": len(minutes), "plumes_found_within_10_min": sum(1 for m in minutes if m <= 10),
                "minutes_to_first_incident_on_plume": sorted(minutes),
                "streams_with_incidents_before_ignition": sum(1 for p in second if p["incidents_before_ignition"]),
            }  # fmt: skip
            summary[f"{key[0]}: {key[1]}"]["nuisance_streams_with_incidents"] = {
                k: sum(1 for r in mine if r.get("nuisances", {}).get(k, {}).get("incidents")) for k in NUISANCES
            }
    out = {"date": time.strftime("%Y-%m-%d"), "ignition_minute": IGNITION_MIN, "minutes": SPAN_MIN,
           "models": {m: c or "models/smoke_fire.json" for m, c in models if not (c or "").startswith("-")},
           "baselines": {m: f"the shipped config without {c[1:]}" for m, c in models if c and c.startswith("-")},
           "single_frames_3072x2048": single,
           "summary": summary, "streams": rows}  # fmt: skip
    path = args.out or ROOT / "models" / ("plume_streams.json" if not only else "plume_streams_quick.json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"single_frames": single, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
