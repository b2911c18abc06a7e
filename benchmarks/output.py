"""Where a benchmark writes its figures: ``benchmarks/results/`` (committed) for a full run; a ``--quick`` run
writes outside the checkout (``<tmp>/gridwatch-bench-quick/``), so that only full runs write results files."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def results_dir(argv: list[str] | None = None) -> Path:
    """``benchmarks/results``, or a folder outside the checkout when ``--quick`` is among the arguments
    (``$GRIDWATCH_BENCH_QUICK_DIR`` if set)."""
    if "--quick" in (sys.argv if argv is None else argv):
        return Path(
            os.environ.get("GRIDWATCH_BENCH_QUICK_DIR") or Path(tempfile.gettempdir()) / "gridwatch-bench-quick"
        )
    return ROOT / "benchmarks" / "results"


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
