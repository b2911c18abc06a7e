"""The Faust worker's stages without a broker: records in, findings and store rows out.

The topics and the table are replaced by recorders; the detectors, the incident tracker, dispatch and
the store (SQLite) are the real ones. The scale-out runner on a real broker is in
tests/integration/test_faust_runner.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest

from engine.config.models import ApiConfig, KafkaConfig, StoreConfig
from engine.runners.faust_app import GridwatchWorker
from engine.runners.records import encode_readings, partition_of
from engine.store.store import Store
from tests.conftest import default_config

BASE = 1_700_000_000.0


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Event:
    """What a Faust stream hands an agent: the value and the message it came in."""

    value: bytes
    message: Message
    key: bytes | None = None


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(
        self, key: bytes | None = None, value: bytes = b"", partition: int | None = None
    ) -> asyncio.Future[None]:
        """Like ``faust.Topic.send``: the record is queued; the returned future is its acknowledgement."""
        self.sent.append({"key": key, "value": value, "partition": partition})
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def make_worker(tmp_path, **overrides: Any) -> GridwatchWorker:
    cfg = default_config(
        **{
            "data_dir": str(tmp_path / "data"),
            "store": StoreConfig(url=f"sqlite:///{tmp_path / 'gw.db'}"),
            "api": ApiConfig(enabled=False),
            "inhibit": [],
            "kafka": KafkaConfig(partitions=2),
            **overrides,
        }
    )
    worker = GridwatchWorker(cfg)
    worker.findings_topic = Recorder()  # type: ignore[assignment]
    worker.deadletter_topic = Recorder()  # type: ignore[assignment]
    worker.state_table = {}  # type: ignore[assignment]
    worker._sink_names = ["log"]
    return worker


def readings_events(rows: list[tuple[float, str, str, str, float]], partitions: int, start: int = 0) -> list[Any]:
    events: list[Any] = []
    for offset, (ts, site, device, metric, value) in enumerate(rows, start):
        p = partition_of(site, partitions)
        value_ = encode_readings(site, [(device, ts, metric, value)])
        events.append(Event(value_, Message("gridwatch.readings", p, offset, site.encode()), site.encode()))
    return events


def storm(hours: int = 40) -> list[tuple[float, str, str, str, float]]:
    from simulators.scenario import load_scenario

    rows = load_scenario("storm-over-slope").readings(base_ts=BASE)
    return [r for r in rows if r[0] < BASE + hours * 3600]


def test_a_record_that_is_not_a_readings_record_is_dead_lettered_and_the_rest_goes_on(tmp_path):
    worker = make_worker(tmp_path)
    good = readings_events(storm(2), 2)
    poison: Any = Event(b"\xff not json", Message("gridwatch.readings", 0, 999, b"S01"), b"S01")
    asyncio.run(worker.detect([*good[:5], poison, *good[5:]]))
    dead = [orjson.loads(d["value"]) for d in worker.deadletter_topic.sent]  # type: ignore[attr-defined]
    assert [(d["reason"], d["offset"]) for d in dead] == [("bad_record", 999)]
    assert worker.readings == len(good)


def test_a_detector_that_raises_costs_only_its_own_findings_and_never_refeeds_the_others(tmp_path, monkeypatch):
    """One detector raises on the batches holding site S03: those records are dead-lettered naming it, and
    every other detector's findings are exactly those of a run without the failure (nothing applied twice:
    the old record-by-record retry re-fed readings and device_health called a whole partition faulty)."""
    events = readings_events(storm(), 2)
    clean = make_worker(tmp_path / "clean")
    asyncio.run(clean.detect(events))
    worker = make_worker(tmp_path / "failing")
    failing_name = worker._detecting(0).pipeline.detectors[-1].name

    def fail_on_s03(pipeline):
        det = pipeline.detectors[-1]
        original = det.process

        def process(batch, state):
            sites = {batch.devices.site_of_slot(int(s)) for s in np.unique(batch.slot)}
            if "S03" in sites:
                raise RuntimeError("detector bug")
            return original(batch, state)

        monkeypatch.setattr(det, "process", process)

    for p in (0, 1):
        fail_on_s03(worker._detecting(p).pipeline)
    asyncio.run(worker.detect(events))
    dead = [orjson.loads(d["value"]) for d in worker.deadletter_topic.sent]  # type: ignore[attr-defined]
    assert dead and {d["reason"] for d in dead} == {"detector_error"}
    assert all(failing_name in d["detail"] for d in dead)
    s03 = {e.message.offset for e in events if e.key == b"S03"}
    assert s03 <= {d["offset"] for d in dead}, "every record of a failing batch is named"

    def others(w) -> list:
        found = [f for s in w.findings_topic.sent for f in orjson.loads(s["value"])["findings"]]
        return sorted(orjson.dumps(f, option=orjson.OPT_SORT_KEYS) for f in found if f["detector"] != failing_name)

    assert others(worker) == others(clean) and others(clean), "the other detectors' findings are exact"


def test_replayed_readings_are_not_applied_twice(tmp_path):
    """A worker restarted from the table's state gets readings it already applied: they are dropped."""
    first = make_worker(tmp_path)
    events = readings_events(storm(), 2)
    asyncio.run(first.detect(events))
    sent: list[dict[str, Any]] = first.findings_topic.sent  # type: ignore[attr-defined]
    found_once = sum(len(orjson.loads(s["value"])["findings"]) for s in sent)
    second = make_worker(tmp_path / "b")
    second.state_table = first.state_table
    asyncio.run(second.detect(events))  # the whole partition again, as after a crash before the commit
    assert found_once > 0
    assert second.findings_topic.sent == []  # type: ignore[attr-defined]


def findings_events(worker: GridwatchWorker, start: int = 0) -> list[Any]:
    """The findings the detect stage produced, as the incident stage receives them (offsets per partition)."""
    events: list[Any] = []
    offsets = {0: start, 1: start}
    for s in worker.findings_topic.sent:  # type: ignore[attr-defined]
        p = s["partition"]
        events.append(Event(s["value"], Message("gridwatch.findings", p, offsets[p], s["key"]), s["key"]))
        offsets[p] += 1
    return events


@pytest.mark.parametrize("restart", [False, True])
def test_replayed_findings_make_no_second_incident_or_notification(tmp_path, restart):
    worker = make_worker(tmp_path)
    asyncio.run(worker.detect(readings_events(storm(hours=100), 2)))  # incidents open, rise and resolve
    events = findings_events(worker)
    worker.incidents(events)
    store = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    outbox = store.outbox_backlog()
    incidents = store.list_incidents()
    assert incidents, "the storm opened incidents"
    if restart:  # a new worker takes the partitions over from the store
        worker = make_worker(tmp_path)
        worker.findings_topic.sent = []  # type: ignore[attr-defined]
    worker.incidents(events)  # the same records again: at-least-once delivery
    assert store.outbox_backlog() == outbox
    assert [i["incident_id"] for i in store.list_incidents()] == [i["incident_id"] for i in incidents]
    assert store.progress("gridwatch.findings/"), "the applied offsets are in the store"


def test_camera_frames_through_the_worker_dead_letter_what_is_not_an_image(tmp_path):
    """Frames come with their MQTT topic and capture time in headers; a non-image and a record without a
    gridwatch topic are dead-lettered, the camera agent goes on."""
    import cv2

    worker = make_worker(tmp_path)
    ok, jpeg = cv2.imencode(".jpg", np.full((360, 640, 3), 90, np.uint8))
    assert ok

    def headers(ts: float) -> list[tuple[str, bytes]]:
        return [("topic", b"gw/cameras/S05/cam-1"), ("ts", str(ts).encode())]

    frames: list[Any] = [
        Event(b"not an image", Message("gridwatch.frames", 0, 0, b"S05", headers(BASE)), b"S05"),
        Event(jpeg.tobytes(), Message("gridwatch.frames", 0, 1, b"S05", headers(BASE + 60)), b"S05"),
        Event(b"\x00", Message("gridwatch.frames", 0, 2, b"S05", [("topic", b"elsewhere")]), b"S05"),
    ]
    asyncio.run(worker.camera_batch(frames))
    dead = [orjson.loads(d["value"]) for d in worker.deadletter_topic.sent]  # type: ignore[attr-defined]
    assert sorted(d["reason"] for d in dead) == ["bad_record", "not_an_image"]


def test_a_record_that_reached_the_stream_twice_is_applied_once(tmp_path):
    """A producer's retry can put one reading in the readings topic twice, side by side in one batch: the
    worker applies it once (device_health used to report a `duplicate` device fault: the takeover test's
    rare extra blue incident)."""
    events = readings_events(storm(4), 1)
    twice = [*events[:50], events[49], *events[50:]]  # the 50th record again, as a retried send leaves it
    clean, retried = make_worker(tmp_path / "a"), make_worker(tmp_path / "b")
    asyncio.run(clean.detect(events))
    asyncio.run(retried.detect(twice))

    def found(w) -> list:
        return [f for s in w.findings_topic.sent for f in orjson.loads(s["value"])["findings"]]

    assert not [f for f in found(retried) if f["hazard"] == "device_fault"]
    assert found(retried) == found(clean)


def test_site_state_packs_are_compressed_and_earlier_uncompressed_packs_still_read():
    import zlib

    from engine.flow.site_state import COMPRESSED, pack_arrays, unpack_arrays

    arrays = {"ring": np.zeros(434), "t": np.arange(160.0), "held": np.array([True, False])}
    packed = pack_arrays(arrays)
    assert packed.startswith(COMPRESSED) and len(packed) < sum(a.nbytes for a in arrays.values()) / 3
    earlier = zlib.decompress(packed[len(COMPRESSED) :])  # the layout before compression
    for data in (packed, earlier):
        out = unpack_arrays(data)
        assert out["t"].tolist() == arrays["t"].tolist() and out["held"].tolist() == [True, False]


def test_a_taken_over_site_s_redelivered_readings_are_not_read_as_clock_skew():
    """The old worker wrote S1's pack after a batch that took the partition's clock to 9,000 s, and died
    before S2's pack of that batch and before committing the offset: the batch comes again to the new
    owner. S1's readings in it are replays (dropped); S2's are news, and 7,800 s behind the clock that S1's
    pack holds. They are not clock skew: the new owner's clock follows the redelivered stream."""
    from engine.config.models import EngineConfig
    from engine.core.batch import BatchBuilder
    from engine.flow.site_state import SiteState
    from engine.runners.assembly import build_pipeline

    cfg = EngineConfig.model_validate({"detectors": [{"type": "device_health", "max_lag_s": 1800}]})

    def batch(state: SiteState, rows: list[tuple[str, str, float]]) -> Any:
        b = BatchBuilder(state.pipeline.devices)
        for site, device, ts in rows:
            b.add(site, device, ts, "crack_mm", 1.0 + ts / 1e5)
        return state.fresh(b.take())

    def faults(state: SiteState, rows: list[tuple[str, str, float]]) -> list[tuple[str, str]]:
        return [(f.site, f.evidence["fault"]) for f in state.pipeline.detect(batch(state, rows))]

    old, new = SiteState(build_pipeline(cfg)), SiteState(build_pipeline(cfg))
    first = [(s, f"crack-{s}", t) for t in (0.0, 600.0) for s in ("S1", "S2")]
    assert faults(old, first) == []
    s2_before = old.pack("S2")
    redelivered = [(s, f"crack-{s}", t) for t in np.arange(1200.0, 9001.0, 600.0) for s in ("S1", "S2")]
    assert faults(old, redelivered) == []
    s1_after = old.pack("S1")  # written; S2's pack of this batch was not, nor the offset
    new.unpack("S1", s1_after)
    new.unpack("S2", s2_before)
    assert faults(new, redelivered) == []
    # the clock still holds once it is rebuilt: a reading far behind the stream is skew
    assert faults(new, [("S2", "crack-S2", 9600.0), ("S1", "crack-2-S1", 1000.0)]) == [("S1", "clock_skew")]


def test_a_taken_over_site_whose_pack_is_older_than_the_stream_is_not_read_as_silent():
    """A new owner's S2 pack is older than where the partition's stream resumes (the old worker applied three
    more of S2's readings, whose state never reached the new owner), S1's is current. The stream resumes
    with S1's reading and then S2's, both 600 s after S1's last: the fleet clock passes S2's restored
    deadline before S2's own reading in the batch. S2 is not silent: a taken-over device's silence is
    measured from where its site's stream resumes here, and a device of the site that stays silent is still
    found one silence window later."""
    from engine.config.models import EngineConfig
    from engine.core.batch import BatchBuilder
    from engine.flow.site_state import SiteState
    from engine.runners.assembly import build_pipeline

    cfg = EngineConfig.model_validate({"detectors": [{"type": "device_health"}]})

    def faults(state: SiteState, rows: list[tuple[str, str, float]]) -> list[tuple[str, str, str, float]]:
        b = BatchBuilder(state.pipeline.devices)
        for site, device, ts in rows:
            b.add(site, device, ts, "crack_mm", 1.0 + ts / 1e5)
        found = state.pipeline.detect(state.fresh(b.take()))
        return [(f.site, f.device, f.evidence["fault"], f.ts) for f in found]

    every = ("S1/crack-1", "S2/crack-1", "S2/crack-2")

    def tick(t: float, *sensors: str) -> list[tuple[str, str, float]]:
        return [(sensor.split("/")[0], sensor.split("/")[1], t) for sensor in sensors]

    old, new = SiteState(build_pipeline(cfg)), SiteState(build_pipeline(cfg))
    for t in np.arange(0.0, 1201.0, 600.0):
        assert faults(old, tick(t, *every)) == []
    s2_stale = old.pack("S2")  # S2's last reading in it: 1,200 s (its deadline: 3,000 s)
    for t in (1800.0, 2400.0, 3000.0):
        assert faults(old, tick(t, *every)) == []
    new.unpack("S1", old.pack("S1"))
    new.unpack("S2", s2_stale)
    assert faults(new, tick(3600.0, *every)) == []
    # crack-2 of S2 goes quiet after the takeover: silent once a silence window (3 x 600 s) has passed
    assert faults(new, [r for t in (4200.0, 4800.0, 5400.0, 6000.0) for r in tick(t, "S1/crack-1", "S2/crack-1")]) == [
        ("S2", "crack-2", "silent", 5400.0 + 600.0)
    ]


def test_a_camera_verdict_through_a_worker_that_does_not_own_the_camera_is_learned_by_its_owner(tmp_path, monkeypatch):
    """Two workers on one store: the owner of S1's partition saw the alarm; a verdict and rollbacks asked of the
    other are queued, applied by the owner (not by the incident actions' loop) and answered through the queue;
    the camera's status is read from the store by either; a refused rollback comes back as the refusal; the
    head is let go of when the partition leaves and taken up again from the store when it returns (a camera
    action waits while the store cannot give it)."""
    import time as wall

    from engine.config.models import CamerasConfig
    from engine.flow.camera_learning import Verdict, VerdictError
    from engine.runners.faust_app import WorkerLearner
    from tests.conftest import ROOT

    cameras = CamerasConfig.model_validate({
        "detectors": [{"type": "smoke_fire_onnx", "confirm_k": 1, "confirm_n": 1, "scene_memory": False}],
        "learning": {"max_dismissed_share": 1.0},
    })  # fmt: skip
    store = StoreConfig(url=f"sqlite:///{tmp_path / 'shared.db'}")
    owner = make_worker(tmp_path / "a", store=store, cameras=cameras)
    other = make_worker(tmp_path / "b", store=store, cameras=cameras)
    shard = partition_of("S1", 2)
    owner._handling(shard)
    owner.take_up_camera_heads([shard])
    smoke = (ROOT / "tests" / "data" / "frames" / "smoke.jpg").read_bytes()
    headers = [("topic", b"gw/cameras/S1/cam-1"), ("ts", repr(BASE).encode())]
    frame: Any = Event(smoke, Message("gridwatch.frames", shard, 0, b"S1", headers), b"S1")
    asyncio.run(owner.camera_batch([frame]))
    owner.incidents(findings_events(owner))
    (incident,) = owner.store.list_incidents()
    learner = WorkerLearner(other)
    detector = owner.cameras.learning.visible  # type: ignore[union-attr]
    assert detector is not None

    def by_owner(ask):  # the asking worker waits on the queue; the owner applies at its ticks
        async def run():
            asked = asyncio.create_task(ask())
            while not asked.done():
                owner.apply_actions()  # the incident actions' loop leaves a camera's action to its own
                await owner._apply_camera_actions()
                await asyncio.sleep(0.05)
            return asked.result()

        return asyncio.run(run())

    v = Verdict("S1", "cam-1", "false_alarm", BASE + 60, "ops", incident_id=incident["incident_id"])
    t0 = wall.perf_counter()
    learned = by_owner(lambda: learner.verdict(v, []))
    print(f"verdict through the queue between two workers: {wall.perf_counter() - t0:.2f} s")
    assert learned["learned"] and learned["version"] == 1, learned
    assert "S1/cam-1" in detector.heads, "learned by the owner, which holds the alarm's frames"
    assert other.cameras.learning is not None and other.cameras.learning.cameras == {}
    assert learner.status("S1/cam-1")["version"] == WorkerLearner(owner).status("S1/cam-1")["version"] == 1
    with pytest.raises(VerdictError, match="no head version 7"):
        by_owner(lambda: learner.rollback("S1/cam-1", 7, "ops"))
    owner.let_go_of_camera_heads([shard])
    assert "S1/cam-1" not in detector.heads

    # the partition comes back while the store cannot give its heads: nothing is learned over what they hold
    def store_out() -> set[str]:
        raise OSError("the store does not answer")

    monkeypatch.setattr(owner.store, "camera_head_sites", store_out)
    owner.take_up_camera_heads([shard])
    spec = {"kind": "camera_rollback", "camera": "S1/cam-1", "version": 1, "actor": "ops", "at": BASE}
    queued = owner.store.enqueue_action(shard, "S1", spec, BASE)
    owner.apply_camera_actions()
    assert owner.store.action(queued)[0] == "pending"
    monkeypatch.undo()
    owner.apply_camera_actions()
    assert owner.store.action(queued)[0] == "applied" and detector.heads["S1/cam-1"].version == 1
    assert by_owner(lambda: learner.rollback("S1/cam-1", 0, "ops"))["version"] == 0
    assert "S1/cam-1" not in detector.heads and learner.status("S1/cam-1")["version"] == 0
