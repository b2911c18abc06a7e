"""Camera recordings with their own frame times: offline replay, and publishing that drops nothing silently.

A tower-camera-like recording (one frame a minute, files named ``<capture epoch>_<seconds from ignition>.jpg``
as the wildfire ignition library FIgLib names them) is made from the camera simulator: haze all along, a
distant plume from minute 40.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import orjson
import pytest

from engine.config.models import CamerasConfig, IngestConfig, MqttConfig, StoreConfig
from engine.ingest.camera_recording import FrameTimes, RecordingError, recorded_frames
from simulators.camera import visible_frame
from tests.conftest import ROOT, RunnerThread, default_config, wait_for

START = 1_465_065_360  # the ignition; names are <START + offset>_<offset>, offsets from -40 to +40 min


def tower_recording(folder: Path, scene: str = "distant-smoke", minutes: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(-minutes, minutes + 1):
        # seed 1: a plume the shipped model scores above its smoke threshold after JPEG (the benchmark
        # reports every seed; this test is about the replay: times, order, bad files, determinism)
        img = visible_frame(scene, 60.0 * (k + minutes), seed=1, start_s=60.0 * minutes)
        cv2.imwrite(str(folder / f"{START + 60 * k}_{60 * k:+06d}.jpg"), img)
    return folder


def gridwatch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=ROOT)  # fmt: skip


def test_frame_times_from_names_csv_and_interval(tmp_path):
    rec = tower_recording(tmp_path / "tower", minutes=2)
    times = FrameTimes()
    frames = recorded_frames(rec, "T1", "tower", times)
    assert [f.ts - START for f in frames] == [-120.0, -60.0, 0.0, 60.0, 120.0], "capture times, not doubled"
    assert (times.convention, times.ignition) == ("capture_ignition", START)
    figlib = FrameTimes("figlib")
    assert [f.ts for f in recorded_frames(rec, "T1", "tower", figlib)] == [f.ts for f in frames]
    with pytest.raises(RecordingError, match="capture_ignition"):  # a start shared by every name it is not
        recorded_frames(rec, "T1", "tower", FrameTimes("start_offset"))
    csv_file = tmp_path / "times.csv"
    csv_file.write_text("file,ts\n" + "".join(f"{f.path.name},{1000 + k}\n" for k, f in enumerate(frames)))
    assert [f.ts for f in recorded_frames(rec, "T1", "tower", FrameTimes(csv_path=csv_file))] == [
        1000.0, 1001.0, 1002.0, 1003.0, 1004.0,
    ]  # fmt: skip
    by_interval = recorded_frames(rec, "T1", "tower", FrameTimes(start=50.0, interval_s=10.0))
    assert [f.ts for f in by_interval] == [50.0, 60.0, 70.0, 80.0, 90.0]
    (rec / "snapshot.jpg").write_bytes((rec / frames[0].path.name).read_bytes())
    with pytest.raises(RecordingError, match="cannot read capture times"):
        recorded_frames(rec, "T1", "tower", FrameTimes())


def test_names_sharing_a_start_are_start_plus_offset(tmp_path):
    rec = tmp_path / "seq"
    rec.mkdir()
    for k in range(3):
        cv2.imwrite(str(rec / f"1700000000_{30 * k}.jpg"), visible_frame("haze", 0.0))
    times = FrameTimes()
    assert [f.ts for f in recorded_frames(rec, "S", "c", times)] == [1700000000.0, 1700000030.0, 1700000060.0]
    assert (times.convention, times.ignition) == ("start_offset", None)


def test_replay_without_site_and_camera_says_first_what_it_assumed(tmp_path):
    rec = tower_recording(tmp_path / "tower-7", scene="haze", minutes=1)
    res = gridwatch("replay", str(rec), "-c", str(ROOT / "config" / "gridwatch.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr
    first = res.stdout.splitlines()[0]
    assert "site 'replay' camera 'tower-7' (assumed" in first, first
    assert "FIgLib" in first and "ignition at 2016-06-04T18:36:00+00:00" in first, first
    assert "incidents opened before ignition: 0" in " ".join((res.stdout + res.stderr).split())


def test_offline_replay_of_a_tower_recording_finds_the_plume_after_ignition_and_nothing_before(tmp_path):
    rec = tower_recording(tmp_path / "tower")
    (rec / f"{START}_+02430.jpg").write_bytes(b"\xff\xd8 a truncated upload")  # listed, never fatal
    out = tmp_path / "events.jsonl"
    res = gridwatch("replay", str(rec), "--site", "T1", "--camera", "tower", "--times", "epoch_offset",
                    "--out", str(out), "-c", str(ROOT / "config" / "gridwatch.yaml"))  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    said = " ".join((res.stdout + res.stderr).split())
    assert "replayed 81 frames" in said and "1 frame(s) could not be decoded" in said
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    firing = [e for e in events if e["state"] == "firing"]
    assert firing, "the plume opens a fire incident"
    assert min(e["opened_at"] for e in firing) >= START, "no alarm before ignition"
    assert min(e["opened_at"] for e in firing) <= START + 600, "smoke within 10 minutes of ignition"
    again = tmp_path / "again.jsonl"
    gridwatch("replay", str(rec), "--site", "T1", "--camera", "tower", "--out", str(again),
              "-c", str(ROOT / "config" / "gridwatch.yaml"))  # fmt: skip
    assert again.read_bytes() == out.read_bytes(), "deterministic"


def camera_engine(mosquitto, tmp_path, cameras: dict, **overrides) -> RunnerThread:
    """An engine on the test broker with these cameras and no sinks."""
    cfg = default_config(
        mqtt=MqttConfig(url=mosquitto.url, client_id=f"engine-{tmp_path.name}"),
        data_dir=str(tmp_path),
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'gridwatch.db'}"),
        cameras=CamerasConfig.model_validate(cameras),
        sinks=[],
        **overrides,
    )
    return RunnerThread(cfg)


def test_publishing_a_recording_at_its_true_spacing_loses_no_frame(mosquitto, tmp_path):
    rec = tower_recording(tmp_path / "tower", scene="haze", minutes=10)
    cameras = {
        "devices": [{"site": "S01", "id": "tower", "min_interval_s": 0}],
        "queue_frames": 64,
        "detectors": [{"type": "flame_color_motion", "id": "flames"}],
    }
    engine = camera_engine(mosquitto, tmp_path, cameras)
    try:
        res = gridwatch("camera", str(rec), "--site", "S01", "--camera", "tower", "--broker", mosquitto.url,
                        "--no-realtime")  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        assert "published 21 frames" in res.stdout + res.stderr
        assert "dead-lettered" not in res.stdout + res.stderr
        assert wait_for(lambda: engine.runner.cameras.states[0].tracks.get("S01/tower") is not None, 30)
        assert engine.runner.health()["tasks_failing"] == {}, "no background task ended (no sinks: nothing to do)"
    finally:
        engine.stop()


def test_frames_the_engine_refuses_are_reported_and_fail_the_command(mosquitto, tmp_path):
    rec = tower_recording(tmp_path / "tower", scene="haze", minutes=2)
    cameras = {"detectors": [{"type": "flame_color_motion", "id": "flames"}]}
    engine = camera_engine(mosquitto, tmp_path, cameras, ingest=IngestConfig(reject_unknown_sites=True))
    try:
        res = gridwatch("camera", str(rec), "--site", "NOWHERE", "--camera", "tower", "--broker", mosquitto.url,
                        "--no-realtime")  # fmt: skip
    finally:
        engine.stop()
    said = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 1, said
    assert "5 of 5 frames were dead-lettered by the engine (unknown_site: 5)" in said
