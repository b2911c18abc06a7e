"""``gridwatch bench`` end to end: it finds benchmarks/ from any working directory, runs one quick benchmark
without touching the recorded results, and fails (exit 2, with what to do) when it finds nothing to run."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

GRIDWATCH = Path(sys.executable).with_name("gridwatch")
RESULTS = ROOT / "benchmarks" / "results"


def bench(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRIDWATCH), "bench", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


def recorded() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(RESULTS.glob("*.*"))}


@pytest.mark.timeout(300)
def test_bench_quick_runs_one_benchmark_from_another_directory_and_writes_no_results(tmp_path):
    before = recorded()
    quick_out = tmp_path / "quick"
    done = bench(["--quick", "--only", "dispatch"], tmp_path, GRIDWATCH_BENCH_QUICK_DIR=str(quick_out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "incident events" in done.stdout  # the benchmark's table was printed
    assert (quick_out / "dispatch.json").exists()  # a quick run writes outside the checkout
    assert recorded() == before, "a --quick run changed benchmarks/results/"


def test_bench_refuses_an_unknown_name(tmp_path):
    done = bench(["--quick", "--only", "no_such_benchmark"], tmp_path)
    assert done.returncode == 2
    assert "no benchmark 'no_such_benchmark'" in done.stderr and "detect_sensors" in done.stderr


def test_bench_with_no_benchmarks_found_fails_with_what_to_do(tmp_path, monkeypatch):
    from engine.cli import engine_commands

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(engine_commands.BENCH_DIR_ENV, str(empty))
    folders = engine_commands.benchmark_folders(tmp_path)
    assert folders[0] == empty and folders[1] == ROOT / "benchmarks"  # the checkout beside the package next
    # A package installed outside any checkout: nothing beside it, nothing above the working directory.
    monkeypatch.setattr(engine_commands, "benchmark_folders", lambda cwd=None: [empty, tmp_path / "benchmarks"])
    from typer.testing import CliRunner

    from engine.cli import app

    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 2
    assert "no benchmarks found" in result.output and "GRIDWATCH_BENCHMARKS" in result.output


def test_bench_runs_the_others_after_one_fails_and_exits_with_its_status(tmp_path):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "bench_a_needs_a_broker.py").write_text("import sys\nprint('no broker here')\nsys.exit(3)\n")
    (folder / "bench_b_runs.py").write_text("import sys\nprint('b ran', sys.argv[1:])\n")
    done = bench(["--quick"], tmp_path, GRIDWATCH_BENCHMARKS=str(folder))
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    assert "b ran ['--quick']" in done.stdout  # the one after the failure still ran
    assert "1 of 2 benchmarks failed: a_needs_a_broker (exit 3)" in done.stderr  # the console is stderr


def test_against_takes_one_commit_or_several() -> None:
    from benchmarks.output import against_commits

    assert against_commits(["bench", "--quick"]) == []
    assert against_commits(["bench", "--against", "6650354"]) == ["6650354"]
    assert against_commits(["bench", "--against", "6650354,5dcd576", "--quick"]) == ["6650354", "5dcd576"]
    with pytest.raises(SystemExit, match="needs a commit"):
        against_commits(["bench", "--against"])
