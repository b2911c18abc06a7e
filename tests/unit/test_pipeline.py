"""The pipeline: the storm scenario through the shipped config, independent of batching."""

from __future__ import annotations

import pytest

from engine.flow.checkpoint import load_checkpoint, save_checkpoint
from engine.ingest.replay_file import batches, read_rows, write_rows
from engine.runners.assembly import build_pipeline
from tests.conftest import default_config


def replay(rows, batch_size):
    pipeline = build_pipeline(default_config())
    events = []
    for b in batches(rows, pipeline.devices, batch_size):
        events += pipeline.step(b)
    return events


@pytest.fixture(scope="module")
def reference_events(storm_rows):
    return replay(storm_rows, 10_000)


def test_storm_over_slope_gives_the_expected_incidents(reference_events):
    landslide = [e for e in reference_events if e["hazard"] == "landslide"]
    assert [e["action"] for e in landslide] == ["fired", "raised", "raised", "raised"]
    assert {e["site"] for e in landslide} == {"S02"}
    assert [e["level"] for e in landslide] == ["blue", "yellow", "orange", "red"]
    assert landslide[-1]["plan"]["title"] == "Evacuate"
    assert landslide[-1]["route"] == ["grid:grid-1", "town:town-north-1", "district:north", "city:Chongqing"]
    rain = [e for e in reference_events if e["hazard"] == "rainstorm"]
    assert {e["site"] for e in rain} == {"S01", "S02", "S03"}
    for site in ("S01", "S02", "S03"):
        rising = [e["level"] for e in rain if e["site"] == site and e["action"] in ("fired", "raised")]
        assert rising == ["blue", "yellow", "orange"]
        # after the storm the level falls back (hysteresis: 6 h without findings at a level) before resolving
        falling = [e["level"] for e in rain if e["site"] == site and e["action"] == "lowered"]
        assert falling == sorted(falling, key=["blue", "yellow", "orange", "red"].index, reverse=True)
    assert not [e for e in reference_events if e["hazard"] == "device_fault"]


@pytest.mark.parametrize("batch_size", [1, 13, 777])
def test_events_do_not_depend_on_batching(storm_rows, reference_events, batch_size):
    if batch_size == 1:  # one reading a batch: the storm's first 6,000 readings (all 10,368 cost 24 s this way)
        rows = storm_rows[:6000]
        expected = replay(rows, 10_000)
        assert {e["level"] for e in expected} == {"blue", "yellow", "orange"}, "the slice holds the storm's rise"
        assert replay(rows, 1) == expected
        return
    assert replay(storm_rows, batch_size) == reference_events


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_replay_file_round_trip(tmp_path, storm_rows, suffix):
    path = tmp_path / f"r{suffix}"
    assert write_rows(path, storm_rows[:500]) == 500
    assert list(read_rows(path)) == storm_rows[:500]


def test_replay_file_errors_name_the_line(tmp_path):
    from engine.ingest.replay_file import ReplayFileError

    path = tmp_path / "bad.csv"
    path.write_text("ts,site,device,metric,value\n1,S1,d,rain_mm,0.2\n2,S1,d,rain_mm,lots\n")
    with pytest.raises(ReplayFileError, match=r"bad.csv:3"):
        list(read_rows(path))


def test_a_screen_listed_last_still_runs_first_with_its_own_state(storm_rows, reference_events):
    cfg = default_config()
    screens_last = cfg.model_copy(update={"detectors": [*cfg.detectors[1:], cfg.detectors[0]]})
    pipeline = build_pipeline(screens_last)
    assert pipeline.detectors[0].screens
    pairs = zip(pipeline.detectors, pipeline.states, strict=True)
    assert all(d.state_spec().keys() == s.spec.keys() for d, s in pairs)
    events = []
    for b in batches(storm_rows, pipeline.devices, 10_000):
        events += pipeline.step(b)
    assert events == reference_events


def half_way(storm_rows, tmp_path):
    """The first half of the storm through a pipeline, checkpointed: (half, the pipeline, its events)."""
    half = len(storm_rows) // 2
    first = build_pipeline(default_config())
    events = []
    for b in batches(storm_rows[:half], first.devices, 10_000):
        events += first.step(b)
    save_checkpoint(first, tmp_path / "checkpoint.npz")
    return half, first, events


def test_checkpoint_restores_detector_state_into_a_new_engine(storm_rows, reference_events, tmp_path):
    """Stop half way, checkpoint, start a new pipeline from the checkpoint: the same events as one run."""
    half, first, events = half_way(storm_rows, tmp_path)
    second = build_pipeline(default_config())
    assert load_checkpoint(second, tmp_path / "checkpoint.npz") == [d.name for d in second.detectors]
    second.tracker = first.tracker  # the incidents come back from the store (tests/e2e/test_incident_lifecycle)
    second.fusion = first.fusion
    for b in batches(storm_rows[half:], second.devices, 10_000):
        events += second.step(b)
    assert events == reference_events
    # a changed detector config starts that detector afresh and keeps the others
    changed = default_config()
    changed.detectors[1] = changed.detectors[1].model_copy(update={"awi_gate": None})
    third = build_pipeline(changed)
    restored = load_checkpoint(third, tmp_path / "checkpoint.npz")
    assert changed.detectors[1].name not in restored and len(restored) == len(third.detectors) - 1


def test_a_device_added_to_the_config_keeps_every_detector_state(storm_rows, reference_events, tmp_path):
    """Devices are matched by name: a new device listed first renumbers every slot, and used to discard all
    the detectors' state (the rest of the storm then gave other incidents)."""
    from engine.config.models import DeviceConfig

    half, first, events = half_way(storm_rows, tmp_path)
    grown = default_config()
    site = grown.sites[0]
    grown.sites[0] = site.model_copy(
        update={"devices": [DeviceConfig(id="rain-new", metrics=["rain_mm"]), *site.devices]}
    )
    second = build_pipeline(grown)
    assert second.devices.find("S01", "rain-new") == 0, "the new device took the first slot"
    assert load_checkpoint(second, tmp_path / "checkpoint.npz") == [d.name for d in second.detectors]
    second.tracker, second.fusion = first.tracker, first.fusion
    for b in batches(storm_rows[half:], second.devices, 10_000):
        events += second.step(b)
    assert events == reference_events
