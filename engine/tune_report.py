"""What ``gridwatch tune`` shows and writes: the table on screen (the current and the suggested point
marked), per camera for a camera detector, ``tune.csv``, ``tune.png`` (scores against the swept values)
and ``suggested.yaml`` (the patch that applies the suggestion)."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from detectors.base import DetectorConfig
from engine.plots import sweep_plot
from engine.tuning import Point, Sweep, yaml_patch


def write_report(
    console: Console, out: Path, detector: str, data_names: str, level: str, sweeps: list[Sweep], current: Point,
    points: list[Point], best: Point | None, det_cfg: DetectorConfig, camera: bool, per_camera: bool = False,
) -> None:  # fmt: skip
    """Print and write the sweep's report to ``out``; the data are named by ``data_names``; ``per_camera``
    adds the suggested point's scores per camera (a camera detector tuned on several folders)."""
    out.mkdir(parents=True, exist_ok=True)
    cols = ["precision", "recall", "f1", "false_alarms_per_site_month", "lead_h_median", "lead_h_p10"]
    if camera:
        cols = ["precision", "recall", "f1", "false_alarm_rate"]
    table = Table(title=f"{detector} at level {level} on {data_names}")
    for name in [*(s.path for s in sweeps), "hits", "misses", "false_alarms", *cols]:
        table.add_column(name, justify="right")
    rows_csv = []
    for p in [current, *points]:
        tag = "current" if p is current else ("suggested" if p is best else "")
        vals = ["current" if p is current else f"{p.values[s.path]:g}" for s in sweeps]
        if not p.scores:
            table.add_row(*vals, f"[dim]invalid: {p.error}[/]", *[""] * (len(cols) + 1))
            rows_csv.append({**{s.path: p.values[s.path] for s in sweeps}, "error": p.error})
            continue
        sc = p.scores[level]
        style = "bold green" if tag == "suggested" else ("bold red" if tag == "current" else "")
        table.add_row(
            *vals, *(f"{sc[c]:g}" for c in ("hits", "misses", "false_alarms")), *(f"{sc[c]:.3g}" for c in cols),
            style=style,
        )  # fmt: skip
        for lv, scores in p.scores.items():
            rows_csv.append({**{s.path: p.values[s.path] for s in sweeps}, "point": tag, "level": lv, **scores})
    console.print(table)
    if per_camera and best is not None:
        cams = Table(title=f"the suggested point per camera (folder), class {level}")
        for name in ("camera", "hits", "misses", "false_alarms", *cols):
            cams.add_column(name, justify="right")
        for key, sc in sorted(best.scores.items()):
            if key.startswith(f"{level}@"):
                cams.add_row(key.partition("@")[2], *(f"{sc[c]:g}" for c in ("hits", "misses", "false_alarms")),
                             *(f"{sc[c]:.3g}" for c in cols))  # fmt: skip
        console.print(cams)
    fields = [s.path for s in sweeps] + ["point", "level", "error", "alarms", "hits", "misses", "false_alarms"]
    fields += [c for c in ("precision", "recall", "f1", "false_alarms_per_site_month", "lead_h_median", "lead_h_p10",
                           "false_alarm_rate") if c in cols or not camera]  # fmt: skip
    with (out / "tune.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows_csv)
    png = sweep_plot(out / "tune.png", points, current, best, level, f"{detector} on {data_names}", frames=camera)
    console.print(f"wrote {out / 'tune.csv'} and {png}")
    if best is None:
        console.print("[yellow]no sweep point meets the constraint; loosen it or widen the sweep[/]")
        return
    patch = yaml_patch(det_cfg, best, camera=camera)
    (out / "suggested.yaml").write_text(patch, encoding="utf-8")
    console.print(f"suggested (best F1 at {level} within the constraint) -> {out / 'suggested.yaml'}:\n{patch}")
