"""Camera detectors: the contract every one passes, the model on real frames, the classical and thermal
detectors on synthetic scenes, frame decoding and ``gridwatch score``."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.thermal.thermal_hotspot import ThermalHotspot, ThermalHotspotConfig
from detectors.vision.base import Frame, FrameBatch, Observation, frame_registry, iou
from detectors.vision.flame_color_motion import FlameColorMotion, FlameColorMotionConfig
from detectors.vision.smoke_fire_onnx import SmokeFireOnnx, SmokeFireOnnxConfig
from engine.core.levels import Level
from engine.ingest.frames import FrameError, decode, image_size, read_frames
from simulators.camera import visible_frame

ROOT = Path(__file__).resolve().parents[2]
FRAMES = ROOT / "tests" / "data" / "frames"
CAMERA_TYPES = frame_registry.known()


def image(name: str) -> np.ndarray:
    img = cv2.imread(str(FRAMES / f"{name}.jpg"))
    assert img is not None
    return img


def flame_scene(k: int, fire: bool = True) -> np.ndarray:
    """The camera simulator's hillside with flickering flames, or with a sunset (red, orange, steady)."""
    return visible_frame("fire" if fire else "sunset", 2.0 * k, seed=5, start_s=0.0)


def thermal_scene(k: int, fire_from: int = 5) -> np.ndarray:
    """°C: a 20 °C hillside, a sun-heated rock at 58 °C all along, and a fire that starts and grows."""
    img = np.full((120, 160), 20.0, np.float32)
    img[10:16, 10:16] = 58.0  # the rock: hot but static
    if k >= fire_from:
        r = 2 + (k - fire_from)
        cv2.circle(img, (100, 70), r, 80.0, -1)
    return img


def stream(det_type: str) -> list[Frame]:
    det_cls = frame_registry.get(det_type)
    if det_cls.modality == "thermal":
        return [Frame("S1", f"ir-{c}", float(k), thermal_scene(k)) for k in range(12) for c in (1, 2)]
    if det_type == "smoke_fire_onnx":
        seq = ["none", "none", "smoke", "smoke", "smoke", "fire", "fire", "fire", "none"]
        return [Frame("S1", f"cam-{c}", float(k), image(n)) for k, n in enumerate(seq) for c in (1, 2)]
    if det_type == "plume_change":  # a grey plume rising from the hillside
        scene = "smoke"
        return [Frame("S1", f"cam-{c}", 2.0 * k, visible_frame(scene, 2.0 * k, seed=5, start_s=4.0))
                for k in range(10) for c in (1, 2)]  # fmt: skip
    return [Frame("S1", f"cam-{c}", float(k), flame_scene(k, fire=k >= 2)) for k in range(10) for c in (1, 2)]


def run(det_type: str, batch_size: int, restore: bool = False) -> list[tuple]:
    cls = frame_registry.get(det_type)
    det = cls(cls.example_config())
    state = det.new_state()
    frames = stream(det_type)
    found = []
    for i in range(0, len(frames), batch_size):
        if restore:
            snap = state.snapshot()
            state = det.new_state()
            state.restore(snap)
        for f in det.process(FrameBatch(frames[i : i + batch_size]), state):
            found.append((f.detector, f.site, f.device, f.ts, int(f.level), round(f.score, 6), str(f.evidence)))
    return found


def test_the_camera_detectors_are_registered():
    assert {"smoke_fire_onnx", "flame_color_motion", "plume_change", "thermal_hotspot"} <= set(CAMERA_TYPES)


@pytest.mark.parametrize("det_type", CAMERA_TYPES)
def test_contract_finds_batching_determinism_snapshot_and_config(det_type):
    one = run(det_type, 1)
    assert one, "the example config fires on its example stream"
    assert run(det_type, 7) == one, "a batch of many gives the findings of batches of one"
    assert run(det_type, 3) == one and run(det_type, 1, restore=True) == one, "deterministic; state restores"
    cls = frame_registry.get(det_type)
    cfg = cls.example_config()
    assert cls.config_class.model_validate(cfg.model_dump()) == cfg


def test_model_on_real_frames_scores_the_right_class_and_region():
    det = SmokeFireOnnx(SmokeFireOnnxConfig())
    obs = det.observe(FrameBatch([Frame("S", n, 0.0, image(n)) for n in ("fire", "smoke", "none")]), det.new_state())
    fire, smoke, none = (o.scores for o in obs)
    assert fire["fire"] >= det.thresholds["fire"] > smoke["fire"]
    assert smoke["smoke"] >= det.thresholds["smoke"] > none["smoke"]
    assert max(none.values()) < min(det.thresholds.values())
    assert all(0 <= v <= 1 for box in obs[0].regions["fire"] for v in box)


def test_temporal_confirmation_needs_k_of_n_and_clears_with_hysteresis():
    det = SmokeFireOnnx(SmokeFireOnnxConfig(confirm_k=3, confirm_n=5, max_region_frac=1.0, scene_memory=False))
    state = det.new_state()
    seq = ["smoke", "none", "smoke", "none", "smoke", "smoke", "none", "none", "none", "none", "none", "smoke"]
    fired = [bool(det.process(FrameBatch([Frame("S", "c", float(k), image(n))]), state)) for k, n in enumerate(seq)]
    # the third smoke frame within five confirms, and the next one; a clear frame files nothing, and one
    # lone smoke frame afterwards confirms nothing
    assert fired == [False, False, False, False, True, True, False, False, False, False, False, False]


def grid_obs(cells: np.ndarray, ts: float, label: str = "smoke") -> Observation:
    """An observation whose ``label`` grid is ``cells`` (5x5) and whose other class scores nothing."""
    other = "fire" if label == "smoke" else "smoke"
    zeros = np.zeros_like(cells)
    return Observation(
        Frame("S1", "tower", ts, np.zeros((8, 8, 3), np.uint8)),
        {label: float(cells.max()), other: 0.0},
        cells={label: cells.astype(np.float32), other: zeros.astype(np.float32)},
    )


def memory_detector(**kw: Any) -> SmokeFireOnnx:
    cfg = SmokeFireOnnxConfig(
        confirm_k=2, confirm_n=3, memory_interval_s=60.0, memory_size=10, memory_warm_frames=3, **kw
    )
    return SmokeFireOnnx(cfg)


def test_scene_memory_a_hazy_sky_never_alarms_a_new_plume_in_one_cell_does():
    det = memory_detector()
    t = det.frame_threshold("smoke")
    sky = np.zeros((5, 5), np.float32)
    sky[:2] = min(1.0, t + 0.03)  # the top two rows always look like smoke to the model (haze)
    track = det.new_state().track("S1/tower")
    fired = [det.confirm(grid_obs(sky, 60.0 * k), track) for k in range(20)]
    assert fired == [None] * 20, "a sky that always scores above the threshold is the camera's normal"
    plume = sky.copy()
    plume[3, 2] = 0.99  # a new plume over the ridge, one cell
    found = [det.confirm(grid_obs(plume, 60.0 * k), track) for k in range(20, 24)]
    # the plume's cell counts from its second frame (cell_persist), and two of three frames confirm it
    assert found[:2] == [None, None] and found[2] is not None, found
    assert found[2].evidence["region"] == [0.4, 0.6, 0.2, 0.2], "the region is the plume's cell, not the sky"


def test_scene_memory_keeps_an_alarmed_cell_out_of_the_normal_then_learns_a_scene_that_stays():
    det = memory_detector()
    track = det.new_state().track("S1/cam")
    quiet, fire = np.zeros((5, 5), np.float32), np.zeros((5, 5), np.float32)
    fire[2, 2] = 0.99
    for k in range(3):
        assert det.confirm(grid_obs(quiet, 60.0 * k, "fire"), track) is None
    fired = [det.confirm(grid_obs(fire, 60.0 * k, "fire"), track) is not None for k in range(3, 40)]
    # the fire's cell counts from its second frame and two frames confirm it; memory_size 10 samples: the fire
    # stays out of the normal for 10 samples, then a scene that stays the same becomes normal and the alarm
    # resolves
    assert fired[:2] == [False, False] and fired[2:10] == [True] * 8
    assert not any(fired[-10:])


@settings(max_examples=40, deadline=None)
@given(
    level=st.floats(0.0, 1.0),
    cell=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    frames=st.integers(1, 30),
    gap=st.floats(1.0, 600.0),
)
def test_scene_memory_a_scene_that_never_changes_never_alarms(level, cell, frames, gap):
    det = memory_detector()
    track = det.new_state().track("S1/cam")
    cells = np.full((5, 5), 0.1, np.float32)
    cells[cell] = level
    assert all(det.confirm(grid_obs(cells, gap * k, "fire"), track) is None for k in range(frames))


def test_one_alarm_rule_levels_come_from_the_card():
    det = SmokeFireOnnx(SmokeFireOnnxConfig())
    for label in ("fire", "smoke"):
        t = det.thresholds[label]
        assert det.frame_threshold(label) == t
        assert det.level_of(label, t - 1e-6) == Level.NONE and det.level_of(label, t) == Level.YELLOW
        assert det.level_of(label, 1.0) == Level.RED
    custom = SmokeFireOnnx(SmokeFireOnnxConfig(levels={"orange": 0.4, "red": 0.8}))
    assert custom.frame_threshold("fire") == 0.4 and custom.level_of("smoke", 0.5) == Level.ORANGE


def test_region_covering_the_frame_is_discounted():
    det = SmokeFireOnnx(SmokeFireOnnxConfig(max_region_frac=0.01, large_region_factor=0.0, confirm_k=1, confirm_n=1))
    assert det.process(FrameBatch([Frame("S", "c", 0.0, image("fire"))]), det.new_state()) == []


def test_flame_colour_and_flicker_versus_a_steady_sunset():
    det = FlameColorMotion(FlameColorMotionConfig())
    state = det.new_state()
    flames = [det.observe(FrameBatch([Frame("S", "c", k, flame_scene(k))]), state)[0] for k in range(4)]
    cars = [det.observe(FrameBatch([Frame("S", "d", k, flame_scene(k, fire=False))]), state)[0] for k in range(4)]
    assert min(o.scores["fire"] for o in flames[1:]) >= 0.5
    assert max(o.scores["fire"] for o in cars[1:]) == 0.0  # once there is a previous frame to judge flicker by
    x, y, w, h = flames[-1].regions["fire"][0]
    assert x < 300 / 640 < x + w and y < 190 / 360 < y + h  # the flame's box holds the flames


def test_thermal_alarm_levels_hysteresis_and_static_hot_rock():
    det = ThermalHotspot(ThermalHotspotConfig())  # confirmation: 2 of the last 3 frames
    state = det.new_state()
    levels = []
    for k in range(10):
        img = thermal_scene(k, fire_from=5)
        found = det.process(FrameBatch([Frame("S", "ir", float(k), img)]), state)
        levels.append(found[0].level.label if found else None)
    # the 58 °C rock is there from the first frame: it is the camera's normal (scene memory) and never
    # alarms; the fire from frame 5 rises above its cell's normal and is red once a second frame confirms it
    assert levels == [None] * 6 + ["red"] * 4
    (single,) = det.observe(FrameBatch([Frame("S", "new", 0.0, thermal_scene(0))]), det.new_state())
    assert single.scores["fire"] == pytest.approx(58 / 55, abs=1e-4)  # one frame alone is judged on its heat
    det2 = ThermalHotspot(ThermalHotspotConfig(confirm_k=1, confirm_n=2))
    st = det2.new_state()
    temps = [20.0, 56.0, 53.0, 53.0, 51.0, 51.0, 51.0]  # cold, alarm, between clear and alarm, below clear
    rng = np.random.default_rng(0)
    out = []
    for k, t in enumerate(temps):
        img = np.full((40, 40), 20.0, np.float32)
        img[10:20, 10:20] = t + rng.uniform(-0.6, 0.6, (10, 10)) * (t > 20)  # a flickering fire's peak: t
        img[10:20, 10:20] -= np.where(rng.random((10, 10)) < 0.5, 6.0, 0.0) * (t > 20)
        img[15, 15] = t
        found = det2.process(FrameBatch([Frame("S", "ir2", float(k), img)]), st)
        out.append(found[0].level.label if found else None)
    # the alarm (red) holds at 53 °C, above clear (52 °C); at 51 °C it falls to the pre-alarm (50 °C)
    assert out == [None, "red", "red", "red", "orange", "orange", "orange"], out
    with pytest.raises(ValueError, match="pre_alarm"):
        ThermalHotspotConfig(pre_alarm=60, alarm=55)


def test_thermal_scene_memory_starts_again_when_the_camera_changes_view():
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float32)

    def view(k: int, rock: tuple[int, int]) -> np.ndarray:  # a hillside; the preset from frame 4 looks elsewhere
        pan = 0.0 if k < 4 else 40.0
        img = 20.0 + 4.0 * np.sin((xx + pan) / 9.0) + 3.0 * np.cos((yy + pan) / 11.0) + np.float32(0.1 * (k % 2))
        img[rock[1] : rock[1] + 6, rock[0] : rock[0] + 6] = 58.0
        return img.astype(np.float32)

    def levels(view_change: float) -> list[str | None]:
        det = ThermalHotspot(ThermalHotspotConfig(view_change=view_change, confirm_k=1, confirm_n=2))
        state = det.new_state()
        out = []
        for k in range(8):  # a PTZ camera moves to a preset where another hot rock is in view from frame 4
            img = view(k, (10, 10) if k < 4 else (120, 90))
            found = det.process(FrameBatch([Frame("S", "ptz", 60.0 * k, img)]), state)
            out.append(found[0].level.label if found else None)
        return out

    assert levels(0.9) == [None] * 8  # the new view is learnt afresh: its rock is its normal
    assert levels(1e9)[4:] == ["red"] * 4  # without: the rock is a rise above the old view's normal


def test_frame_decoding_refuses_bombs_and_non_images():
    _ok, png = cv2.imencode(".png", np.zeros((8, 12, 3), np.uint8))
    assert decode(png.tobytes()).shape == (8, 12, 3)
    bomb = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + struct.pack(">II", 100_000, 100_000) + b"\x08\x02"
    with pytest.raises(FrameError) as err:
        decode(bomb)
    assert err.value.reason == "too_many_pixels"
    with pytest.raises(FrameError) as err:
        decode(b"GIF89a not for us")
    assert err.value.reason == "not_an_image"
    _ok, tif = cv2.imencode(".tiff", np.full((6, 9), 3000, np.uint16))
    assert image_size(tif.tobytes()) == ("tiff", 9, 6)
    assert float(decode(tif.tobytes(), thermal=True, gain=0.01, offset=-10.0)[0, 0]) == pytest.approx(20.0)
    buf = __import__("io").BytesIO()
    np.save(buf, np.full((5, 7), 42.0, np.float32))
    assert decode(buf.getvalue(), thermal=True).shape == (5, 7)
    assert [f.source for f in read_frames([FRAMES])] == [str(FRAMES / f"{n}.jpg") for n in ("fire", "none", "smoke")]


def test_gridwatch_score_prints_the_alarm_and_level_per_frame_and_goes_on_past_bad_files(tmp_path):
    for name in ("fire", "none"):
        (tmp_path / f"{name}.jpg").write_bytes((FRAMES / f"{name}.jpg").read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", "score", "--detector", "smoke-fire-model", str(tmp_path),
         "-c", str(ROOT / "config" / "gridwatch.yaml")],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0] == "source,class,score,threshold,alarm,level,region" and len(rows) == 1 + 2 * 2
    det = SmokeFireOnnx(SmokeFireOnnxConfig())
    for row in rows[1:]:
        _src, label, score, threshold, alarm, level, _region = next(iter(__import__("csv").reader([row])))
        assert float(threshold) == det.frame_threshold(label), "score and the engine share one threshold"
        assert alarm == str(int(float(score) >= float(threshold)))
        assert level == (det.level_of(label, float(score)).label if alarm == "1" else "")
    fire_row = next(r for r in rows if "fire.jpg" in r and ",fire," in r)
    assert fire_row.split(",")[4] == "1", "the fire photo alarms"
    assert "broken.jpg" in out.stderr and "could not be decoded" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "score", "--detector", "smoke_fire_onx", str(FRAMES)],
                         capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)  # fmt: skip
    assert bad.returncode == 2 and "did you mean 'smoke_fire_onnx'" in bad.stderr


def test_motion_gate_reuses_the_result_of_a_static_scene():
    det = SmokeFireOnnx(SmokeFireOnnxConfig(motion_gate=0.01))
    calls: list[int] = []
    run = det.session.run

    def counting_run(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]["image"]))
        return run(*args, **kwargs)

    det.session.run = counting_run
    state = det.new_state()
    still = [Frame("S", "c", float(k), image("fire")) for k in range(6)]
    obs = det.observe(FrameBatch(still[:3]), state) + det.observe(FrameBatch(still[3:]), state)
    assert sum(calls) == 1, "a static scene runs the model once"
    assert len({round(o.scores["fire"], 6) for o in obs}) == 1
    det.observe(FrameBatch([Frame("S", "c", 6.0, image("smoke"))]), state)
    assert sum(calls) == 2, "a changed scene runs it again"


def test_yolo_head_filters_by_threshold_and_suppresses_overlaps(tmp_path):
    onnx = pytest.importorskip("onnx", reason="onnx builds the test model (a dev dependency)")
    from onnx import TensorProto, helper

    anchors = np.array(  # (4 + 2 classes, 3 anchors): cx, cy, w, h in input pixels, then fire, smoke scores
        [[32, 33, 10], [20, 21, 50], [20, 20, 8], [16, 16, 8], [0.9, 0.8, 0.05], [0.1, 0.1, 0.7]], np.float32
    )[None]
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["image"], ["shape"]),
            helper.make_node("Slice", ["shape", "zero", "one"], ["n"]),
            helper.make_node("Concat", ["n", "rest"], ["out_shape"], axis=0),
            helper.make_node("Expand", ["anchors", "out_shape"], ["output0"]),
        ],
        "yolo-stub",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["n", 6, 3])],
        [
            helper.make_tensor("anchors", TensorProto.FLOAT, anchors.shape, anchors.flatten()),
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("rest", TensorProto.INT64, [2], [6, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "yolo.onnx"))
    (tmp_path / "yolo.json").write_text(
        '{"file": "yolo.onnx", "head": "yolo", "labels": ["fire", "smoke"], "thresholds": {"fire": 0.5, "smoke": 0.5},'
        ' "input": {"shape": [null, 3, 64, 64]}}'
    )
    det = SmokeFireOnnx(SmokeFireOnnxConfig(model=str(tmp_path / "yolo.json"), motion_gate=0))
    (obs,) = det.observe(FrameBatch([Frame("S", "c", 0.0, image("none"))]), det.new_state())
    assert obs.scores == {"fire": 0.9, "smoke": 0.7}
    assert obs.regions["fire"] == [(22 / 64, 12 / 64, 20 / 64, 16 / 64)]  # the overlapping 0.8 box suppressed
    assert obs.regions["smoke"] == [(6 / 64, 46 / 64, 8 / 64, 8 / 64)]


def test_thermal_rate_of_rise_is_a_pre_alarm_below_the_pre_alarm_heat():
    det = ThermalHotspot(ThermalHotspotConfig(confirm_k=1, confirm_n=2, rise_per_min=10, rise_floor=35))
    state = det.new_state()
    out = []
    for k, t in enumerate([20.0, 25.0, 38.0, 46.0]):  # a spot heating by ~8-13 °C a minute, still below 50 °C
        img = np.full((40, 40), 20.0, np.float32)
        img[20:24, 20:24] = t
        found = det.process(FrameBatch([Frame("S", "ir", 60.0 * k, img)]), state)
        out.append((found[0].level.label, found[0].evidence["rise_per_min"]) if found else None)
    assert out[:2] == [None, None]
    assert out[2] == ("orange", 13.0) and out[3] is None  # 8 °C a minute is below the rate


def test_thermal_rate_of_rise_on_a_one_frame_a_second_camera_reads_heating_not_flicker():
    """Frames a second apart: a 3 °C flicker read as 180 °C a minute (the page showed -4087 °C/min on the demo's
    fire) and was a pre-alarm at once; the rise is now taken against the peak at least rise_over_s before."""

    def levels(temps: list[float]) -> list[tuple[str, float]]:
        det = ThermalHotspot(ThermalHotspotConfig(confirm_k=1, confirm_n=2, rise_per_min=10, rise_floor=35))
        state, out = det.new_state(), []
        for k, t in enumerate(temps):
            img = np.full((40, 40), 20.0, np.float32)
            img[20:24, 20:24] = t
            found = det.process(FrameBatch([Frame("S", "ir", 1000.0 + k, img)]), state)
            out += [(found[0].level.label, found[0].evidence["rise_per_min"])] if found else []
        return out

    flicker = [40.0 + 3.0 * (k % 2) for k in range(120)]  # a warm spot, 40-43 °C, for two minutes
    assert levels(flicker) == []
    # 15 °C a minute from 20 °C to 47 °C (below the pre-alarm), with the same 3 °C flicker on top
    heating = [20.0 + 0.25 * k + 3.0 * (k % 2) for k in range(110)]
    found = levels(heating)
    assert found and {level for level, _ in found} == {"orange"}
    assert all(9.0 <= rise <= 22.0 for _, rise in found), found  # 15 ± 6 per minute, not 195 or -165


def test_thermal_counts_are_calibrated_float_frames_are_degrees_and_a_wrong_calibration_is_refused():
    import io

    from engine.ingest.frames import FrameError, decode

    def npy(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    counts = np.full((8, 8), 29315, dtype=np.uint16)  # centikelvin: 20 °C
    assert float(decode(npy(counts), thermal=True, gain=0.01, offset=-273.15)[0, 0]) == pytest.approx(20.0, abs=1e-3)
    celsius = np.full((8, 8), 21.5, dtype=np.float32)  # the simulator's frames: °C already
    assert float(decode(npy(celsius), thermal=True, gain=0.01, offset=-273.15)[0, 0]) == pytest.approx(21.5)
    with pytest.raises(FrameError) as exc:
        decode(npy(np.full((8, 8), 2931, dtype=np.uint16)), thermal=True, gain=0.01, offset=-273.15)  # a wrong scale
    assert exc.value.reason == "implausible_temperature" and "gain and offset" in str(exc.value)


def test_thermal_counts_are_never_read_as_degrees():
    """Issue 29: raw 16-bit counts on a camera declared in °C are refused; on a camera that does not say, they
    are counts (judged against the scene), never degrees; a frame taken as °C with no scene temperature as its
    median is refused by the detector, never alarmed."""
    import io

    from engine.config.models import CameraConfig
    from engine.ingest.thermal_units import RefusedFrames, decode_camera_frame

    def npy(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    rng = np.random.default_rng(3)
    counts = (3000 + rng.normal(0, 40, (120, 160))).astype(np.uint16)  # a quiet scene of raw counts
    declared = CameraConfig(site="S", id="ir", kind="thermal", units="celsius")
    with pytest.raises(FrameError) as exc:
        decode_camera_frame(npy(counts), declared)
    assert exc.value.reason == "thermal_units"
    refused = RefusedFrames()
    refused.note("S", "ir", exc.value.reason, 10.0)
    assert refused.recent(20.0) == {"S/ir": {"reason": "thermal_units", "frames": 1, "last_s_ago": 10.0}}

    image, units = decode_camera_frame(npy(counts), CameraConfig(site="S", id="ir", kind="thermal"))
    assert units == "counts"
    det = ThermalHotspot(ThermalHotspotConfig())  # units: celsius, 50/55 °C: counts would alarm everywhere
    state = det.new_state()
    quiet = [det.process(FrameBatch([Frame("S", "ir", 60.0 * k, image, units=units)]), state) for k in range(4)]
    assert quiet == [[], [], [], []]
    (obs,) = det.observe(FrameBatch([Frame("S", "ir", 0.0, image.copy())]), det.new_state())  # no units said
    assert obs.scores["fire"] == 0.0 and obs.detail["refused"] == "implausible_temperature"
    fire = image.copy()
    fire[60:64, 80:84] = 9000.0  # a fire in counts: thousands above the scene
    found = [det.process(FrameBatch([Frame("S", "ir", 60.0 * k, fire, units=units)]), state) for k in range(4, 8)]
    assert any(found), "a fire in counts still alarms"
    assert found[-1][0].evidence["units"] == "counts"


def test_tiles_cover_large_and_small_frames_per_camera_settings():
    det = SmokeFireOnnx(SmokeFireOnnxConfig(camera_tiles={"S1/far": {"band": (0.25, 0.75), "tile_overlap": 1},
                                                          "hd-cctv": {"tile_px": 360}}))  # fmt: skip
    tower = det.layout((2048, 3072, 3), "S1/tower")
    assert (len(tower.origins), tower.gh, tower.gw) == (48, 27, 40)  # 384 frame pixels per 160-pixel input
    assert tower.context, "and the whole frame as one more input"
    cctv = det.layout((360, 640, 3), "S1/cctv")
    assert len(cctv.origins) == 1 and not cctv.context  # a small frame is seen whole, as before tiles
    hd = det.layout((1080, 1920, 3), "S1/hd")
    assert (len(hd.origins), hd.gh, hd.gw, hd.used) == (15, 15, 25, (14, 25))
    far = det.layout((2048, 3072, 3), "S1/far")
    assert (far.y0, far.y1, far.gh, len(far.origins)) == (512, 1536, 14, 40)  # its own band, overlapping tiles
    own = det.layout((720, 1280, 3), "S2/hd-cctv")  # a 720p camera tiled by its own setting
    assert len(own.origins) == 8 and own.context
    whole = SmokeFireOnnx(SmokeFireOnnxConfig(tile_px=0)).layout((2048, 3072, 3), "S1/tower")
    assert len(whole.origins) == 1 and (whole.gh, whole.gw) == (5, 5)
    with pytest.raises(ValueError, match="band"):
        SmokeFireOnnxConfig(band=(0.8, 0.2))


def test_tiles_find_a_small_fire_where_it_is_in_a_large_frame():
    """A fire photo in a 3072x2048 frame (2.3 % of it): in tiles it scores as fire, with the region on it;
    squashed whole into one input, as before tiles, it is a few pixels."""
    frame = np.ascontiguousarray(cv2.resize(visible_frame("haze", 0.0), (3072, 2048)))
    x, y, side = 2304, 1152, 384
    frame[y : y + side, x : x + side] = cv2.resize(image("fire"), (side, side))
    det = SmokeFireOnnx(SmokeFireOnnxConfig())
    (obs,) = det.observe(FrameBatch([Frame("S", "tower", 0.0, frame)]), det.new_state())
    assert obs.scores["fire"] >= det.thresholds["fire"] and obs.detail["tiles"] == 48
    fire_box = (x / 3072, y / 2048, side / 3072, side / 2048)
    assert obs.regions["fire"] and all(iou(b, fire_box) > 0 for b in obs.regions["fire"]), obs.regions["fire"]
    whole = SmokeFireOnnx(SmokeFireOnnxConfig(tile_px=0))
    (squashed,) = whole.observe(FrameBatch([Frame("S", "tower", 0.0, frame)]), whole.new_state())
    assert squashed.scores["fire"] < obs.scores["fire"]


def test_motion_gate_compares_each_tile_with_what_the_model_last_saw_not_the_previous_frame():
    det = SmokeFireOnnx(SmokeFireOnnxConfig(motion_max_age_s=600.0))
    calls: list[int] = []
    run = det.session.run

    def counting_run(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]["image"]))
        return run(*args, **kwargs)

    det.session.run = counting_run
    state = det.new_state()
    scene = cv2.resize(visible_frame("haze", 0.0), (1920, 1080))
    det.observe(FrameBatch([Frame("S", "c", 0.0, scene)]), state)
    assert sum(calls) == 16, "every tile of a new camera, and the frame whole"
    calls.clear()
    grown = scene.astype(np.int16)
    for k in range(1, 9):  # haze thickening by 3 grey levels a minute: each frame differs little from the last
        grown[100:200, 100:200] += 3
        det.observe(FrameBatch([Frame("S", "c", 60.0 * k, np.clip(grown, 0, 255).astype(np.uint8))]), state)
    # its one tile (and the whole frame's input) runs again each time its change adds up against its reference
    assert calls == [2, 2], calls
    calls.clear()
    det.observe(FrameBatch([Frame("S", "c", 60.0 * 8 + 601.0, np.clip(grown, 0, 255).astype(np.uint8))]), state)
    assert sum(calls) == 16, "a reused score is at most motion_max_age_s old"


def test_gridwatch_score_json_gives_the_alarm_region_and_reads_raw_counts_as_counts(tmp_path):
    cv2.imwrite(str(tmp_path / "fire-in-a-field.png"), cv2.resize(image("fire"), (640, 640)))
    rng = np.random.default_rng(4)
    counts = (3000 + rng.normal(0, 30, (120, 160))).astype(np.uint16)
    counts[60:63, 80:83] = 9000  # a fire, in raw counts
    cv2.imwrite(str(tmp_path / "ir.tiff"), counts)
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", "score", "--detector", "smoke-fire-model", "--json",
         str(tmp_path / "fire-in-a-field.png"), "-c", str(ROOT / "config" / "gridwatch.yaml")],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    fire = next(r for r in map(__import__("json").loads, out.stdout.splitlines()) if r["class"] == "fire")
    assert fire["alarm"] and fire["alarm_cells"]
    assert fire["alarm_region_px"] == [round(v * 640) for v in fire["alarm_region"]]
    assert fire["alarm_region"] == [0.4, 0.6, 0.6, 0.4], "the cells with the flames (lower right), not the frame"
    ir = subprocess.run(
        [sys.executable, "-m", "engine.cli", "score", "--detector", "thermal", "--json", str(tmp_path / "ir.tiff"),
         "-c", str(ROOT / "config" / "gridwatch.yaml")],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    (row,) = map(__import__("json").loads, ir.stdout.splitlines())
    assert row["detail"]["units"] == "counts" and row["alarm"], row  # counts, judged against the scene
    x, y, w, h = row["alarm_region_px"]
    assert x <= 82 and x + w >= 80 and y <= 62 and y + h >= 60
