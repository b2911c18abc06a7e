"""``gridwatch tune``: what would a detector's thresholds have done on recorded data with known events?

Each sweep point is one detector config (the current one with the swept fields changed). The data is
replayed through the quality screens and that detector, once per point, in parallel processes; the
findings are scored against the ground truth per level (``engine.evaluation.score_levels``). The best
point under the user's constraint becomes a suggested YAML patch.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from detectors.base import DetectorConfig, registry
from engine.config.models import EngineConfig
from engine.core.devices import DeviceIndex
from engine.core.findings import Finding
from engine.evaluation import read_truth, score_levels
from engine.ingest.replay_file import Row, batches, read_rows


class TuneError(ValueError):
    """A sweep or constraint the user gave that cannot be run; the message says what to write instead."""


@dataclass(frozen=True)
class Sweep:
    """One swept field: a dotted path into the detector's config and the values it takes.

    >>> Sweep.parse("levels.red=1:2:0.5").values
    (1.0, 1.5, 2.0)
    """

    path: str
    values: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> Sweep:
        try:
            path, spec = text.split("=", 1)
            start, stop, step = (float(x) for x in spec.split(":"))
        except ValueError:
            raise TuneError(f"--sweep {text!r}: write PARAM=START:STOP:STEP, e.g. levels.red=1:5:0.5") from None
        if step <= 0 or stop < start:
            raise TuneError(f"--sweep {text!r}: STEP must be positive and STOP not below START")
        n = int(np.floor((stop - start) / step + 1e-9)) + 1
        return cls(path.strip(), tuple(round(start + i * step, 10) for i in range(n)))


@dataclass(frozen=True)
class Constraint:
    """``--max-false-alarms N/site-year``, ``--min-recall R`` at a level, or, for a camera detector,
    ``--max-false-alarm-rate F``: at most this share of the frames without the class alarm on it."""

    max_false_alarms_per_site_year: float | None = None
    min_recall: float | None = None
    max_false_alarm_rate: float | None = None

    def allows(self, s: dict[str, float]) -> bool:
        limit = self.max_false_alarms_per_site_year
        if limit is not None and s["false_alarms_per_site_month"] * 12 > limit + 1e-12:
            return False
        rate = self.max_false_alarm_rate
        if rate is not None and s.get("false_alarm_rate", 0.0) > rate + 1e-12:
            return False
        return not (self.min_recall is not None and s["recall"] < self.min_recall)

    @staticmethod
    def parse_rate(text: str) -> float:
        number, _, unit = text.partition("/")
        per = {"": 1.0, "site-year": 1.0, "site-month": 12.0}
        if unit not in per:
            raise TuneError(f"--max-false-alarms {text!r}: write N/site-year or N/site-month")
        return float(number) * per[unit]


def set_path(data: dict[str, Any], path: str, value: float) -> None:
    """Set a dotted path (``rules.0.levels.red``) in a config dict, creating mapping keys as needed."""
    parts = path.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise TuneError(f"{path}: {'.'.join(parts[: i + 1])} is not an index of a list of {len(node)}")
            node = node[int(part)]
        else:
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def get_path(data: Any, path: str) -> float:
    """The number at a dotted path of a config dict, NaN where it is unset (a default from elsewhere).

    >>> get_path({"levels": {"red": 2.0}, "rules": [{"x": 1}]}, "levels.red"), get_path({"a": None}, "a.b")
    (2.0, nan)
    """
    node = data
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and node.get(part) is not None:
            node = node[part]
        else:
            return float("nan")
    return float(node) if isinstance(node, int | float) else float("nan")


@dataclass
class Point:
    values: dict[str, float]
    config: DetectorConfig | None
    error: str = ""
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


def sweep_points(detector: DetectorConfig, sweeps: list[Sweep]) -> list[Point]:
    """Every combination of the swept values, validated by the detector's own config class."""
    cls = type(detector)
    points = []
    for combo in itertools.product(*(s.values for s in sweeps)):
        values = {s.path: v for s, v in zip(sweeps, combo, strict=True)}
        data = detector.model_dump(mode="json")
        for path, v in values.items():
            set_path(data, path, v)
        try:
            points.append(Point(values, cls.model_validate(data)))
        except ValidationError as exc:
            first = exc.errors()[0]
            points.append(Point(values, None, f"{'.'.join(map(str, first['loc']))}: {first['msg']}"))
    return points


def find_detector(cfg: EngineConfig, detector_id: str) -> DetectorConfig:
    for d in cfg.detectors:
        if d.name == detector_id:
            return d
    known = ", ".join(d.name for d in cfg.detectors)
    raise TuneError(f"no detector {detector_id!r} in the config; its detectors are: {known}")


_ROWS: dict[str, list[Row]] = {}  # each worker process reads a file once


def _rows(path: str) -> list[Row]:
    if path not in _ROWS:
        _ROWS[path] = list(read_rows(Path(path)))
    return _ROWS[path]


def run_point(data: str, screens: list[DetectorConfig], detector: DetectorConfig, batch_size: int) -> list[Finding]:
    """Replay the data through the screens and one detector config, with the runners' first call
    (``Pipeline.detect_batch``); the detector's findings (the screens' own are not scored)."""
    from engine.flow.pipeline import Pipeline
    from engine.incidents.tracker import IncidentPolicy, IncidentTracker

    devices = DeviceIndex()
    tuned = registry.build(detector)
    pipeline = Pipeline([registry.build(c) for c in screens] + [tuned], IncidentTracker(IncidentPolicy()), devices)
    found: list[Finding] = []
    for batch in batches(_rows(data), devices, batch_size):
        found.extend(f for f, _ in pipeline.detect_batch(batch) if f.detector == tuned.name)
        if pipeline.failures_total:  # a detector that raised would score as one that found nothing
            failure = pipeline.failures[-1]
            raise TuneError(f"detector {failure.detector} raised on {data}: {failure.error}")
    return found


def _score_point(
    args: tuple[list[str], list[DetectorConfig], DetectorConfig, int, list[dict[str, Any]], float],
) -> dict[str, dict[str, float]]:
    """Score one config over every data file; sites are told apart by their file (``<n>:<site>``)."""
    files, screens, detector, batch_size, truth, site_months = args
    found: list[Finding] = []
    for n, data in enumerate(files):
        found.extend(replace(f, site=f"{n}:{f.site}") for f in run_point(data, screens, detector, batch_size))
    return score_levels(truth, found, detector.hazard, site_months)


def site_months(path: Path) -> float:
    """Sites times months of data in a replay file (the exposure false alarms are counted against)."""
    rows = _rows(str(path))
    if not rows:
        return 0.0
    ts = [r[0] for r in rows]
    return len({r[1] for r in rows}) * (max(ts) - min(ts)) / (30.0 * 86400.0)


def tune(
    cfg: EngineConfig,
    data: list[Path],
    truth_paths: list[Path],
    detector_id: str,
    sweeps: list[Sweep],
    workers: int = 0,
    on_point_done: Any = None,
) -> tuple[Point, list[Point]]:
    """Score the current config and every sweep point; returns (current, points)."""
    detector = find_detector(cfg, detector_id)
    screens = [d for d in cfg.detectors if d.enabled and registry.get(d.type).screens and d is not detector]
    if len(data) != len(truth_paths):
        raise TuneError(f"give one --truth per --data ({len(data)} data files, {len(truth_paths)} truth files)")
    truth = [{**t, "site": f"{n}:{t['site']}"} for n, path in enumerate(truth_paths) for t in read_truth(path)]
    if not any(t["hazard"] == detector.hazard for t in truth):
        hazards = sorted({t["hazard"] for t in truth})
        raise TuneError(f"the truth has no {detector.hazard!r} events to score {detector_id!r} on (it has {hazards})")
    exposure = sum(site_months(p) for p in data)
    files = [str(p) for p in data]
    return score_sweep(
        detector,
        sweeps,
        lambda c: (files, screens, c, cfg.ingest.batch_max, truth, float(exposure)),
        _score_point,
        workers,
        on_point_done,
    )


def score_sweep(
    detector: DetectorConfig,
    sweeps: list[Sweep],
    job_of: Callable[[DetectorConfig], Any],
    score: Callable[[Any], dict[str, dict[str, float]]],
    workers: int = 0,
    on_point_done: Any = None,
) -> tuple[Point, list[Point]]:
    """Score the current config and every valid sweep point with ``score(job_of(config))``, in parallel
    processes (``workers``, default one per core); returns (current, points)."""
    current = Point({s.path: get_path(detector.model_dump(mode="json"), s.path) for s in sweeps}, detector)
    points = sweep_points(detector, sweeps)
    todo = [current, *[p for p in points if p.config is not None]]
    jobs = [job_of(p.config) for p in todo if p.config is not None]
    n = workers or min(len(jobs), os.cpu_count() or 1)
    results: list[dict[str, dict[str, float]]] = []
    if n <= 1:
        for job in jobs:
            results.append(score(job))
            if on_point_done:
                on_point_done()
    else:
        with ProcessPoolExecutor(max_workers=n) as pool:
            for r in pool.map(score, jobs):
                results.append(r)
                if on_point_done:
                    on_point_done()
    for p, r in zip(todo, results, strict=True):
        p.scores = r
    return current, points


def best_point(points: list[Point], level: str, constraint: Constraint) -> Point | None:
    """The highest-F1 point at ``level`` that the constraint allows. Ties go to the cautious side: fewer false
    alarms; then a config whose level thresholds all differ (yellow equal to blue is one level, not two); then
    the middle of the tied plateau, away from its edges (an edge is one sweep step from a worse score, or the
    end of the sweep: a threshold of 0.0 one step from a false alarm, 0.125 where 0.97 scores as well); then
    more lead time.

    >>> def pt(x, f1):
    ...     return Point({"x": x}, None, scores={"red": {"f1": f1, "false_alarms_per_site_month": 0.0,
    ...                                                  "recall": 1.0, "lead_h_median": 10.0 - x}})
    >>> best_point([pt(x, 0.5 if x == 0 else 1.0) for x in range(7)], "red", Constraint()).values
    {'x': 3}
    """
    ok = [p for p in points if p.scores and constraint.allows(p.scores[level])]
    if not ok:
        return None

    def score(p: Point) -> tuple[float, float]:
        s = p.scores[level]
        return (round(float(s["f1"]), 9), -float(s.get("false_alarms", 0)))

    top = max(score(p) for p in ok)
    tied = [p for p in ok if score(p) == top]
    margins = plateau_margins(points, tied)

    def key(p: Point) -> tuple[bool, float, float]:
        lead = p.scores[level].get("lead_h_median", float("nan"))
        return (not degenerate_levels(p), margins[id(p)], lead if np.isfinite(lead) else -np.inf)

    return max(tied, key=key)


def plateau_margins(points: list[Point], tied: list[Point]) -> dict[int, float]:
    """For each tied point: how many sweep steps (Chebyshev, over the sweep's grid) to the nearest point that
    is not tied, or to the sweep's end. The point deepest inside the plateau is the safest choice."""
    paths = sorted({k for p in points for k in p.values})
    axes = {k: sorted({p.values[k] for p in points if k in p.values}) for k in paths}

    def cell(p: Point) -> tuple[int, ...]:
        return tuple(axes[k].index(p.values[k]) for k in paths)

    inside = {id(p) for p in tied}
    others = [cell(p) for p in points if id(p) not in inside]
    out: dict[int, float] = {}
    for p in tied:
        c = cell(p)
        edge = min((min(i + 1, len(axes[k]) - i) for i, k in zip(c, paths, strict=True)), default=0)
        near = min((max(abs(a - b) for a, b in zip(c, o, strict=True)) for o in others), default=edge)
        out[id(p)] = float(min(edge, near))
    return out


def degenerate_levels(p: Point) -> bool:
    """Two levels of the point's config share one threshold (``levels``, anywhere in it)."""
    if p.config is None:
        return False

    def walk(v: Any) -> bool:
        if isinstance(v, dict):
            levels = v.get("levels")
            if isinstance(levels, dict):
                nums = [x for x in levels.values() if isinstance(x, int | float)]
                if len(nums) != len(set(nums)):
                    return True
            return any(walk(x) for x in v.values())
        if isinstance(v, list):
            return any(walk(x) for x in v)
        return False

    return walk(p.config.model_dump(mode="json"))


def suggested_changes(detector: DetectorConfig, point: Point) -> dict[str, Any]:
    """The fields of the detector's config that the point changes, with their new values."""
    assert point.config is not None
    new = point.config.model_dump(mode="json", exclude_defaults=True)
    old = detector.model_dump(mode="json", exclude_defaults=True)
    return {k: v for k, v in new.items() if old.get(k) != v}


def yaml_patch(detector: DetectorConfig, point: Point, camera: bool = False) -> str:
    """The suggested change as the YAML of the detector's entry in ``detectors:`` (``cameras.detectors``)."""
    import yaml

    entry = {"id": detector.name, **suggested_changes(detector, point)}
    doc: dict[str, Any] = {"cameras": {"detectors": [entry]}} if camera else {"detectors": [entry]}
    text: str = yaml.safe_dump(doc, sort_keys=False)
    return "# merge into the detector with this id\n" + text


# Camera detectors: image folders with per-frame labels


def read_frame_truth(path: Path) -> dict[str, set[str]]:
    """Per-frame labels: a CSV with a ``frame`` column (the file's path relative to its folder) and one
    0/1 column per class (``fire``, ``smoke``); returns each frame's set of present classes.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = p.write_text("frame,fire,smoke\\na.jpg,1,0\\nb.jpg,0,0\\n")
    >>> read_frame_truth(p)
    {'a.jpg': {'fire'}, 'b.jpg': set()}
    """
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "frame" not in reader.fieldnames:
            raise TuneError(f"{path}: a frame truth CSV needs a `frame` column and one 0/1 column per class")
        classes = [c for c in reader.fieldnames if c != "frame"]
        return {row["frame"]: {c for c in classes if row[c].strip() in ("1", "true", "yes")} for row in reader}


def find_camera_detector(cfg: EngineConfig, detector_id: str) -> DetectorConfig | None:
    return next((d for d in cfg.cameras.detectors if d.name == detector_id), None)


def _frame_scores(counts: list[int]) -> dict[str, float]:
    tp, fp, fn, tn = counts
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "alarms": tp + fp, "hits": tp, "misses": fn, "false_alarms": fp,
        "precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
        "false_alarm_rate": round(fp / (fp + tn), 4) if fp + tn else 0.0,
        "false_alarms_per_site_month": float("nan"), "lead_h_median": float("nan"), "lead_h_p10": float("nan"),
    }  # fmt: skip


def _score_frames(
    args: tuple[list[str], list[dict[str, set[str]]], DetectorConfig, tuple[str, int | None] | None],
) -> dict[str, dict[str, float]]:
    """Frame-level scores per class of one camera detector config over image folders (no confirmation), by
    the detector's one alarm rule (``level_of``: the levels it sweeps are recomputed with the config). Each
    folder is a camera: its scores are also given under ``<class>@<folder>``."""
    from detectors.vision.base import Frame, FrameBatch, frame_registry
    from engine.ingest.frames import decode

    folders, truths, config, head = args
    det = frame_registry.build(config)
    if head is not None:  # a camera's learned head (``tune --head``)
        from engine.flow.camera_learning import use_head_file

        use_head_file(det, Path(head[0]), head[1])
    counts: dict[str, list[int]] = {c: [0, 0, 0, 0] for c in det.classes}  # tp, fp, fn, tn
    per_camera: dict[str, list[int]] = {}
    for folder, truth in zip(folders, truths, strict=True):
        for name, present in sorted(truth.items()):
            image = decode((Path(folder) / name).read_bytes(), thermal=det.modality == "thermal")
            (obs,) = det.observe(FrameBatch([Frame("tune", name, 0.0, image, name)]), det.new_state())
            for c in det.classes:
                pred = bool(det.level_of(c, obs.scores.get(c, 0.0)))
                k = (0 if c in present else 1) if pred else (2 if c in present else 3)
                counts[c][k] += 1
                per_camera.setdefault(f"{c}@{Path(folder).name}", [0, 0, 0, 0])[k] += 1
    out = {c: _frame_scores(v) for c, v in counts.items()}
    if len(folders) > 1:
        out.update({key: _frame_scores(v) for key, v in per_camera.items()})
    return out


def tune_frames(
    cfg: EngineConfig,
    folders: list[Path],
    truth_paths: list[Path],
    detector_id: str,
    sweeps: list[Sweep],
    workers: int = 0,
    on_point_done: Any = None,
    head: Path | None = None,
    head_version: int | None = None,
) -> tuple[Point, list[Point]]:
    """``tune`` for a camera detector: image folders with per-frame labels instead of replays and events;
    ``head``: scored with a camera's learned head (its folder or heads.json; ``head_version``, else current)."""
    detector = find_camera_detector(cfg, detector_id)
    if detector is None:
        raise TuneError(f"no camera detector {detector_id!r} in the config")
    if len(folders) != len(truth_paths):
        raise TuneError(f"give one --truth per --data ({len(folders)} folders, {len(truth_paths)} truth files)")
    for f in folders:
        if not f.is_dir():
            raise TuneError(f"--data {f}: a camera detector is tuned on an image folder")
    truths = [read_frame_truth(p) for p in truth_paths]
    for folder, truth in zip(folders, truths, strict=True):
        missing = [n for n in truth if not (folder / n).is_file()]
        if missing:
            raise TuneError(f"{folder}: the truth names frames that are not there, e.g. {missing[0]}")
    names = [str(f) for f in folders]
    learned: tuple[str, int | None] | None = None
    if head is not None:
        from detectors.vision.camera_heads import read_head

        try:
            read_head(head, head_version)  # a bad file stops here, not in each worker
        except ValueError as exc:
            raise TuneError(str(exc)) from None
        learned = (str(head), head_version)
    return score_sweep(detector, sweeps, lambda c: (names, truths, c, learned), _score_frames, workers, on_point_done)
