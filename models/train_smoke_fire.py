"""Train the smoke-and-fire CNN on the Roboflow fire/smoke photos and export it to ONNX.

Reproducible by seed: `.venv/bin/python models/train_smoke_fire.py [--data DIR] [--seed 7] [--epochs 40]`
(torch is a training-only extra: `pip install -e '.[train]'`, torch 2.13.0 CPU). Writes
`models/smoke_fire.onnx`, `models/smoke_fire.json` (what the runtime reads: input, labels, thresholds,
grid, metrics) and prints the held-out metrics that `models/README.md` quotes.

The data (CC BY 4.0, Roboflow project fire-wrpgm v8) are frames of a few dozen video clips and a set of
numbered photos; neighbouring frames are near-duplicates, so the hold-out is by clip: every image of
a clip (or of a block of 20 consecutive photo numbers) is in one split only.

The network is fully convolutional: five stride-2 stages take a 160x160 RGB frame to a 5x5 grid of
cells, and a 1x1 head gives each cell a fire and a smoke logit. The image's score for a class is the
maximum over its cells (multiple-instance pooling), so the grid doubles as the region: the cells that
fired. Training uses both the image labels and cell targets from the YOLO boxes. Frames from the camera
simulator (fires, plumes and the look-alikes: fog, clouds, sunset, red vehicles, headlights) augment the
training split, never the validation or test clips.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from scoring import clip_of, prf  # models/scoring.py
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "fire-smoke-roboflow"
SIZE = 160
GRID = 5
LABELS = ("fire", "smoke")
YOLO_CLASS = {0: 0, 2: 1}  # YOLO class -> our label; class 1 ("default") is a scene without fire or smoke
console = Console()


def load(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Images (N, 3, SIZE, SIZE) uint8 RGB, image labels (N, 2), cell targets (N, 2, GRID, GRID), clips."""
    paths = sorted(p for split in ("train", "valid", "test") for p in (data / split / "images").glob("*.jpg"))
    images, labels, cells, clips = [], [], [], []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            continue
        img = cv2.cvtColor(cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        label_file = p.parent.parent / "labels" / (p.stem + ".txt")
        y = np.zeros(2, np.float32)
        c = np.zeros((2, GRID, GRID), np.float32)
        for line in label_file.read_text().splitlines() if label_file.exists() else []:
            parts = line.split()
            if len(parts) != 5 or int(parts[0]) not in YOLO_CLASS:
                continue
            k = YOLO_CLASS[int(parts[0])]
            cx, cy, w, h = (float(v) for v in parts[1:])
            y[k] = 1.0
            x0, x1 = int(np.floor((cx - w / 2) * GRID)), int(np.ceil((cx + w / 2) * GRID))
            y0, y1 = int(np.floor((cy - h / 2) * GRID)), int(np.ceil((cy + h / 2) * GRID))
            c[k, max(0, y0) : min(GRID, y1), max(0, x0) : min(GRID, x1)] = 1.0
        images.append(img.transpose(2, 0, 1))
        labels.append(y)
        cells.append(c)
        clips.append(clip_of(p.name))
    return np.stack(images), np.stack(labels), np.stack(cells), clips


def synthetic_frames(n: int, seed: int, scenes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` frames of the camera simulator's scenes, for the training split only: fires and plumes with
    their boxes, and the distractors (fog, clouds, sunset, red vehicle, headlights) as negatives."""
    from simulators.camera import visible_frame

    rng = np.random.default_rng(seed)
    boxes = {"fire": [(0, (260, 110, 100, 100)), (1, (270, 20, 140, 170))], "smoke": [(1, (270, 40, 140, 170))]}
    images, labels, cells = [], [], []
    for k in range(n):
        scene = scenes[k % len(scenes)]
        t = float(rng.uniform(6.0, 90.0))
        bgr = visible_frame(scene, t, seed=int(rng.integers(1_000_000)), start_s=5.0)
        img = cv2.cvtColor(cv2.resize(bgr, (SIZE, SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        y = np.zeros(2, np.float32)
        c = np.zeros((2, GRID, GRID), np.float32)
        for cls, (x, top, w, h) in boxes.get(scene, []):
            y[cls] = 1.0
            x0, x1 = int(x / 640 * GRID), int(np.ceil((x + w) / 640 * GRID))
            y0, y1 = int(top / 360 * GRID), int(np.ceil((top + h) / 360 * GRID))
            c[cls, y0:y1, x0:x1] = 1.0
        images.append(img.transpose(2, 0, 1))
        labels.append(y)
        cells.append(c)
    return np.stack(images), np.stack(labels), np.stack(cells)


def split_by_clip(clips: list[str], seed: int) -> dict[str, np.ndarray]:
    """70 / 10 / 20 % of clips (by image count) for train / validation / test."""
    rng = np.random.default_rng(seed)
    names = sorted(set(clips))
    rng.shuffle(names)
    counts = {n: clips.count(n) for n in names}
    total, acc, part = len(clips), 0, {}
    for n in names:
        frac = acc / total
        part[n] = "test" if frac < 0.2 else "val" if frac < 0.3 else "train"
        acc += counts[n]
    arr = np.array([part[c] for c in clips])
    return {s: np.flatnonzero(arr == s) for s in ("train", "val", "test")}


class SmokeFireNet(nn.Module):
    """160x160 RGB in [0, 1] → (scores (N, 2), grid (N, 2, 5, 5)), both probabilities."""

    def __init__(self) -> None:
        super().__init__()
        chans = [3, 16, 32, 64, 96, 128]
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(chans):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
            layers += [nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(chans[-1], 2, 1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - self.mean) / self.std))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cells = self.logits(x)
        return torch.sigmoid(cells.amax(dim=(2, 3))), torch.sigmoid(cells)


def augment(batch: np.ndarray, cells: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flips and brightness/contrast/saturation jitter (no crops: the cell targets stay put)."""
    x = batch.astype(np.float32) / 255.0
    flip = rng.random(len(x)) < 0.5
    x[flip] = x[flip, :, :, ::-1]
    cells = cells.copy()
    cells[flip] = cells[flip, :, :, ::-1]
    gain = rng.uniform(0.7, 1.3, (len(x), 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(-0.1, 0.1, (len(x), 1, 1, 1)).astype(np.float32)
    grey = x.mean(axis=1, keepdims=True)
    sat = rng.uniform(0.6, 1.4, (len(x), 1, 1, 1)).astype(np.float32)
    x = np.clip((grey + (x - grey) * sat) * gain + bias, 0.0, 1.0)
    return np.ascontiguousarray(x), np.ascontiguousarray(cells)


def evaluate(model: SmokeFireNet, x: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            scores, _ = model(torch.from_numpy(x[i : i + batch].astype(np.float32) / 255.0))
            out.append(scores.numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument(
        "--synthetic", type=int, default=240, help="Simulator frames added to the training split only (0: none)."
    )
    ap.add_argument(
        "--synthetic-scenes",
        default="fire,smoke,fog,clouds,sunset,red-vehicle",
        help="Simulator scenes to draw them from (see simulators/camera.py).",
    )
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)

    images, labels, cells, clips = load(args.data)
    parts = split_by_clip(clips, args.seed)
    console.print(
        f"{len(images)} images from {len(set(clips))} clips: "
        + ", ".join(f"{k} {len(v)} ({int(labels[v, 0].sum())} fire, {int(labels[v, 1].sum())} smoke)"
                    for k, v in parts.items())
    )  # fmt: skip
    if args.synthetic:
        sx, sy, sc = synthetic_frames(args.synthetic, args.seed, args.synthetic_scenes.split(","))
        first = len(images)
        images, labels, cells = np.concatenate([images, sx]), np.concatenate([labels, sy]), np.concatenate([cells, sc])
        parts["train"] = np.concatenate([parts["train"], np.arange(first, first + len(sx))])
        console.print(f"+ {len(sx)} simulator frames in training (validation and test stay real)")
    model = SmokeFireNet()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=3e-3, total_steps=args.epochs * (len(parts["train"]) // 32 + 1)
    )
    bce = nn.BCEWithLogitsLoss()
    best, best_state = -1.0, None
    t0 = time.perf_counter()
    with Progress(console=console) as progress:
        task = progress.add_task("training", total=args.epochs)
        for epoch in range(args.epochs):
            model.train()
            order = rng.permutation(parts["train"])
            for i in range(0, len(order), 32):
                idx = order[i : i + 32]
                x, c = augment(images[idx], cells[idx], rng)
                logits = model.logits(torch.from_numpy(x))
                loss = bce(logits.amax(dim=(2, 3)), torch.from_numpy(labels[idx])) + bce(logits, torch.from_numpy(c))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            val = evaluate(model, images[parts["val"]])
            f1 = np.mean([prf(val[:, k] >= 0.5, labels[parts["val"], k] > 0.5)["f1"] for k in range(2)])
            if f1 >= best:
                best, best_state = f1, {k: v.clone() for k, v in model.state_dict().items()}
            progress.update(task, advance=1, description=f"epoch {epoch + 1}: loss {loss.item():.3f}, val F1 {f1:.3f}")
    train_s = time.perf_counter() - t0
    assert best_state is not None
    model.load_state_dict(best_state)

    # Thresholds: the best F1 on the validation clips, per class.
    val = evaluate(model, images[parts["val"]])
    thresholds = []
    for k in range(2):
        grid = np.linspace(0.2, 0.8, 13)
        f1s = [prf(val[:, k] >= t, labels[parts["val"], k] > 0.5)["f1"] for t in grid]
        thresholds.append(round(float(grid[int(np.argmax(f1s))]), 2))
    test = evaluate(model, images[parts["test"]])
    metrics = {LABELS[k]: prf(test[:, k] >= thresholds[k], labels[parts["test"], k] > 0.5) for k in range(2)}
    console.print(f"held-out test clips ({len(parts['test'])} images): {metrics}")

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "smoke_fire.onnx"
    model.eval()
    torch.onnx.export(
        model, (torch.zeros(1, 3, SIZE, SIZE),), str(onnx_path), input_names=["image"],
        output_names=["scores", "grid"], dynamic_axes={"image": {0: "n"}, "scores": {0: "n"}, "grid": {0: "n"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    card = {
        "name": "smoke_fire",
        "file": onnx_path.name,
        "input": {
            "name": "image",
            "shape": [None, 3, SIZE, SIZE],
            "layout": "NCHW",
            "colour": "RGB",
            "scale": "0..1 float32",
            "resize": "area, whole frame",
        },
        "head": "classifier_grid",
        "labels": list(LABELS),
        "thresholds": dict(zip(LABELS, thresholds, strict=True)),
        "grid": GRID,
        "seed": args.seed,
        "epochs": args.epochs,
        "train_seconds": round(train_s, 1),
        "split": {k: len(v) for k, v in parts.items()},
        "synthetic_training_frames": args.synthetic,
        "synthetic_scenes": args.synthetic_scenes.split(",") if args.synthetic else [],
        "test_clips": sorted({clips[i] for i in parts["test"]}),
        "test_metrics": metrics,
        "data": "Roboflow fire-wrpgm v8 (CC BY 4.0), https://universe.roboflow.com/custom-thxhn/fire-wrpgm/dataset/8",
        "torch": torch.__version__,
    }
    (args.out / "smoke_fire.json").write_text(json.dumps(card, indent=2) + "\n")
    console.print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB) and smoke_fire.json")


if __name__ == "__main__":
    main()
