"""The smoke-and-fire model on a GPU, where one is lent: frames/s of the same ONNX graph on CUDA.

The engine runs ``models/smoke_fire.onnx`` with onnxruntime; ``smoke_fire_onnx`` takes
``providers: [CUDAExecutionProvider]`` where onnxruntime-gpu is installed. Where the GPU machine's
onnxruntime has that provider this benchmark uses it; where it has not (the machine lent to this
project has the CPU build and CUDA 13, for which PyPI has no onnxruntime-gpu), it runs the same ONNX
graph converted to PyTorch by ``onnx2torch`` on CUDA, and checks its scores against onnxruntime's.

Figures, on the same 640x360 JPEG frames as ``bench_detect_frames.py``:
* the model alone on the GPU at batches of 8, 32 and 128 (inputs already on the device), fp32;
* the model alone on one CPU core with onnxruntime, batches of 8: the baseline in the same run;
* end to end on the GPU: JPEG decode and preprocessing on one CPU core, the model on the GPU, batches of 8
  (what one engine process feeding a GPU gets: the CPU side bounds it).

Prints a table, writes benchmarks/results/model_gpu.json and model_gpu.png.
Run (on a machine with a CUDA GPU and torch): python benchmarks/bench_model_gpu.py [--quick]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
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

from benchmarks.bench_detect_frames import jpeg_frames  # noqa: E402 (after sys.path)
from benchmarks.output import results_dir, write_results  # noqa: E402
from detectors.vision.smoke_fire_onnx import SmokeFireOnnx, SmokeFireOnnxConfig  # noqa: E402
from engine.ingest.frames import decode  # noqa: E402

RESULTS = results_dir()  # outside the checkout for --quick: only full runs write results files
console = Console()
MODEL = ROOT / "models" / "smoke_fire.onnx"


def rate(run: Callable[[], int], seconds: float) -> float:
    """Frames/s of ``run`` (which returns the frames it did), repeated for ``seconds`` after one warm-up."""
    run()
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done += run()
    return done / (time.perf_counter() - t0)


def cuda_available() -> bool:
    """A CUDA GPU that this benchmark can drive: onnxruntime's CUDA provider, or PyTorch with CUDA and onnx2torch."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return True
    try:
        import onnx2torch  # noqa: F401
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class GpuModel:
    """The ONNX graph on CUDA: onnxruntime's CUDA provider where it has one, else onnx2torch on PyTorch."""

    def __init__(self) -> None:
        self.torch: Any = None
        if "CUDAExecutionProvider" in ort.get_available_providers():
            self.session = ort.InferenceSession(str(MODEL), providers=["CUDAExecutionProvider"])
            self.input = self.session.get_inputs()[0].name
            self.how = "onnxruntime CUDAExecutionProvider"
            return
        import onnx
        import torch
        from onnx2torch import convert

        self.torch = torch
        self.net = convert(onnx.load(str(MODEL))).cuda().eval()
        self.how = f"onnx2torch, PyTorch {torch.__version__}"

    def upload(self, x: np.ndarray) -> Any:
        return x if self.torch is None else self.torch.from_numpy(x).cuda()

    def run(self, x: Any) -> Any:
        """The model's outputs for a batch (a device tensor or, for onnxruntime, numpy), not waited for."""
        if self.torch is None:
            return self.session.run(None, {self.input: x})
        with self.torch.inference_mode():
            return self.net(x)

    def scores(self, x: np.ndarray) -> np.ndarray:
        out = self.run(self.upload(x))
        first = out[0] if isinstance(out, (list, tuple)) else out
        return np.asarray(first if self.torch is None else first.float().cpu().numpy())

    def sync(self) -> None:
        if self.torch is not None:
            self.torch.cuda.synchronize()

    def device(self) -> str:
        return str(self.torch.cuda.get_device_name(0)) if self.torch is not None else "CUDA (onnxruntime)"


def main() -> None:
    quick = "--quick" in sys.argv
    if not cuda_available():
        console.print("no CUDA GPU here (nor onnxruntime-gpu, nor PyTorch with CUDA and onnx2torch): skipped")
        return
    seconds = 2.0 if quick else 5.0
    cv2.setNumThreads(1)
    det = SmokeFireOnnx(SmokeFireOnnxConfig(threads=1, batch_size=8, motion_gate=0))
    jpegs = jpeg_frames(128)
    images = [decode(p) for p in jpegs]
    x_all = np.stack([det.preprocess(im) for im in images])
    gpu = GpuModel()
    cpu = det.session  # onnxruntime on one CPU core, as the engine runs it
    name = cpu.get_inputs()[0].name
    reference = cpu.run(None, {name: x_all[:32]})[0]
    max_diff = float(np.abs(gpu.scores(x_all[:32]) - reference).max())

    figures: dict[str, float] = {}
    figures["cpu_1_core_batch_8"] = rate(lambda: (cpu.run(None, {name: x_all[:8]}), 8)[1], seconds)
    for b in (8, 32, 128):
        on_device = gpu.upload(x_all[:b])

        def model_only(x: Any = on_device, b: int = b) -> int:
            gpu.run(x)
            gpu.sync()
            return b

        figures[f"gpu_batch_{b}"] = rate(model_only, seconds)

    def end_to_end() -> int:
        for i in range(0, 64, 8):
            gpu.run(gpu.upload(np.stack([det.preprocess(decode(p)) for p in jpegs[i : i + 8]])))
        gpu.sync()
        return 64

    figures["gpu_end_to_end_batch_8"] = rate(end_to_end, seconds)
    device, how = gpu.device(), gpu.how
    write_results(
        "model_gpu",
        {
            "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers(),
            "gpu_runtime": how,
            "max_abs_score_diff_vs_onnxruntime_cpu": max_diff,
            "frames_per_s": {k: round(v, 1) for k, v in figures.items()},
            "gpu_batch_8_vs_cpu_core": round(figures["gpu_batch_8"] / figures["cpu_1_core_batch_8"], 1),
        },
        gpu=device,
    )
    table = Table(title=f"model_gpu: smoke_fire.onnx on {device} ({how})")
    table.add_column("run")
    table.add_column("frames/s", justify="right")
    for k, v in figures.items():
        table.add_row(k, f"{v:,.1f}")
    console.print(table)
    console.print(f"scores vs onnxruntime CPU: max |diff| {max_diff:.2e}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(list(figures), list(figures.values()), color=["grey"] + ["tab:purple"] * (len(figures) - 1))
    ax.set_xscale("log")
    ax.set_xlabel("frames per second (log scale)")
    ax.set_title(f"smoke_fire.onnx on {device}", fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(RESULTS / "model_gpu.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
