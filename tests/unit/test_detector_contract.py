"""The contract every registered detector passes: the public checks of ``detectors.checks`` over the registry
(a plugin author runs the same on their own detector)."""

from __future__ import annotations

import pytest

from detectors.base import Detector, DetectorConfig, registry
from detectors.checks import CHECKS, ContractError, check_detector, check_finds_something
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding

DETECTOR_TYPES = registry.known()


@pytest.fixture(scope="module")
def rows(storm_rows):
    return storm_rows


def test_registry_has_builtins():
    assert "threshold" in DETECTOR_TYPES


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


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("det_type", DETECTOR_TYPES)
def test_every_detector_keeps_the_contract(det_type, check, rows):
    check(registry.get(det_type), rows)


def test_the_checks_catch_a_detector_that_breaks_the_contract(rows):
    class ForgetfulConfig(DetectorConfig):
        type: str = "forgetful"

    class Forgetful(Detector[ForgetfulConfig]):
        """Counts readings in a Python attribute, not in its state: batching and restores change it."""

        config_class = ForgetfulConfig
        metrics = ("rain_mm",)

        def __init__(self, config: ForgetfulConfig) -> None:
            super().__init__(config)
            self.seen = 0

        @classmethod
        def example_config(cls) -> ForgetfulConfig:
            return ForgetfulConfig()

        def process(self, batch: ReadingBatch, state) -> list[Finding]:
            self.seen += 1  # one per batch, whatever its size
            rows_ = batch.rows_of(self.metrics)
            return [self.finding(batch, int(r), 1, float(self.seen), {}) for r in rows_[:1]] if self.seen % 2 else []

    check_finds_something(Forgetful, rows)  # it does find something…
    with pytest.raises(ContractError, match="batch of one"):
        check_detector(Forgetful, rows)  # …but batching changes what


def test_unknown_type_names_the_known_ones_and_guesses():
    with pytest.raises(KeyError) as exc:
        registry.get("treshold")
    assert "did you mean 'threshold'" in str(exc.value)
    assert "known types: " in str(exc.value)
