"""What a detector reports: a finding at one device and time, with a level, score and evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core.levels import Level


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector's observation at one device.

    ``row`` is the index of the reading in its batch that produced the finding; the pipeline uses it to
    apply findings in arrival order, which is what makes the output independent of batch boundaries.

    >>> Finding("threshold", "landslide", "S1", "gnss-1", 1732345678.0, Level.YELLOW, 1.4).level.label
    'yellow'
    """

    detector: str
    hazard: str
    site: str
    device: str
    ts: float
    level: Level
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)
    row: int = 0

    def to_event(self) -> dict[str, Any]:
        """The finding as it appears inside an incident event (docs/contracts.md: "Incident event")."""
        return {
            "detector": self.detector,
            "device": self.device,
            "ts": self.ts,
            "level": self.level.label,
            "score": round(float(self.score), 6),
            "evidence": self.evidence,
        }
