"""Recorded operator verdicts for ``gridwatch replay FOLDER --verdicts FILE``.

A CSV file with a header, or JSON Lines, one verdict a row:

- ``ts``: when the operator gave it (epoch seconds or ISO-8601 with offset); it applies to the camera's
  frames captured from then on, judging the camera's latest alarm before it;
- ``camera``: ``<site>/<camera>`` or the camera id alone (then ``site`` names the site, or the replay's);
- ``verdict``: ``false_alarm``, ``fire`` or ``smoke``;
- ``region`` (optional): the region judged, ``x y w h`` as fractions of the frame (spaces or commas; in JSON
  a list of four numbers); empty: the alarm's own cells.

```
ts,camera,verdict,region
2023-11-14T22:33:20+00:00,T1/tower,false_alarm,0.1 0.3 0.2 0.2
1700001800,T1/tower,smoke,
```

A row that cannot be read stops the replay with the file, the line and the reason (``VerdictFileError``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.ingest.timestamps import parse_ts_text

VERDICT_NAMES = ("false_alarm", "fire", "smoke")


class VerdictFileError(ValueError):
    """A verdict file that cannot be read, with the file, the line and why."""


@dataclass(frozen=True)
class RecordedVerdict:
    """One row of a verdict file."""

    ts: float
    site: str
    camera: str
    verdict: str
    region: tuple[float, float, float, float] | None = None


def parse_region(value: Any) -> tuple[float, float, float, float] | None:
    """``x y w h`` as fractions (text with spaces or commas, or a list), inside the frame; None when empty.

    >>> parse_region("0.1 0.2 0.3 0.4"), parse_region(""), parse_region([0, 0, 1, 1])
    ((0.1, 0.2, 0.3, 0.4), None, (0.0, 0.0, 1.0, 1.0))
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parts = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    try:
        x, y, w, h = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"region {value!r}: four numbers x y w h, as fractions of the frame") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or not (0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0):
        raise ValueError(f"region {value!r}: x, y in [0, 1), w, h above 0, as fractions of the frame")
    if x + w > 1 + 1e-6 or y + h > 1 + 1e-6:
        raise ValueError(f"region {value!r} reaches past the frame's edge (x + w and y + h at most 1)")
    return (x, y, w, h)


def verdict_row(row: dict[str, Any], default_site: str) -> RecordedVerdict:
    """One row (a CSV row or a JSON object) as a verdict; ``ValueError`` with the reason."""
    ts_raw = row.get("ts")
    if ts_raw is None or (isinstance(ts_raw, str) and not ts_raw.strip()):
        raise ValueError("no ts: when the verdict was given (epoch seconds or ISO-8601)")
    if isinstance(ts_raw, bool):
        raise ValueError(f"ts {ts_raw!r}: epoch seconds or ISO-8601")
    ts = float(ts_raw) if isinstance(ts_raw, int | float) else parse_ts_text(str(ts_raw))
    if not math.isfinite(ts):
        raise ValueError(f"ts {ts_raw!r}: a finite time")
    camera = str(row.get("camera") or "").strip()
    site = str(row.get("site") or "").strip()
    if "/" in camera:
        site, _, camera = camera.partition("/")
    if not camera:
        raise ValueError("no camera: <site>/<camera> or the camera id")
    verdict = str(row.get("verdict") or "").strip().lower().replace(" ", "_").replace("-", "_")
    if verdict not in VERDICT_NAMES:
        raise ValueError(f"verdict {row.get('verdict')!r}: one of {', '.join(VERDICT_NAMES)}")
    return RecordedVerdict(ts, site or default_site, camera, verdict, parse_region(row.get("region")))


def read_verdicts(path: Path, default_site: str = "replay") -> list[RecordedVerdict]:
    """The verdicts of a CSV or JSON Lines file, in time order."""
    text = path.read_text(encoding="utf-8")
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise VerdictFileError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(doc, dict):
                raise VerdictFileError(f"{path}:{n}: a JSON object per line, with ts, camera, verdict")
            rows.append((n, doc))
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = {"ts", "camera", "verdict"} - set(reader.fieldnames or [])
        if missing:
            raise VerdictFileError(f"{path}:1: the header needs ts, camera, verdict (and region); missing "
                                   f"{', '.join(sorted(missing))}")  # fmt: skip
        rows = [(n, dict(r)) for n, r in enumerate(reader, start=2)]
    out = []
    for n, row in rows:
        try:
            out.append(verdict_row(row, default_site))
        except ValueError as exc:
            raise VerdictFileError(f"{path}:{n}: {exc}") from None
    return sorted(out, key=lambda v: v.ts)
