"""Where a benchmark writes its figures: ``benchmarks/results/`` (committed), or ``results/quick/`` for a
``--quick`` run, so that a quick check never overwrites the recorded results."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def results_dir(argv: list[str] | None = None) -> Path:
    """``benchmarks/results``, or its ``quick`` subfolder when ``--quick`` is among the arguments."""
    quick = "--quick" in (sys.argv if argv is None else argv)
    return ROOT / "benchmarks" / "results" / ("quick" if quick else "")
