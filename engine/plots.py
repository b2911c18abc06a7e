"""PNG plots of tuning sweeps (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from engine.tuning import Point


def sweep_plot(
    path: Path, points: list[Point], current: Point, best: Point | None, level: str, title: str, frames: bool = False
) -> Path:
    """Precision against recall, and median lead time against false alarms, one dot per sweep point (for a
    camera detector, ``frames``, the second panel is the ROC: recall against the per-frame false-alarm rate);
    the third panel is F1 against the first swept parameter, one line per value of the others."""
    scored = [p for p in points if p.scores]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.5))
    label = ", ".join(sorted(scored[0].values)) if scored else ""
    second = (
        (ax2, "false_alarm_rate", "recall", "false-alarm rate (share of frames without it)", "recall")
        if frames
        else (
            ax2,
            "false_alarms_per_site_month",
            "lead_h_median",
            "false alarms per site-month",
            "median lead time (h)",
        )
    )
    for ax, x, y, xl, yl in ((ax1, "recall", "precision", "recall", "precision"), second):
        xs = [p.scores[level][x] for p in scored]
        ys = [p.scores[level][y] for p in scored]
        ax.plot(xs, ys, "o", color="tab:blue", alpha=0.7, label=f"sweep of {label}")
        ax.plot([current.scores[level][x]], [current.scores[level][y]], "*", ms=16, color="tab:red", label="current")
        if best is not None:
            ax.plot([best.scores[level][x]], [best.scores[level][y]], "s", ms=10, mfc="none", mec="tab:green",
                    mew=2, label="suggested")  # fmt: skip
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    if scored:
        swept_panel(ax3, scored, current, best, level)
    ax1.set_xlim(-0.05, 1.05)
    ax1.set_ylim(-0.05, 1.05)
    ax1.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{title}: {'class' if frames else 'level'} {level}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def swept_panel(ax: Axes, scored: list[Point], current: Point, best: Point | None, level: str) -> None:
    """F1 against the first swept parameter, one line per combination of the other swept values; the
    current config's F1 as a dashed line, the suggestion ringed."""
    names = list(scored[0].values)
    first, others = names[0], names[1:]
    groups: dict[tuple[float, ...], list[Point]] = {}
    for p in scored:
        groups.setdefault(tuple(p.values[n] for n in others), []).append(p)
    for key, group in groups.items():
        group.sort(key=lambda p: p.values[first])
        label = ", ".join(f"{n}={v:g}" for n, v in zip(others, key, strict=True)) or "F1"
        ax.plot([p.values[first] for p in group], [p.scores[level]["f1"] for p in group], "o-", alpha=0.8, label=label)
    ax.axhline(current.scores[level]["f1"], color="tab:red", ls="--", lw=1, label="current")
    if best is not None:
        ax.plot([best.values[first]], [best.scores[level]["f1"]], "s", ms=11, mfc="none", mec="tab:green", mew=2,
                label="suggested")  # fmt: skip
    ax.set_xlabel(first)
    ax.set_ylabel("F1")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)
