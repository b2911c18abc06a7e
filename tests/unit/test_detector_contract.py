"""The contract every registered detector passes (DESIGN: "A detector")."""

from __future__ import annotations

import pytest

from detectors.base import registry
from engine.core.devices import DeviceIndex
from engine.ingest.replay_file import batches

DETECTOR_TYPES = registry.known()


def run_detector(det_type, rows, batch_size, restore_every=0):
    cls = registry.get(det_type)
    det = cls(cls.example_config())
    state = det.new_state()
    devices = DeviceIndex()
    found: list = []
    flags: list[int] = []
    for i, batch in enumerate(batches(rows, devices, batch_size)):
        if restore_every and i % restore_every == 0:
            snap = state.snapshot()
            state = det.new_state()
            state.restore(snap)
        for f in det.process(batch, state):
            found.append((f.detector, f.hazard, f.site, f.device, f.ts, int(f.level), round(f.score, 9)))
        flags.extend(int(x) for x in batch.flags)  # what a quality screen keeps from the other detectors
    return [*found, ("flags", *flags)]


@pytest.fixture(scope="module")
def rows(storm_rows):
    return storm_rows


def test_registry_has_builtins():
    assert "threshold" in DETECTOR_TYPES


@pytest.mark.parametrize("det_type", DETECTOR_TYPES)
def test_finds_something_on_the_storm_scenario(det_type, rows):
    found = [f for f in run_detector(det_type, rows, 1000) if f[0] != "flags"]
    assert found, "the example config should fire on storm-over-slope"


def test_the_geohazard_detectors_are_registered():
    assert {
        "rainfall_intensity_duration",
        "rainfall_cumulative",
        "antecedent_water_index",
        "displacement_rate",
        "inverse_velocity",
        "level_threshold",
        "device_health",
    } <= set(DETECTOR_TYPES)


@pytest.mark.parametrize("det_type", DETECTOR_TYPES)
def test_batch_of_one_equals_batch_of_many(det_type, rows):
    subset = rows[: len(rows) // 4] + rows[-2000:]
    whole = run_detector(det_type, subset, len(subset))
    assert run_detector(det_type, subset, 1) == whole
    assert run_detector(det_type, subset, 97) == whole


@pytest.mark.parametrize("det_type", DETECTOR_TYPES)
def test_deterministic(det_type, rows):
    assert run_detector(det_type, rows, 500) == run_detector(det_type, rows, 500)


@pytest.mark.parametrize("det_type", DETECTOR_TYPES)
def test_config_round_trips(det_type):
    cls = registry.get(det_type)
    cfg = cls.example_config()
    again = cls.config_class.model_validate_json(cfg.model_dump_json())
    assert again == cfg


@pytest.mark.parametrize("det_type", DETECTOR_TYPES)
def test_snapshot_restore_changes_nothing(det_type, rows):
    assert run_detector(det_type, rows, 300, restore_every=3) == run_detector(det_type, rows, 300)


def test_unknown_type_names_the_known_ones_and_guesses():
    with pytest.raises(KeyError) as exc:
        registry.get("treshold")
    assert "did you mean 'threshold'" in str(exc.value)
    assert "known types: " in str(exc.value)
