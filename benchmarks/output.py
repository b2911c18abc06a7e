"""Where a benchmark writes its figures: ``benchmarks/results/`` (committed), or ``results/quick/`` for a
``--quick`` run, so that a quick check never overwrites the recorded results."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def results_dir(argv: list[str] | None = None) -> Path:
    """``benchmarks/results``, or its ``quick`` subfolder when ``--quick`` is among the arguments."""
    quick = "--quick" in (sys.argv if argv is None else argv)
    return ROOT / "benchmarks" / "results" / ("quick" if quick else "")


def write_results(name: str, figures: dict[str, Any], quick: bool | None = None, **machine: Any) -> dict[str, Any]:
    """Write ``<results>/<name>.json`` and return it: what every results file starts with (the benchmark's
    name, the date, the machine: Python, cores and ``machine``'s extra fields; ``quick`` where the benchmark
    has a quick run), then the benchmark's own ``figures``."""
    result: dict[str, Any] = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(), **machine},
        **({} if quick is None else {"quick": quick}),
        **figures,
    }
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    return result
