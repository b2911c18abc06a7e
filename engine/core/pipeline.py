"""The pipeline step: one batch through every detector, findings into incidents, in arrival order."""

from __future__ import annotations

import logging
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

    def detect(self, batch: ReadingBatch) -> list[Finding]:
        findings: list[Finding] = []
        for det, state in zip(self.detectors, self.states, strict=True):
            t0 = perf_counter()
            found = det.process(batch, state)
            metrics.DETECT_SECONDS.labels(det.name).observe(perf_counter() - t0)
            findings.extend(found)
        findings.sort(key=lambda f: f.row)
        findings = self.fusion.apply(findings)
        for f in findings:
            metrics.FINDINGS.labels(f.hazard, f.level.label).inc()
        return findings

    def step(self, batch: ReadingBatch, findings_out: list[Finding] | None = None) -> list[dict[str, Any]]:
        """Process one batch; returns the incident events it caused, in order (findings to ``findings_out``)."""
        n = len(batch)
        if n == 0:
            return []
        metrics.BATCH_SIZE.observe(n)
        self.readings += n
        findings = self.detect(batch)
        if findings_out is not None:
            findings_out.extend(findings)
        wm = np.maximum.accumulate(np.maximum(batch.ts, self.watermark))
        events: list[dict[str, Any]] = []
        for f in findings:
            events.extend(self.tracker.advance(float(wm[f.row])))
            events.extend(self.tracker.observe(f))
        self.watermark = float(wm[-1])
        events.extend(self.tracker.advance(self.watermark))
        return events

    def observe(self, findings: list[Finding]) -> list[dict[str, Any]]:
        """Findings from outside the sensor step (the camera stage), in time order, into the incidents."""
        events: list[dict[str, Any]] = []
        for f in self.fusion.apply(sorted(findings, key=lambda f: f.ts)):
            metrics.FINDINGS.labels(f.hazard, f.level.label).inc()
            self.watermark = max(self.watermark, f.ts)
            events.extend(self.tracker.advance(self.watermark))
            events.extend(self.tracker.observe(f))
        return events

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
