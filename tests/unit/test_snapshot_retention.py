"""The camera stage's files on disk within cameras.snapshot_quota_mb and snapshot_retention_days: the oldest
go first, never one an open incident still shows; a restart counts what is there."""

from __future__ import annotations

from pathlib import Path

import cv2

from detectors.vision.base import Frame
from engine import metrics
from engine.config.models import EngineConfig
from engine.flow.cameras import CameraStage
from engine.flow.snapshot_retention import SnapshotRetention, held_snapshots
from engine.incidents.tracker import IncidentPolicy, IncidentTracker

FRAMES = Path(__file__).resolve().parents[2] / "tests" / "data" / "frames"
DAY = 86400.0


def pruned(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("gridwatch_camera_snapshots_pruned_total", {"reason": reason}) or 0.0


def write(root: Path, rel: str, size: int = 100) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff" * size)
    return path


def on_disk(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_past_the_quota_the_oldest_go_but_not_a_held_one(tmp_path: Path) -> None:
    r = SnapshotRetention(tmp_path, quota_bytes=1000, max_age_s=30 * DAY)
    names = []
    for i in range(20):  # two cameras, alternating, 100 bytes each: twice the quota
        rel = f"S1/cam-{i % 2}/{1_000_000 + i * 1000}.jpg"
        r.kept(write(tmp_path, rel), 100)
        names.append(rel)
    write(tmp_path, "S1/cam-0/notes.txt")  # not the stage's: never counted, never deleted
    held = {names[0], names[3]}  # an open incident still shows these two
    before = pruned("quota")
    gone = r.prune(1_020.0, held)
    assert gone == [n for n in names[:12] if n not in held]  # oldest first, until within the quota
    assert on_disk(tmp_path) == set(names[12:]) | held | {"S1/cam-0/notes.txt"}
    assert r.bytes == 1000 and metrics.REGISTRY.get_sample_value("gridwatch_camera_snapshot_bytes") == 1000
    assert pruned("quota") - before == 10
    assert r.prune(1_020.0, held) == []  # nothing more to do
    # once the incident closes, its files are the oldest and go first
    r.kept(write(tmp_path, "S1/cam-0/1030000.frame.jpg"), 100)
    assert r.prune(1_030.0, set()) == [names[0]]
    # a restart counts what is on disk, and goes on from there
    again = SnapshotRetention(tmp_path, quota_bytes=500, max_age_s=30 * DAY)
    assert again.bytes == 1000
    assert again.prune(1_030.0) == [names[3], *names[12:16]]
    assert again.bytes == 500 and "S1/cam-0/notes.txt" in on_disk(tmp_path)


def test_older_than_the_retention_go_even_within_the_quota(tmp_path: Path) -> None:
    r = SnapshotRetention(tmp_path, quota_bytes=10**9, max_age_s=DAY)
    old, held, fresh = "S1/cam-1/1000.jpg", "S1/cam-1/2000.frame.jpg", f"S1/cam-1/{round(DAY * 1000)}.jpg"
    for rel in (old, held, fresh):
        r.kept(write(tmp_path, rel), 100)
    before = pruned("age")
    assert r.prune(DAY + 10.0, {held}) == [old]
    assert on_disk(tmp_path) == {held, fresh} and pruned("age") - before == 1


def test_the_camera_stage_keeps_its_files_within_the_quota_and_an_open_incident_s(tmp_path: Path) -> None:
    """Alarm frames through the camera stage: snapshot and kept frame written and counted; over the quota the
    oldest go, but the open incident's snapshot and its frame stay (a verdict learns from that frame)."""
    spec = {"type": "smoke_fire_onnx", "confirm_k": 1, "confirm_n": 1, "scene_memory": False}
    cfg = EngineConfig.model_validate({"cameras": {"detectors": [spec], "snapshot_quota_mb": 0.001}})
    stage = CameraStage(cfg, tmp_path, None)
    smoke = cv2.imread(str(FRAMES / "smoke.jpg"))
    assert smoke is not None
    tracker = IncidentTracker(IncidentPolicy(emit_pending=True))
    found = stage.step([Frame("S1", "cam-1", 100.0, smoke)])
    for f in found:
        tracker.observe(f)
    first = {"S1/cam-1/100000.jpg", "S1/cam-1/100000.frame.jpg"}
    assert on_disk(tmp_path) == first and stage.retention is not None
    assert stage.retention.bytes == sum((tmp_path / rel).stat().st_size for rel in first) > 1000
    held = held_snapshots(tracker.open.values())
    assert held == first
    assert stage.prune(100.0, held) == []  # over the quota, but the open incident shows them
    # another camera's alarm: its older files go, the incident's stay
    for ts in (130.0, 131.0):
        stage.step([Frame("S1", "cam-2", ts, smoke)])
    newest = (tmp_path / "S1/cam-2/131000.jpg").stat().st_size
    stage.retention.quota_bytes = stage.retention.bytes - sum((tmp_path / f"S1/cam-2/130000{x}").stat().st_size
                                                              for x in (".jpg", ".frame.jpg"))  # fmt: skip
    assert stage.retention.quota_bytes == sum((tmp_path / rel).stat().st_size for rel in first) + newest
    assert stage.prune(131.0, held) == ["S1/cam-2/130000.frame.jpg", "S1/cam-2/130000.jpg"]
    assert on_disk(tmp_path) == first | {"S1/cam-2/131000.jpg"}
