"""Thermal frames in the units their camera declares (issue 29): through the engine's camera intake, raw counts
on a camera declared in °C are dead-lettered and listed as a readiness warning, never reach a detector; counts
from a camera that does not say are counts; a wrong calibration is refused."""

from __future__ import annotations

import io
import time

import numpy as np

from engine.config.models import CamerasConfig
from engine.ingest.camera_intake import CameraIntake
from engine.ingest.topics import parse_topic
from tests.conftest import default_config


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_the_intake_refuses_counts_on_a_degrees_camera_and_passes_counts_as_counts():
    cameras = CamerasConfig.model_validate({"devices": [
        {"site": "S1", "id": "ir-c", "kind": "thermal", "units": "celsius"},
        {"site": "S1", "id": "ir-auto", "kind": "thermal"},
        {"site": "S1", "id": "ir-bad", "kind": "thermal", "gain": 1.0, "offset": -5000.0},  # median -2000 °C
    ]})  # fmt: skip
    rejected: list[tuple[str, str]] = []
    cfg = default_config(cameras=cameras)
    intake = CameraIntake(cfg, lambda r, topic, _p, _t: rejected.append((r[0].reason, topic)))
    counts = npy((3000 + np.random.default_rng(1).normal(0, 30, (120, 160))).astype(np.uint16))
    now = time.time()
    for cam in ("ir-c", "ir-auto", "ir-bad"):
        topic = f"gw/thermal/S1/{cam}"
        intake.handle(parse_topic(topic, "gw"), topic, counts, {"ts": f"{now:.3f}"}, now)
    frames = intake.take()
    assert [(f.camera, f.units) for f in frames] == [("ir-auto", "counts")]
    assert sorted(rejected) == [("implausible_temperature", "gw/thermal/S1/ir-bad"),
                                ("thermal_units", "gw/thermal/S1/ir-c")]  # fmt: skip
    warning = intake.refused.recent(time.time())
    assert set(warning) == {"S1/ir-c", "S1/ir-bad"} and warning["S1/ir-c"]["reason"] == "thermal_units"
