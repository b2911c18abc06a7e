"""``replay --direct``: a recorded or simulated feed through the flow in one process, no broker.

The same two calls as every runner (``Pipeline.step``: detect a batch, apply its findings), in batches of
the configured size, optionally paced at N times the data's own speed. The CLI, the accuracy benchmark and
the scenario tests replay through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.config.models import EngineConfig
from engine.core.findings import Finding


@dataclass
class ReplayResult:
    """What a replay caused: incident events and detector findings, in order, and its wall time."""

    events: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0


def replay_readings(
    cfg: EngineConfig,
    rows: Iterable[Any],
    batch_size: int | None = None,
    speed: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Feed replay rows (``engine.ingest.replay_file`` rows) through a fresh pipeline built from ``cfg``.

    ``speed``: N times real time (None or 0: as fast as possible); ``progress`` is told the readings of
    each batch as it is done."""
    from engine.ingest.replay_file import batches
    from engine.runners.assembly import build_pipeline

    pipeline = build_pipeline(cfg)
    result = ReplayResult()
    t0 = time.perf_counter()
    data_t0: float | None = None
    for b in batches(rows, pipeline.devices, batch_size or cfg.ingest.batch_max):
        if speed and len(b):
            data_t0 = float(b.ts[0]) if data_t0 is None else data_t0
            lag = (float(b.ts[-1]) - data_t0) / speed - (time.perf_counter() - t0)
            if lag > 0:
                time.sleep(lag)
        result.events.extend(pipeline.step(b, result.findings))
        if progress is not None:
            progress(len(b))
    result.seconds = time.perf_counter() - t0
    return result
