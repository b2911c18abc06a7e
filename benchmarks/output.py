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


def against_commits(argv: list[str] | None = None) -> list[str]:
    """The commits named by ``--against A[,B...]`` (none without it)."""
    args = sys.argv if argv is None else argv
    if "--against" not in args:
        return []
    at = args.index("--against") + 1
    if at >= len(args):
        raise SystemExit("--against needs a commit (or several, comma-separated)")
    return [c for c in args[at].split(",") if c]


def run_at_commit(commit: str, script: str, name: str, quick: bool, say: Any = print) -> dict[str, Any]:
    """Run ``commit``'s own ``benchmarks/<script>`` in a git worktree of it, now, on this box (this interpreter,
    that commit's code first on the path), and return its ``<name>.json`` with ``commit`` and ``sha`` added:
    two versions measured side by side, one right after the other, since absolute rates move with the box."""
    import subprocess

    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if sha.returncode != 0:
        raise SystemExit(f"--against {commit}: not a commit of {ROOT} ({sha.stderr.strip()})")
    full = sha.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="gridwatch-against-") as tmp:
        tree, out = Path(tmp) / "tree", Path(tmp) / "quick"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), full],
                       check=True, capture_output=True)  # fmt: skip
        try:
            say(f"--- the same benchmark at {commit} ({full[:10]}) ---")
            env = {**os.environ, "GRIDWATCH_BENCH_QUICK_DIR": str(out), "PYTHONPATH": str(tree)}
            done = subprocess.run([sys.executable, str(tree / "benchmarks" / script), *(["--quick"] if quick else [])],
                                  cwd=tree, env=env, check=False)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"--against {commit}: its benchmark failed (exit {done.returncode})")
            found = [out / f"{name}.json", *(tree / "benchmarks" / "results").glob(f"**/{name}.json")]
            newest = max((f for f in found if f.exists()), key=lambda f: f.stat().st_mtime)
            theirs: dict[str, Any] = json.loads(newest.read_text())
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)  # fmt: skip
    return {"commit": commit, "sha": full, **theirs}
