"""The pipeline step: one batch through every detector, findings into incidents, in arrival order.

Two calls, the same for every runner (local, Faust worker, ``replay --direct``, tuning, the benchmarks):
``Pipeline.detect_batch`` (a batch → its findings, each with the data time at its reading) and
``apply_findings`` (findings with their times → incident events, data time advanced before each). The
local runner does both in one process (``Pipeline.step``); the Faust worker does the first in its detect
stage and the second, on the findings topic's records, in its incidents stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import numpy as np

from detectors.base import Detector, DeviceState
from detectors.fusion import SiteFusion
from engine import metrics
from engine.core.batch import ReadingBatch
from engine.core.devices import DeviceIndex
from engine.core.findings import Finding
from engine.core.replays import AppliedTimes
from engine.incidents.tracker import IncidentTracker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorFailure:
    """A detector that raised on a batch: which, why, on how many readings, up to which data time."""

    detector: str
    error: str
    readings: int
    ts: float


class Pipeline:
    """Runs detectors on batches and feeds their findings to the incident tracker.

    Findings are applied in the order of the readings that caused them, and incidents are resolved
    against the running watermark (the latest timestamp seen so far in arrival order), so the events
    do not depend on how the stream was cut into batches.
    """

    def __init__(
        self,
        detectors: list[Detector[Any]],
        tracker: IncidentTracker,
        devices: DeviceIndex,
        fusion: SiteFusion | None = None,
    ) -> None:
        self.detectors: list[Detector[Any]] = []
        self.states: list[DeviceState] = []
        self.replace_detectors(detectors, [d.new_state() for d in detectors])
        self.tracker = tracker
        self.devices = devices
        self.fusion = fusion or SiteFusion([])
        self.watermark = -np.inf
        self.readings = 0
        self.applied = AppliedTimes()  # newest reading applied per device and metric: replays are dropped
        self.failures: list[DetectorFailure] = []  # the latest detector failures, newest last (for the runner)
        self.failures_total = 0

    def detect(self, batch: ReadingBatch) -> list[Finding]:
        """Every detector on the batch. A detector that raises costs only its own findings of this batch:
        the devices of the batch are reset in its state (never half-applied, never fed twice), the other
        detectors go on, and the failure is logged, counted and kept in ``failures`` for the runner to
        dead-letter and report in health."""
        findings: list[Finding] = []
        for det, state in zip(self.detectors, self.states, strict=True):
            t0 = perf_counter()
            try:
                found = det.process(batch, state)
            except Exception as exc:
                logger.exception("detector %s raised on a batch of %d readings; its state for them is reset",
                                 det.name, len(batch))  # fmt: skip
                metrics.DETECTOR_ERRORS.labels(det.name).inc()
                state.forget(batch.slot)
                self.failures_total += 1
                self.failures.append(DetectorFailure(det.name, repr(exc)[:500], len(batch), float(batch.ts.max())))
                del self.failures[:-100]
                continue
            metrics.DETECT_SECONDS.labels(det.name).observe(perf_counter() - t0)
            findings.extend(found)
        findings.sort(key=lambda f: f.row)
        findings = self.fusion.apply(findings)
        for f in findings:
            metrics.FINDINGS.labels(f.hazard, f.level.label).inc()
        return findings

    def detect_batch(self, batch: ReadingBatch) -> list[tuple[Finding, float]]:
        """The detectors on one batch: its findings in reading order, each with the watermark (the latest
        data time seen in arrival order) at its reading; the watermark moves on to the batch's end."""
        if not len(batch):
            return []
        metrics.BATCH_SIZE.observe(len(batch))
        self.readings += len(batch)
        findings = self.detect(batch)
        wm = np.maximum.accumulate(np.maximum(batch.ts, self.watermark))
        self.watermark = float(wm[-1])
        return [(f, float(wm[f.row])) for f in findings]

    def step(self, batch: ReadingBatch, findings_out: list[Finding] | None = None) -> list[dict[str, Any]]:
        """Process one batch; returns the incident events it caused, in order (findings to ``findings_out``)."""
        if not len(batch):
            return []
        found = self.detect_batch(batch)
        if findings_out is not None:
            findings_out.extend(f for f, _ in found)
        return apply_findings(self.tracker, found, self.watermark)

    def observe(self, findings: list[Finding]) -> list[dict[str, Any]]:
        """Findings from outside the sensor step (the camera stage), in time order, into the incidents."""
        events: list[dict[str, Any]] = []
        for f in self.fusion.apply(sorted(findings, key=lambda f: f.ts)):
            metrics.FINDINGS.labels(f.hazard, f.level.label).inc()
            self.watermark = max(self.watermark, f.ts)
            events.extend(self.tracker.advance(self.watermark))
            events.extend(self.tracker.observe(f))
        return events

    def failures_since(self, seen: int) -> list[DetectorFailure]:
        """The failures after the first ``seen`` (a runner's count of those it has reported), oldest first."""
        n = min(self.failures_total - seen, len(self.failures))
        return self.failures[len(self.failures) - n :] if n > 0 else []

    def advance_to(self, ts: float) -> list[dict[str, Any]]:
        """Move data time to ``ts`` without a finding (frames that showed nothing): due resolutions happen."""
        self.watermark = max(self.watermark, ts)
        return self.tracker.advance(self.watermark)

    def replace_detectors(self, detectors: list[Detector[Any]], states: list[DeviceState]) -> None:
        """Swap in another set of detectors with their states (a config reload, between batches).

        Quality screens go first: they flag suspect readings that the other detectors then skip.
        """
        pairs = sorted(zip(detectors, states, strict=True), key=lambda p: not p[0].screens)
        self.detectors = [d for d, _ in pairs]
        self.states = [s for _, s in pairs]

    def state_bytes(self) -> int:
        return sum(s.nbytes() for s in self.states)


def apply_findings(
    tracker: IncidentTracker, found: list[tuple[Finding, float]], watermark: float
) -> list[dict[str, Any]]:
    """Findings with their data times into the incidents, in order: data time advances to each finding's
    own before it is observed (due resolutions and escalations first), then to ``watermark``."""
    events: list[dict[str, Any]] = []
    for finding, at in found:
        events.extend(tracker.advance(at))
        events.extend(tracker.observe(finding))
    events.extend(tracker.advance(watermark))
    return events
