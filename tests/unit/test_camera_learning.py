"""Cameras that learn from verdicts: the model's cell outputs, the per-camera head (fit, acceptance, safe
learning), versions, rollback and restart, the thermal hot-spot memory, plume_change's dismissed places, and
the verdict file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.thermal.thermal_hotspot import ThermalHotspot, ThermalHotspotConfig
from detectors.vision.base import Frame, FrameBatch
from detectors.vision.camera_heads import DISMISSED, REAL, Examples, fit_head, logit
from detectors.vision.cell_features import with_cell_outputs
from detectors.vision.plume_change import PlumeChange, PlumeChangeConfig
from detectors.vision.smoke_fire_onnx import SmokeFireOnnx, SmokeFireOnnxConfig
from engine.config.models import CameraLearningConfig
from engine.flow.camera_learning import AlarmFrame, CameraLearning, CameraModel, Verdict, VerdictError
from engine.ingest.verdict_file import VerdictFileError, parse_region, read_verdicts

ROOT = Path(__file__).resolve().parents[2]
FRAMES = ROOT / "tests" / "data" / "frames"
KEY = "S1/cam-1"


@pytest.fixture(scope="module")
def detector() -> SmokeFireOnnx:
    det = SmokeFireOnnx(SmokeFireOnnxConfig(type="smoke_fire_onnx"))
    assert det.enable_cell_outputs() == 192
    return det


def image(name: str) -> np.ndarray:
    img = cv2.imread(str(FRAMES / f"{name}.jpg"))
    assert img is not None
    return img


def alarm(det: SmokeFireOnnx, name: str, label: str) -> AlarmFrame:
    """The frame and the cells where ``label`` reaches its threshold (what a finding's region_cells holds)."""
    img = image(name)
    obs = det.observe(FrameBatch([Frame("S1", "cam-1", 0.0, img)]), det.new_state())[0]
    cells = obs.cells[label]
    marked = np.argwhere(cells >= det.frame_threshold(label))
    assert len(marked), f"the shipped head does not alarm on {name}"
    return AlarmFrame(0.0, img, [obs.cell_box(r, c, cells.shape) for r, c in marked.tolist()], float(cells.max()))


def scores(det: SmokeFireOnnx, name: str) -> dict[str, float]:
    return det.observe(FrameBatch([Frame("S1", "cam-1", 0.0, image(name))]), det.new_state())[0].scores


def test_cell_outputs_leave_the_shipped_outputs_bit_identical() -> None:
    """The features and logits are extra outputs: scores and grid are what the shipped file gives, bit for bit,
    and the logits are the features through the head's last 1x1 convolution."""
    model = onnx.load(str(ROOT / "models" / "smoke_fire.onnx"))
    added = with_cell_outputs(model)
    x = np.random.default_rng(0).random((2, 3, 160, 160), dtype=np.float32)
    before = ort.InferenceSession(str(ROOT / "models" / "smoke_fire.onnx")).run(None, {"image": x})
    after = ort.InferenceSession(added.model).run(None, {"image": x})
    assert [a.tobytes() for a in before] == [b.tobytes() for b in after[:2]]
    assert after[2].shape == (2, 192, 5, 5) and after[3].shape == (2, 2, 5, 5)
    np.testing.assert_allclose(1 / (1 + np.exp(-after[3])), after[1], atol=1e-6)


def synthetic(n_dismissed: int = 40, n_real: int = 10) -> Examples:
    rng = np.random.default_rng(3)
    ex = Examples.empty(8, 2)
    box = np.zeros((1, 4), np.float32)
    feats = rng.random((n_dismissed, 8), np.float32) + np.eye(8, dtype=np.float32)[0] * 2
    logits = np.full((n_dismissed, 2), 4.0, np.float32)
    ex = ex.added(feats, logits, DISMISSED, -1, 100.0, 1, box.repeat(n_dismissed, 0))
    feats = rng.random((n_real, 8), np.float32) + np.eye(8, dtype=np.float32)[1] * 2
    return ex.added(feats, np.full((n_real, 2), 4.0, np.float32), REAL, 1, 100.0, 2, box.repeat(n_real, 0))


def test_fit_is_deterministic_and_meets_both_rules() -> None:
    thr = np.array([0.93, 0.97])
    a = fit_head(synthetic(), thr, 100.0, 1e9, 0.5, 1, "m")
    b = fit_head(synthetic(), thr, 100.0, 1e9, 0.5, 1, "m")
    assert a.head is not None and b.head is not None
    assert a.head.weights.tobytes() == b.head.weights.tobytes() and a.head.bias.tobytes() == b.head.bias.tobytes()
    ex = synthetic()
    z = a.head.correct_rows(ex.logits, ex.features)
    assert (z[ex.kind == REAL, 1] >= logit(0.97)).all()
    assert (z[ex.kind == DISMISSED] < logit(thr) - 0.5).all()


def test_a_confirmed_fire_is_never_outvoted() -> None:
    """Dismissing cells that look exactly like a confirmed one: no head can do both; none is accepted."""
    ex = synthetic()
    same = ex.where(ex.kind == REAL)
    ex = ex.added(same.features, same.logits, DISMISSED, -1, 200.0, 3, same.box)
    fit = fit_head(ex, np.array([0.93, 0.97]), 200.0, 1e9, 0.5, 2, "m")
    assert fit.head is None and "confirmed cells would be missed" in fit.reason


def test_dismissed_scenes_expire_confirmed_ones_do_not() -> None:
    ex = synthetic()
    assert len(ex.live(100.0 + 50, expire_s=10)) == int((ex.kind == REAL).sum())
    assert len(ex.refreshed((0, 0, 1, 1), 150.0).live(155.0, expire_s=10)) == len(ex)


def test_verdicts_learn_roll_back_and_survive_a_restart(detector: SmokeFireOnnx, tmp_path: Path) -> None:
    """A false alarm on the smoke photo quiets it; the fire photo confirmed still alarms; rollback to the
    shipped head and back; a second learner on the same folder gives the same head and the same scores."""
    shipped = scores(detector, "smoke")
    thr = detector.frame_threshold("smoke")
    assert shipped["smoke"] >= thr
    learning = CameraLearning(CameraLearningConfig(max_dismissed_share=1.0), detector, None, tmp_path)
    fire = learning.verdict(Verdict("S1", "cam-1", "fire", 10.0, "ops"), [alarm(detector, "fire", "fire")], False)
    assert fire["learned"] and fire["version"] == 1
    out = learning.verdict(Verdict("S1", "cam-1", "false_alarm", 20.0, "ops"), [alarm(detector, "smoke", "smoke")],
                           False)  # fmt: skip
    assert out["learned"], out["reason"]
    assert out["version"] == 2 and out["refit_s"] < 5.0
    assert scores(detector, "smoke")["smoke"] < thr
    assert scores(detector, "fire")["fire"] >= detector.frame_threshold("fire")
    learned = scores(detector, "smoke")

    assert learning.rollback(KEY, 0, "ops", 30.0)["version"] == 0
    assert scores(detector, "smoke") == shipped
    learning.rollback(KEY, 2, "ops", 40.0)
    assert scores(detector, "smoke") == learned
    with pytest.raises(VerdictError, match="no head version 7"):
        learning.rollback(KEY, 7, "ops", 50.0)

    # learning is deterministic: the same verdicts from scratch give the same head, bit for bit
    first = learning.cameras[KEY].head()
    detector.heads.clear()
    redo = CameraLearning(CameraLearningConfig(max_dismissed_share=1.0), detector, None, None)
    redo.verdict(Verdict("S1", "cam-1", "fire", 10.0, "ops"), [alarm(detector, "fire", "fire")], False)
    redo.verdict(Verdict("S1", "cam-1", "false_alarm", 20.0, "ops"), [alarm(detector, "smoke", "smoke")], False)
    second = redo.cameras[KEY].head()
    assert first is not None and second is not None
    assert first.weights.tobytes() == second.weights.tobytes() and first.bias.tobytes() == second.bias.tobytes()
    detector.heads.clear()
    again = CameraLearning(CameraLearningConfig(), detector, None, tmp_path)
    assert again.status(KEY)["version"] == 2
    assert scores(detector, "smoke") == learned
    assert [h["version"] for h in again.status(KEY)["versions"]] == [1, 2]
    # the dismissed scene expires (data time): refit on what is left, the confirmed fire
    changed = again.expire(20.0 + CameraLearningConfig().dismissed_expire_s)
    assert [c["camera"] for c in changed] == [KEY] and again.status(KEY)["examples"]["dismissed"] == 0
    assert again.status(KEY)["version"] == 3 and again.expire(1e12) == []
    detector.heads.clear()


def test_a_dismissed_region_over_the_bound_is_refused(detector: SmokeFireOnnx) -> None:
    learning = CameraLearning(CameraLearningConfig(max_dismissed_share=0.25), detector, None, None)
    frame = AlarmFrame(0.0, image("smoke"), [])
    with pytest.raises(VerdictError, match=r"covers 64% of the frame.*max_dismissed_share"):
        learning.verdict(Verdict("S1", "cam-1", "false_alarm", 1.0, region=(0.1, 0.1, 0.8, 0.8)), [frame], False)
    with pytest.raises(VerdictError, match="no frame"):
        learning.verdict(Verdict("S1", "cam-1", "false_alarm", 1.0, region=(0.1, 0.1, 0.1, 0.1)), [], False)
    assert KEY not in detector.heads


def test_a_dismissed_hot_spot_is_quiet_at_that_time_of_day_unless_hotter() -> None:
    det = ThermalHotspot(ThermalHotspotConfig(type="thermal_hotspot", confirm_k=1, confirm_n=1, scene_memory=False))
    learning = CameraLearning(CameraLearningConfig(), None, det, None)
    roof = np.full((120, 160), 20.0, np.float32)
    roof[40:60, 40:60] = 70.0  # a roof the afternoon sun heats
    t = 1_700_000_000.0  # a day's 22:13 UTC
    first = det.observe(FrameBatch([Frame("S1", "ir-1", t, roof)]), det.new_state())[0]
    assert first.scores["fire"] >= 1.0
    box = (0.2, 0.3, 0.2, 0.2)
    learning.verdict(Verdict("S1", "ir-1", "false_alarm", t, region=box),
                     [AlarmFrame(t, roof, [box], first.scores["fire"])], True)  # fmt: skip

    def judged(ts: float, img: np.ndarray) -> float | None:
        found = det.process(FrameBatch([Frame("S1", "ir-1", ts, img)]), det.new_state())
        return found[0].score if found else None

    assert judged(t + 86400 + 600, roof) is None  # the next day, ten minutes later: quiet
    assert judged(t + 86400 + 6 * 3600, roof) is not None  # another time of day: it alarms
    hotter = roof.copy()
    hotter[45:55, 45:55] = 150.0
    assert judged(t + 86400, hotter) is not None  # a fire on the roof: it alarms


def test_verdict_file(tmp_path: Path) -> None:
    good = tmp_path / "v.csv"
    good.write_text("ts,camera,verdict,region\n1700000060,T1/tower,false alarm,0.1 0.2 0.3 0.4\n"
                    "2023-11-14T22:13:20+00:00,tower,smoke,\n")  # fmt: skip
    rows = read_verdicts(good, "T9")
    assert [(r.ts, r.site, r.camera, r.verdict, r.region) for r in rows] == [
        (1700000000.0, "T9", "tower", "smoke", None),
        (1700000060.0, "T1", "tower", "false_alarm", (0.1, 0.2, 0.3, 0.4)),
    ]
    bad = tmp_path / "v.jsonl"
    bad.write_text('{"ts": 1, "camera": "a/b", "verdict": "fire"}\n{"ts": 2, "camera": "a/b", "verdict": "maybe"}\n')
    with pytest.raises(VerdictFileError, match=r"v.jsonl:2: verdict 'maybe': one of false_alarm, fire, smoke"):
        read_verdicts(bad)
    bad.write_text('{"ts": 1, "camera": "a/b", "verdict": "fire", "region": [0.5, 0.5, 0.6, 0.1]}\n')
    with pytest.raises(VerdictFileError, match="reaches past the frame's edge"):
        read_verdicts(bad)


@given(st.lists(st.one_of(st.floats(allow_nan=True), st.text(max_size=6)), max_size=6) | st.text(max_size=30))
def test_parse_region_takes_four_fractions_or_says_why(value: object) -> None:
    try:
        got = parse_region(value)
    except ValueError as exc:
        assert "region" in str(exc)
        return
    if got is not None:
        x, y, w, h = got
        assert 0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0 and x + w <= 1 + 1e-6 and y + h <= 1 + 1e-6


def test_the_api_takes_an_operator_s_verdict_and_rollback(tmp_path: Path) -> None:
    """A camera finding through the camera stage (snapshot and frame on disk) into the store; a viewer may not
    judge it, a region over the bound is refused with the reason, an operator's false alarm is learned and
    written in the audit trail; the camera's version shows and rolls back."""
    from fastapi.testclient import TestClient

    from engine import metrics
    from engine.api.auth import TokenAuth
    from engine.api.server import create_app
    from engine.api.verdicts import StageLearner, verdicts_router
    from engine.config.models import ApiToken, EngineConfig
    from engine.flow.cameras import CameraStage
    from engine.incidents.tracker import IncidentPolicy, IncidentTracker
    from engine.store.store import Notification, Store

    spec = {"type": "smoke_fire_onnx", "confirm_k": 1, "confirm_n": 1, "scene_memory": False}
    cfg = EngineConfig.model_validate({"cameras": {"detectors": [spec]}})
    stage = CameraStage(cfg, tmp_path / "snapshots", tmp_path / "heads")
    found = stage.step([Frame("S1", "cam-1", 100.0, image("smoke"))])
    assert found and (tmp_path / "snapshots" / "S1" / "cam-1" / "100000.frame.jpg").is_file()
    store = Store(f"sqlite:///{tmp_path / 'gridwatch.db'}")
    store.migrate()
    tracker = IncidentTracker(IncidentPolicy(emit_pending=True))
    events = [e for f in found for e in tracker.observe(f)]
    store.record([Notification(e, 100.0, False, {}) for e in events], [])
    incident = events[0]["incident_id"]
    tokens = [ApiToken(name="ops", token="o" * 20, role="operator"), ApiToken(name="eyes", token="v" * 20)]
    stage.alarm_frames.clear()  # as after a restart: the frame comes from disk
    app = create_app(lambda: {"ok": True}, routers=(verdicts_router(store, lambda: StageLearner(stage),
                                                                     TokenAuth(tokens), lambda: 200.0),))  # fmt: skip
    client = TestClient(app)
    ops, eyes = {"Authorization": "Bearer " + "o" * 20}, {"Authorization": "Bearer " + "v" * 20}
    url = f"/api/incidents/{incident}/verdict"
    assert client.post(url, json={"verdict": "false_alarm"}, headers=eyes).status_code == 403
    big = client.post(url, json={"verdict": "false_alarm", "region": [0, 0, 0.9, 0.9]}, headers=ops)
    assert big.status_code == 422 and "max_dismissed_share" in big.json()["detail"]
    assert client.post(url, json={"verdict": "maybe"}, headers=ops).status_code == 422
    done = client.post(url, json={"verdict": "false_alarm", "region": [0.3, 0.3, 0.3, 0.3], "comment": "steam"},
                       headers=ops)  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json()["learned"] and done.json()["version"] == 1
    counted = metrics.REGISTRY.get_sample_value
    assert (counted("gridwatch_camera_verdicts_total", {"verdict": "false_alarm", "outcome": "refused"}) or 0) >= 1
    assert (counted("gridwatch_camera_verdicts_total", {"verdict": "false_alarm", "outcome": "learned"}) or 0) >= 1
    audit = store.incident(incident)["audit"]  # type: ignore[index]
    assert audit[-1]["action"] == "verdict" and audit[-1]["actor"] == "ops"
    assert audit[-1]["detail"]["verdict"] == "false_alarm" and audit[-1]["detail"]["version"] == 1
    status = client.get("/api/cameras/S1/cam-1/learning", headers=eyes).json()
    assert status["version"] == 1 and status["examples"]["dismissed"] > 0
    assert client.post("/api/cameras/S1/cam-1/rollback", json={"version": 0}, headers=eyes).status_code == 403
    back = client.post("/api/cameras/S1/cam-1/rollback", json={"version": 0}, headers=ops)
    assert back.status_code == 200 and back.json()["version"] == 0


def test_cli_replays_verdicts_and_scores_and_tunes_with_a_learned_head(detector: SmokeFireOnnx, tmp_path: Path) -> None:
    """`replay FOLDER --verdicts FILE` applies them (and names a bad row); `score --head` and `tune --head`
    score with a camera's learned head."""
    import json

    from typer.testing import CliRunner

    from engine.cli import app

    learning = CameraLearning(CameraLearningConfig(), detector, None, tmp_path / "heads")
    learning.verdict(Verdict("S1", "cam-1", "false_alarm", 1.0, region=(0.3, 0.3, 0.3, 0.3)),
                     [AlarmFrame(0.0, image("smoke"), [])], False)  # fmt: skip
    detector.heads.clear()
    head = tmp_path / "heads" / "S1" / "cam-1"
    run = CliRunner().invoke
    photo = str(FRAMES / "smoke.jpg")

    def smoke(args: list[str]) -> float:
        res = run(app, ["score", photo, "--detector", "smoke_fire_onnx", "--json", *args])
        assert res.exit_code == 0, res.output
        return float(next(json.loads(x) for x in res.output.splitlines() if '"smoke"' in x)["score"])

    assert smoke(["--head", str(head)]) < smoke([])
    assert smoke(["--head", str(head), "--head-version", "0"]) == smoke([])
    bad = run(app, ["score", photo, "--detector", "smoke_fire_onnx", "--head", str(tmp_path)])
    assert bad.exit_code == 2 and "not a camera's learned heads" in " ".join(bad.output.split())
    tuned = run(app, ["tune", "--detector", "smoke-fire-model", "--data", str(FRAMES), "--truth",
                      str(FRAMES / "truth.csv"), "--sweep", "thresholds.smoke=0.5:1.0:0.5", "--level", "smoke",
                      "--out", str(tmp_path / "tune"), "--workers", "1", "--head", str(head),
                      "-c", str(ROOT / "config" / "gridwatch.yaml")])  # fmt: skip
    assert tuned.exit_code == 0, tuned.output

    rec = tmp_path / "rec" / "T1" / "tower"
    rec.mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(rec / f"{1_700_000_000_000 + 60_000 * k}.jpg"), image("smoke"))
    verdicts = tmp_path / "verdicts.csv"
    verdicts.write_text("ts,camera,verdict,region\n1700000060,T1/tower,false_alarm,0.3 0.3 0.3 0.3\n")
    args = ["replay", str(tmp_path / "rec"), "--times", "epoch_ms", "--verdicts", str(verdicts)]
    done = run(app, args)
    assert done.exit_code == 0, done.output
    assert "verdict false_alarm on T1/tower at 2023-11-14T22:14:20+00:00" in " ".join(done.output.split())
    verdicts.write_text("ts,camera,verdict\n1700000060,T1/tower,perhaps\n")
    refused = run(app, args)
    assert refused.exit_code == 2 and "verdicts.csv:2: verdict 'perhaps'" in " ".join(refused.output.split())


def test_a_thermal_verdict_after_a_restart_needs_only_the_finding(tmp_path: Path) -> None:
    """A hot spot is learned from where, when and how hot (the stored finding): no frame needs to be kept; a
    second stage on the same folder has the camera's hot-spot memory."""
    from engine.config.models import EngineConfig
    from engine.flow.cameras import CameraStage

    cfg = EngineConfig.model_validate({"cameras": {
        "devices": [{"site": "S1", "id": "ir-1", "kind": "thermal"}],
        "detectors": [{"type": "thermal_hotspot"}],
    }})  # fmt: skip
    stage = CameraStage(cfg, None, tmp_path)
    finding = {"device": "ir-1", "ts": 1_700_000_000.0, "score": 1.3, "evidence": {"region": [0.2, 0.3, 0.2, 0.2]}}
    out = stage.verdict(Verdict("S1", "ir-1", "false_alarm", 1_700_000_100.0, "ops"), [finding])
    assert out["kind"] == "thermal" and out["hot_spots"] == 1
    with pytest.raises(VerdictError, match="sees heat, not smoke"):  # the page offers no "real smoke" there
        stage.verdict(Verdict("S1", "ir-1", "smoke", 1_700_000_100.0, "ops"), [finding])
    again = CameraStage(cfg, None, tmp_path)
    (heat,) = again.detectors
    assert isinstance(heat, ThermalHotspot)
    (spot,) = heat.dismissed["S1/ir-1"]
    assert spot.region == (0.2, 0.3, 0.2, 0.2) and spot.score == 1.3 and spot.time_of_day == 1_700_000_000.0 % 86400


def test_a_verdict_restarts_the_held_alarm_on_the_stage_s_own_thread(tmp_path: Path) -> None:
    """A verdict comes on the API's thread while the stage's thread may be updating the camera's track (a
    cleared deque under a detector's loop over it fails that detector's whole batch): the verdict leaves the
    track to the stage, which restarts the held alarm at its next step."""
    from engine.config.models import EngineConfig
    from engine.flow.cameras import CameraStage

    cfg = EngineConfig.model_validate({"cameras": {
        "devices": [{"site": "S1", "id": "ir-1", "kind": "thermal"}],
        "detectors": [{"type": "thermal_hotspot"}],
    }})  # fmt: skip
    stage = CameraStage(cfg, None, tmp_path)
    track = stage.states[0].track("S1/ir-1")
    track.level, track.quiet = 2, 1
    track.recent.extend([(1.3, (0.2, 0.3, 0.2, 0.2))] * 3)
    finding = {"device": "ir-1", "ts": 1_700_000_000.0, "score": 1.3, "evidence": {"region": [0.2, 0.3, 0.2, 0.2]}}
    out = stage.verdict(Verdict("S1", "ir-1", "false_alarm", 1_700_000_100.0, "ops"), [finding])
    assert out["learned"]
    assert track.level == 2 and len(track.recent) == 3  # untouched by the verdict's thread
    cold = np.full((60, 80), 20.0, np.float32)
    stage.step([Frame("S1", "ir-1", 1_700_000_200.0, cold)])
    assert track.level == 0 and len(track.recent) == 1 and track.recent[0][0] == 0.0


@pytest.mark.parametrize(("heads", "examples"), [("[]", None), ('{"current": 0}', b"PK\x03\x04truncated")])
def test_a_damaged_camera_folder_leaves_that_camera_on_the_shipped_head(tmp_path: Path, heads: str,
                                                                        examples: bytes | None) -> None:  # fmt: skip
    """A heads.json that is not an object, or an examples.npz cut short (a disk that filled, a copy by hand),
    costs that camera its learning, never the engine's start."""
    folder = tmp_path / "S1" / "cam-1"
    folder.mkdir(parents=True)
    (folder / "heads.json").write_text(heads)
    if examples is not None:
        (folder / "examples.npz").write_bytes(examples)
    learning = CameraLearning(CameraLearningConfig(), None, None, tmp_path)
    assert learning.cameras == {} and learning.status(KEY)["version"] == 0


def test_a_learned_head_that_cannot_be_saved_stops_nothing(detector: SmokeFireOnnx, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """A disk that is full or read-only (here: a file where the folder goes) costs the copy on disk: the verdict
    is learned, and the expiry on the camera stage's thread (which saves too) does not fail every frame."""
    blocked = tmp_path / "camera_heads"
    blocked.write_text("a file where the folder goes")
    learning = CameraLearning(CameraLearningConfig(max_dismissed_share=1.0), detector, None, blocked)
    try:
        out = learning.verdict(Verdict("S1", "cam-1", "false_alarm", 20.0, "ops"),
                               [alarm(detector, "smoke", "smoke")], False)  # fmt: skip
        assert out["learned"] and out["version"] == 1
        changed = learning.expire(20.0 + CameraLearningConfig().dismissed_expire_s)
        assert [c["camera"] for c in changed] == [KEY] and learning.status(KEY)["version"] == 0
        assert "cannot save the camera's learned head" in caplog.text
    finally:
        detector.heads.clear()


def test_alarm_frames_held_for_verdicts_stay_within_their_memory_bound(tmp_path: Path) -> None:
    """Each alarming camera's latest frames are held for a verdict: at tower size (3072x2048) 64 cameras' would
    be 4.8 GB, so the oldest cameras' go first past ALARM_FRAME_BYTES (a verdict then reads the kept frame)."""
    from engine.config.models import EngineConfig
    from engine.core.findings import Finding
    from engine.core.levels import Level
    from engine.flow.cameras import ALARM_FRAME_BYTES, CameraStage

    cfg = EngineConfig.model_validate({"cameras": {"detectors": [{"type": "thermal_hotspot"}]}})
    stage = CameraStage(cfg, None, tmp_path)
    tower = np.broadcast_to(np.zeros(3, np.uint8), (2048, 3072, 3))  # 18.9 MB as the stage counts it, none held
    for c in range(40):
        for k in range(4):
            frame = Frame("S1", f"cam-{c}", float(k), tower)
            found = Finding("smoke_fire_onnx", "fire", "S1", f"cam-{c}", float(k), Level.YELLOW, 0.9,
                            {"region": [0.1, 0.1, 0.2, 0.2]})  # fmt: skip
            stage._hold_alarm_frame(frame, found)
    held = sum(a.image.nbytes for q in stage.alarm_frames.values() for a in q)
    assert held <= ALARM_FRAME_BYTES and "S1/cam-39" in stage.alarm_frames and "S1/cam-0" not in stage.alarm_frames


# plume_change's dismissed places: a small, fast tower stream (640x360 seen whole) on a real background


TOWER = ROOT / "tests" / "data" / "tower" / "background.jpg"
SMALL = (640, 360)
CHIMNEY, ELSEWHERE = (170, 250), (470, 275)  # where the recurring steam and the later plume start (pixels)
CHANGE = {"type": "plume_change", "id": "plume-change", "min_width": 640, "width": 640, "half_evidence_px": 20}


def tower_stream(minutes: int, plume_from: int | None = None) -> list[np.ndarray]:
    """One frame a minute (light drifting, noise, a little sway, JPEG): a chimney's steam at the same place for 8
    minutes every 20 from minute 5 (the recurring nuisance), and from ``plume_from`` a plume elsewhere."""
    tower = cv2.imread(str(TOWER))
    assert tower is not None
    bg = cv2.resize(tower, SMALL, interpolation=cv2.INTER_AREA).astype(np.float32)
    rng = np.random.default_rng(3)

    def column(alpha: np.ndarray, x: int, y: int, age: float) -> None:
        for z in np.linspace(0.0, 4.0 * age**0.8, 12):
            cv2.circle(alpha, (round(x + 0.3 * z), round(y - z)), max(1, round(1 + 0.25 * z)), 1.0, -1)

    out: list[np.ndarray] = []
    for k in range(minutes):
        img = bg * (1.0 + 0.03 * np.sin(k / 3.0)) + rng.normal(0, 2.0, bg.shape)
        alpha = np.zeros(bg.shape[:2], np.float32)
        if k >= 5 and (k - 5) % 20 < 8:
            column(alpha, *CHIMNEY, (k - 5) % 20 + 1)
        if plume_from is not None and k > plume_from:
            column(alpha, *ELSEWHERE, k - plume_from)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0) * 0.5
        img = img * (1 - alpha[..., None]) + 215.0 * alpha[..., None]
        dx, dy = rng.normal(0, 0.6, 2)
        img = cv2.warpAffine(img, np.array([[1, 0, dx], [0, 1, dy]], np.float32), SMALL, borderMode=cv2.BORDER_REFLECT)
        jpeg = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        out.append(np.asarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)))
    return out


def where(region: list[float]) -> str:
    """Which place a finding's region is at: the chimney, the plume elsewhere, or neither."""
    x, y, w, h = region
    for name, (px, py) in (("chimney", CHIMNEY), ("elsewhere", ELSEWHERE)):
        if x - 0.02 <= px / SMALL[0] <= x + w + 0.02 and y - 0.02 <= py / SMALL[1] <= y + h + 0.04:
            return name
    return "neither"


def test_a_false_alarm_on_a_recurring_change_quiets_that_place_only_and_survives_a_restart(tmp_path: Path) -> None:
    """plume_change alarms on a chimney's steam every time it comes; after one false-alarm verdict (the held
    alarm frames, plume_change's: its dismissed places, no model cells needed) the next episode is quiet while
    a plume starting elsewhere in the same camera alarms within minutes; a restart keeps the dismissal."""
    from engine.config.models import EngineConfig
    from engine.flow.cameras import CameraStage

    cfg = EngineConfig.model_validate({"cameras": {"detectors": [CHANGE]}})
    stage = CameraStage(cfg, None, tmp_path)
    frames = tower_stream(44, plume_from=33)
    seen: dict[int, str] = {}

    def play(minutes: range, on: CameraStage) -> None:
        for k in minutes:
            for f in on.step([Frame("S1", "cam-1", 60.0 * k, frames[k])]):
                seen[k] = where(f.evidence["region"])

    play(range(14), stage)
    assert set(seen.values()) == {"chimney"} and min(seen) <= 12, seen  # the first episode alarms
    out = stage.verdict(Verdict("S1", "cam-1", "false_alarm", 60.0 * 14, "ops"))
    assert out["learned"] and out["dismissed_places"] == 1 and out["version"] == 0, out
    assert out["taught"] == ["plume-change: a change at 1 place no longer counts"] and "cells" not in out
    assert stage.learning is not None and stage.learning.status(KEY)["dismissed_places"] == 1
    seen.clear()
    play(range(14, 33), stage)
    assert seen == {}, f"the dismissed steam alarmed again: {seen}"  # the second episode (25-32) is quiet

    again = CameraStage(cfg, None, tmp_path)  # a restart: the place is read back from the camera's files
    (change,) = again.detectors
    assert isinstance(change, PlumeChange) and [p.region for p in change.dismissed[KEY]] == [
        p.region for p in stage.learning.cameras[KEY].places
    ]
    again.states = stage.states  # (the scene's reference goes on: a short test)
    play(range(33, 44), again)
    assert seen and set(seen.values()) == {"elsewhere"} and min(seen) - 33 <= 10, seen


def test_dismissed_places_expire_and_a_confirmed_smoke_lifts_them() -> None:
    """The dismissal holds ``dismissed_expire_s``: after it the steam alarms again; a "smoke" verdict on the
    place lifts it at once; an old record without places still reads."""
    frames = tower_stream(33)

    def episodes(expire_s: float, smoke_at: int | None) -> tuple[list[int], CameraLearning]:
        det = PlumeChange(PlumeChangeConfig.model_validate(CHANGE))
        learning = CameraLearning(CameraLearningConfig(dismissed_expire_s=expire_s), None, None, None, det)
        state = det.new_state()
        alarms: list[int] = []
        held: list[AlarmFrame] = []  # the alarm's frames, newest first
        for k, img in enumerate(frames):
            if k == 14:
                assert alarms, "the first episode alarms"
                learning.verdict(Verdict("S1", "cam-1", "false_alarm", 60.0 * k), held, False)
                alarms = []
            if k == smoke_at:
                learning.verdict(Verdict("S1", "cam-1", "smoke", 60.0 * k, region=held[0].boxes[0]), held, False)
            for f in det.process(FrameBatch([Frame("S1", "cam-1", 60.0 * k, img)]), state):
                alarms.append(k)
                held.insert(0, AlarmFrame(f.ts, img, [tuple(f.evidence["region"])], f.score, "smoke", det.name))
        return alarms, learning

    kept, _ = episodes(3600.0, None)
    assert kept == []  # the control: the second episode (25-32) stays quiet for an hour's dismissal
    expired, learning = episodes(600.0, None)  # dismissed at minute 14 for 10 minutes
    assert expired and min(expired) >= 25, expired
    assert learning.status(KEY)["dismissed_places"] == 1
    assert learning.expire(60.0 * 24) != [] and learning.status(KEY)["dismissed_places"] == 0
    lifted, learning = episodes(3600.0, 20)
    assert lifted and min(lifted) >= 25 and learning.status(KEY)["dismissed_places"] == 0, lifted
    assert learning.cameras[KEY].log[-1]["taught"] == ["plume-change: 1 dismissed place(s) lifted"]
    old = CameraLearning(CameraLearningConfig(), None, None, None)
    doc, _ = learning.cameras[KEY].record()
    assert CameraModel.from_record({k: v for k, v in doc.items() if k != "places"}, None).places == []
    assert old.status(KEY)["dismissed_places"] == 0


def test_an_incident_of_both_the_model_and_plume_change_teaches_each_its_own(detector: SmokeFireOnnx) -> None:
    """The smoke model's frames refit its head on their cells, plume_change's frames dismiss their place; a
    verdict on plume_change's finding alone refits nothing (no cells) and says what it taught."""
    change = PlumeChange(PlumeChangeConfig.model_validate(CHANGE))
    learning = CameraLearning(CameraLearningConfig(max_dismissed_share=1.0), detector, None, None, change)
    model = alarm(detector, "smoke", "smoke")
    model.detector = detector.name
    place = AlarmFrame(0.0, image("smoke"), [(0.1, 0.6, 0.02, 0.05)], 0.9, "smoke", change.name)
    try:
        only = learning.verdict(Verdict("S1", "cam-1", "false_alarm", 10.0), [place], False)
        assert only["learned"] and only["version"] == 0 and only["dismissed_places"] == 1
        assert KEY not in detector.heads and learning.cameras[KEY].examples is None
        both = learning.verdict(Verdict("S1", "cam-2", "false_alarm", 20.0), [place, model], False)
        assert both["learned"] and both["version"] == 1 and both["examples"]["dismissed"] > 0, both
        assert both["dismissed_places"] == 1 and len(both["taught"]) == 2
        assert [p.region for p in change.dismissed["S1/cam-2"]] == [(0.1, 0.6, 0.02, 0.05)]
        assert scores(detector, "smoke")["smoke"] < detector.frame_threshold("smoke") or "S1/cam-2" in detector.heads
    finally:
        detector.heads.clear()
