"""Camera recordings with each frame's own capture time: image folders and video files.

A recording is replayed (``gridwatch replay``) or published (``gridwatch camera``) with the time each frame
was taken, from one of:
- the file name, by a pattern (``FrameTimes.pattern``): ``epoch_ms`` (``1700000000123.jpg``, the replay
  layout of the contracts); ``capture_ignition`` (alias ``figlib``: ``<epoch>_<offset>.jpg`` where the
  first number is the frame's capture time and the second its seconds from ignition, negative before it,
  as the public wildfire ignition library FIgLib names frames: ``1465065360_-02400.jpg`` was taken at
  1465065360, 40 min before an ignition at 1465067760); ``start_offset`` (``<epoch>_<offset>.jpg`` where
  every file shares the first number, a sequence's start, and the second is the frame's offset from it);
  ``epoch_offset`` (either of the two, told apart by the names: one shared first number is a start,
  first numbers that differ are capture times); ``epoch`` (``1700000000.jpg``); or any regular
  expression with named groups ``epoch_ms``, ``epoch``, ``offset`` (added to ``epoch``: a start) and
  ``from_ignition`` (not added: ``epoch`` is the capture time);
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

TWO_NUMBERS = r"^(?P<epoch>\d{9,11})_(?P<{second}>[+-]?\d+(?:\.\d+)?)$"
PATTERNS = {
    "epoch_ms": r"^(?P<epoch_ms>\d{12,14})$",
    "epoch_offset": TWO_NUMBERS.replace("{second}", "offset"),  # told apart by the names (see two_number_times)
    "capture_ignition": TWO_NUMBERS.replace("{second}", "from_ignition"),
    "start_offset": TWO_NUMBERS.replace("{second}", "offset"),
    "epoch": r"^(?P<epoch>\d{9,11}(?:\.\d+)?)$",
}
ALIASES = {"figlib": "capture_ignition"}


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
    # What the names said, once read: the convention used, and the ignition time where the names give
    # each frame's seconds from ignition (FIgLib); ``replay`` reports both.
    convention: str = field(default="", init=False)
    ignition: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.pattern = ALIASES.get(self.pattern or "", self.pattern)
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
        names = [self.pattern] if self.pattern else ["epoch_ms", "epoch_offset", "epoch"]
        for name in names:
            if name in ("epoch_offset", "capture_ignition", "start_offset"):
                two = two_number_times([f.stem for f in files], name)
                if two is not None:
                    times, self.convention, self.ignition = two
                    return times
                continue
            regex = PATTERNS.get(name, name)
            found = [time_from_name(f.stem, regex) for f in files]
            read = [x for x in found if x is not None]
            if files and len(read) == len(files):
                self.convention = name if name in PATTERNS else "regex"
                ignitions = {round(t - v, 3) for t, v in read if v is not None}
                self.ignition = ignitions.pop() if len(ignitions) == 1 else None
                return [t for t, _ in read]
        example = files[0].name if files else "(no files)"
        raise RecordingError(
            f"cannot read capture times from file names such as {example!r}: name the files <epoch_ms>.jpg or "
            "<epoch>_<offset>.jpg, give --times-csv FILE (file,ts), or --start and --interval"
        )


def two_number_times(stems: list[str], name: str) -> tuple[list[float], str, float | None] | None:
    """Capture times of ``<epoch>_<offset>`` names, the convention read and the ignition time (or None).

    ``capture_ignition``: the first number is the capture time, the second the seconds from ignition.
    ``start_offset``: every name shares the first number, a start; the capture time is start + offset.
    ``epoch_offset``: one of the two, by the names: a first number shared by every file is a start,
    first numbers that differ are capture times (a lone file: its first number is its time).

    >>> two_number_times(["1465065360_-02400", "1465065420_-02340"], "epoch_offset")
    ([1465065360.0, 1465065420.0], 'capture_ignition', 1465067760.0)
    >>> two_number_times(["1700000000_0", "1700000000_60"], "epoch_offset")
    ([1700000000.0, 1700000060.0], 'start_offset', None)
    """
    pairs = []
    for stem in stems:
        m = re.match(PATTERNS["start_offset"], stem)
        if m is None:
            return None
        pairs.append((float(m["epoch"]), float(m["offset"])))
    if not pairs:
        return None
    shared_start = len(pairs) > 1 and len({e for e, _ in pairs}) == 1
    if name == "start_offset" and not shared_start and len(pairs) > 1:
        raise RecordingError(
            f"--times start_offset: the first numbers of names such as {stems[0]!r} differ from file to file, so "
            "they are capture times, not a shared start (FIgLib names <capture>_<seconds from ignition>): use "
            "--times capture_ignition"
        )
    if name == "start_offset" or (name == "epoch_offset" and shared_start):
        return [e + o for e, o in pairs], "start_offset", None
    ignitions = sorted(e - o for e, o in pairs)
    ignition = ignitions[len(ignitions) // 2] if ignitions[-1] - ignitions[0] <= 1.0 else None
    return [e for e, _ in pairs], "capture_ignition", ignition


def time_from_name(stem: str, regex: str) -> tuple[float, float | None] | None:
    """(capture time in epoch seconds, seconds from ignition or None) from a file name's stem by a pattern
    with named groups: ``epoch_ms``; or ``epoch`` plus ``offset`` (a start and the offset from it); or
    ``epoch`` the capture time and ``from_ignition``.

    >>> time_from_name("1465065360_-02400", PATTERNS["capture_ignition"])
    (1465065360.0, -2400.0)
    >>> time_from_name("1700000000123", PATTERNS["epoch_ms"])
    (1700000000.123, None)
    """
    m = re.match(regex, stem)
    if m is None:
        return None
    groups = m.groupdict()
    if groups.get("epoch_ms"):
        return int(groups["epoch_ms"]) / 1000.0, None
    if groups.get("epoch") is None:
        return None
    from_ignition = groups.get("from_ignition")
    return (
        float(groups["epoch"]) + float(groups.get("offset") or 0.0),
        float(from_ignition) if from_ignition is not None else None,
    )


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
