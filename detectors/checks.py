"""The contract every sensor detector must keep, as checks a plugin author runs on their own detector.

As River publishes its estimator checks, gridwatch publishes these: the built-in detectors pass them (the
project's test suite runs them over the whole registry), and a third-party detector registered under the
``gridwatch.detectors`` entry point should too::

    from detectors.checks import check_detector
    from my_package.detector import MyDetector

    def test_my_detector_keeps_the_contract():
        check_detector(MyDetector)          # raises ContractError naming the broken rule

``check_detector`` runs the detector's ``example_config()`` over a simulated storm over a failing slope
(``simulators/scenarios/storm-over-slope.yaml``) and checks that:

* it finds something there (an example config that never fires tests nothing);
* a batch of one reading and batches of 97 give the findings (and quality flags) of one big batch;
* it is deterministic;
* its config survives a JSON round trip;
* taking a snapshot of its state and restoring it into fresh state every few batches changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from detectors.base import Detector

Row = tuple[float, str, str, str, float]
Found = list[tuple[Any, ...]]


class ContractError(AssertionError):
    """A detector broke a rule of the detector contract."""


def scenario_rows(name: str = "storm-over-slope") -> list[Row]:
    """The readings of a shipped scenario, as replay rows (fixed start time)."""
    from simulators.scenario import load_scenario

    return load_scenario(name).readings(base_ts=1_700_000_000.0)


def run_detector(cls: type[Detector[Any]], rows: Iterable[Row], batch_size: int, restore_every: int = 0) -> Found:
    """The findings of ``cls(cls.example_config())`` on ``rows`` in batches, and the quality flags it set."""
    from engine.core.devices import DeviceIndex
    from engine.ingest.replay_file import batches

    det = cls(cls.example_config())
    state = det.new_state()
    found: Found = []
    flags: list[int] = []
    for i, batch in enumerate(batches(rows, DeviceIndex(), batch_size)):
        if restore_every and i % restore_every == 0:
            snap = state.snapshot()
            state = det.new_state()
            state.restore(snap)
        for f in det.process(batch, state):
            found.append((f.detector, f.hazard, f.site, f.device, f.ts, int(f.level), round(f.score, 9)))
        flags.extend(int(x) for x in batch.flags)  # what a quality screen keeps from the other detectors
    return [*found, ("flags", *flags)]


def _check(ok: bool, cls: type[Detector[Any]], rule: str) -> None:
    if not ok:
        raise ContractError(f"{cls.__name__}: {rule}")


def check_finds_something(cls: type[Detector[Any]], rows: list[Row]) -> None:
    found = [f for f in run_detector(cls, rows, 1000) if f[0] != "flags"]
    _check(bool(found), cls, "its example_config() finds nothing on the storm-over-slope scenario")


def check_batching(cls: type[Detector[Any]], rows: list[Row]) -> None:
    subset = rows[: len(rows) // 4] + rows[-2000:]
    whole = run_detector(cls, subset, len(subset))
    _check(run_detector(cls, subset, 1) == whole, cls, "a batch of one gives other findings than one big batch")
    _check(run_detector(cls, subset, 97) == whole, cls, "batches of 97 give other findings than one big batch")


def check_deterministic(cls: type[Detector[Any]], rows: list[Row]) -> None:
    _check(run_detector(cls, rows, 500) == run_detector(cls, rows, 500), cls, "two runs on the same data differ")


def check_config_round_trip(cls: type[Detector[Any]], rows: list[Row]) -> None:
    cfg = cls.example_config()
    again = cls.config_class.model_validate_json(cfg.model_dump_json())
    _check(again == cfg, cls, "its config does not survive a JSON round trip")


def check_snapshot_restore(cls: type[Detector[Any]], rows: list[Row]) -> None:
    same = run_detector(cls, rows, 300, restore_every=3) == run_detector(cls, rows, 300)
    _check(same, cls, "snapshot and restore of its state change its findings")


CHECKS: tuple[Callable[[type[Detector[Any]], list[Row]], None], ...] = (
    check_finds_something,
    check_batching,
    check_deterministic,
    check_config_round_trip,
    check_snapshot_restore,
)


def check_detector(cls: type[Detector[Any]], rows: list[Row] | None = None) -> None:
    """Run every contract check on a detector class; raises ``ContractError`` at the first broken rule."""
    data = scenario_rows() if rows is None else rows
    for check in CHECKS:
        check(cls, data)
