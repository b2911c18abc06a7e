"""Camera recordings with each frame's own capture time: image folders and video files.

A recording is replayed (``gridwatch replay``) or published (``gridwatch camera``) with the time each frame
was taken, from one of:
- the file name, by a pattern (``FrameTimes.pattern``): ``epoch_ms`` (``1700000000123.jpg``, the replay
  layout of the contracts), ``epoch_offset`` (``<epoch>_<offset>.jpg``: a sequence's start in epoch
  seconds and the frame's offset from it in seconds, as wildfire tower archives name frames), ``epoch``
  (``1700000000.jpg``), or any regular expression with named groups ``epoch_ms``, ``epoch`` and ``offset``;
- a CSV with the columns ``file,ts`` (``ts`` in epoch seconds or ISO-8601 with an offset);
- a fixed interval from a start time (and, for a video, the video's own frame rate from its start).

A folder laid out as ``<site>/<camera>/<frames>`` is one camera per sub-folder; any other folder is one
camera. Frames come out in capture-time order; a file that does not decode is listed, never fatal.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from engine.ingest.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from engine.ingest.timestamps import parse_ts_text

PATTERNS = {
    "epoch_ms": r"^(?P<epoch_ms>\d{12,14})$",
    "epoch_offset": r"^(?P<epoch>\d{9,11})_(?P<offset>[+-]?\d+(?:\.\d+)?)$",
    "epoch": r"^(?P<epoch>\d{9,11}(?:\.\d+)?)$",
}


class RecordingError(ValueError):
    """A recording whose frame times cannot be known; the message says what to give instead."""


@dataclass
class FrameTimes:
    """How a recording's frames get their capture times (see the module docstring)."""

    pattern: str | None = None  # a name in PATTERNS or a regular expression; None: try every known pattern
    csv_path: Path | None = None
    start: float | None = None  # epoch seconds of the first frame, with ``interval_s`` or a video
    interval_s: float | None = None
    _csv: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.csv_path is not None:
            self._csv = read_times_csv(self.csv_path)

    def of_files(self, files: list[Path]) -> list[float]:
        """The capture time of each file, in the given order."""
        if self.csv_path is not None:
            missing = [f.name for f in files if f.name not in self._csv]
            if missing:
                raise RecordingError(f"{self.csv_path}: no time for {missing[0]} (and {len(missing) - 1} more)")
            return [self._csv[f.name] for f in files]
        if self.interval_s is not None:
            if self.start is None:
                raise RecordingError("--interval needs --start (epoch seconds or ISO-8601 of the first frame)")
            return [self.start + k * self.interval_s for k in range(len(files))]
        patterns = [PATTERNS.get(self.pattern, self.pattern)] if self.pattern else list(PATTERNS.values())
        for regex in patterns:
            times = [time_from_name(f.stem, regex) for f in files]
            if files and all(t is not None for t in times):
                return [t for t in times if t is not None]
        example = files[0].name if files else "(no files)"
        raise RecordingError(
            f"cannot read capture times from file names such as {example!r}: name the files <epoch_ms>.jpg or "
            "<epoch>_<offset>.jpg, give --times-csv FILE (file,ts), or --start and --interval"
        )


def time_from_name(stem: str, regex: str) -> float | None:
    """Epoch seconds from a file name's stem by a pattern with named groups.

    >>> time_from_name("1465065360_-02400", PATTERNS["epoch_offset"])
    1465062960.0
    >>> time_from_name("1700000000123", PATTERNS["epoch_ms"])
    1700000000.123
    """
    m = re.match(regex, stem)
    if m is None:
        return None
    groups = m.groupdict()
    if groups.get("epoch_ms"):
        return int(groups["epoch_ms"]) / 1000.0
    if groups.get("epoch") is None:
        return None
    return float(groups["epoch"]) + float(groups.get("offset") or 0.0)


def read_times_csv(path: Path) -> dict[str, float]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"file", "ts"} <= set(reader.fieldnames):
            raise RecordingError(f"{path}: a frame-time CSV needs the columns file,ts")
        out = {}
        for line, row in enumerate(reader, start=2):
            try:
                out[Path(row["file"]).name] = parse_ts_text(row["ts"])
            except ValueError as exc:  # TimestampError: not a number nor ISO-8601 with an offset
                raise RecordingError(f"{path}:{line}: {exc}") from None
        return out


@dataclass
class RecordedFrame:
    """One frame of a recording: where it is, its camera and capture time; the bytes are read on demand."""

    site: str
    camera: str
    ts: float
    path: Path
    index: int | None = None  # frame number in a video

    @property
    def source(self) -> str:
        return f"{self.path}#{self.index}" if self.index is not None else str(self.path)


def cameras_in(root: Path, site: str, camera: str) -> list[tuple[str, str, Path]]:
    """(site, camera, folder or video) of a recording: ``<site>/<camera>/`` sub-folders, or ``root`` itself."""
    if root.is_dir():
        nested = [
            (s.name, c.name, c)
            for s in sorted(p for p in root.iterdir() if p.is_dir())
            for c in sorted(p for p in s.iterdir() if p.is_dir())
            if any(f.suffix.lower() in IMAGE_SUFFIXES for f in c.iterdir())
        ]
        if nested:
            return nested
    return [(site, camera, root)]


def recorded_frames(root: Path, site: str, camera: str, times: FrameTimes) -> list[RecordedFrame]:
    """Every frame of a recording with its capture time, in time order (cameras interleaved)."""
    out: list[RecordedFrame] = []
    for s, c, path in cameras_in(root, site, camera):
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise RecordingError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out += [RecordedFrame(s, c, t, f) for t, f in zip(times.of_files(files), files, strict=True)]
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            if times.start is None:
                raise RecordingError(f"{path}: give --start (the capture time of the video's first frame)")
            cap = cv2.VideoCapture(str(path))
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.release()
            step = times.interval_s or 1.0 / fps
            out += [RecordedFrame(s, c, times.start + k * step, path, k) for k in range(count)]
        else:
            raise RecordingError(f"{path}: not an image folder or a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    out.sort(key=lambda f: (f.ts, f.site, f.camera))
    return out


def frame_bytes(frames: list[RecordedFrame]) -> Iterator[tuple[RecordedFrame, bytes | None]]:
    """Each frame's encoded bytes (files as they are; video frames as JPEG), None where a video frame is lost."""
    videos: dict[Path, tuple[cv2.VideoCapture, int]] = {}
    try:
        for f in frames:
            if f.index is None:
                yield f, f.path.read_bytes()
                continue
            cap, at = videos.get(f.path) or (cv2.VideoCapture(str(f.path)), 0)
            if at != f.index:
                cap.set(cv2.CAP_PROP_POS_FRAMES, f.index)
            ok, img = cap.read()
            videos[f.path] = (cap, f.index + 1)
            yield f, (cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes() if ok else None)
    finally:
        for cap, _ in videos.values():
            cap.release()
