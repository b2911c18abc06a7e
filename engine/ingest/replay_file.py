"""Replay files (docs/contracts.md: "Replay file"): CSV or JSON Lines rows ``ts,site,device,metric,value``."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson

from engine.core.batch import BatchBuilder, ReadingBatch
from engine.core.devices import DeviceIndex
from engine.core.quantities import METRIC_NAMES, value_name

COLUMNS = ("ts", "site", "device", "metric", "value")

Row = tuple[float, str, str, str, float]


class ReplayFileError(ValueError):
    """A replay file row that cannot be read; names the file and line."""


def read_rows(path: Path) -> Iterator[Row]:
    """Rows of a replay file in file order; the format follows the suffix (.csv, .jsonl)."""
    with path.open(encoding="utf-8", newline="") as fh:
        if path.suffix in (".jsonl", ".ndjson"):
            yield from _jsonl_rows(fh, path)
        else:
            yield from _csv_rows(fh, path)


def _check(row: Row, path: Path, line: int) -> Row:
    """The row in contract units: a metric in another unit (``rain_in``) is converted."""
    known = value_name(row[3])
    if known is None:
        raise ReplayFileError(f"{path}:{line}: unknown metric {row[3]!r}")
    return row[0], row[1], row[2], METRIC_NAMES[known.metric], known.convert(row[4])


def _csv_rows(fh: IO[str], path: Path) -> Iterator[Row]:
    reader = csv.reader(fh)
    header = next(reader, None)
    if header is None:
        return
    if tuple(h.strip() for h in header) != COLUMNS:
        raise ReplayFileError(f"{path}:1: header must be {','.join(COLUMNS)}, got {','.join(header)}")
    for line, rec in enumerate(reader, start=2):
        try:
            yield _check((float(rec[0]), rec[1], rec[2], rec[3], float(rec[4])), path, line)
        except (IndexError, ValueError) as exc:
            raise ReplayFileError(f"{path}:{line}: {exc}") from None


def _jsonl_rows(fh: IO[str], path: Path) -> Iterator[Row]:
    for line, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        try:
            d = orjson.loads(text)
            yield _check(
                (float(d["ts"]), str(d["site"]), str(d["device"]), str(d["metric"]), float(d["value"])), path, line
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ReplayFileError(f"{path}:{line}: {exc}") from None


def write_rows(path: Path, rows: Iterable[Row]) -> int:
    """Write rows as CSV or JSON Lines by suffix; returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        if path.suffix in (".jsonl", ".ndjson"):
            for r in rows:
                fh.write(orjson.dumps(dict(zip(COLUMNS, r, strict=True))).decode() + "\n")
                n += 1
        else:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow((repr(r[0]), r[1], r[2], r[3], repr(r[4])))
                n += 1
    return n


def batches(rows: Iterable[Row], devices: DeviceIndex, size: int) -> Iterator[ReadingBatch]:
    """Cut rows into columnar batches of ``size`` readings."""
    builder = BatchBuilder(devices)
    for ts, site, device, metric, value in rows:
        builder.add(site, device, ts, metric, value)
        if len(builder) >= size:
            yield builder.take()
    if len(builder):
        yield builder.take()
