"""The camera stage's files on disk, bounded: alarm snapshots and the frames kept for verdicts.

Every camera finding writes its frame with the region drawn (``<site>/<camera>/<ms>.jpg``, the incident's
snapshot) and, with learning, the frame as it came (``<ms>.frame.jpg``, at most one per camera every 30 s);
a long alarm writes one of the first per analysed frame. ``SnapshotRetention`` keeps them within
``cameras.snapshot_quota_mb`` and ``cameras.snapshot_retention_days``: the oldest (by capture time, from
the name) go first, never one an open incident still shows (its latest finding per camera and detector, and
the kept frame of that instant, what a verdict on it learns from). A camera's learned examples hold their
own copies (features in ``camera_heads/<site>/<camera>/examples.npz``), never a path here.

Grid reports' photos are bounded differently (``ReportQuota``): a report over ``reports.photo_quota_mb`` is
filed without its photo, as a person's evidence must not silently disappear; a camera's new alarm matters
more than its old ones, so here the oldest make room.
"""

from __future__ import annotations

import heapq
import logging
import re
import threading
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from engine import metrics

SNAPSHOT_FILE = re.compile(r"^(\d{1,16})(?:\.frame)?\.jpg$")
API_PREFIX = "/api/snapshots/"

logger = logging.getLogger(__name__)


class SnapshotRetention:
    """The files under ``root`` (``<site>/<camera>/<ms>[.frame].jpg``) within ``quota_bytes`` and ``max_age_s``.

    Thread-safe: the camera stage adds files on its thread, a runner prunes on another.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> r = SnapshotRetention(root, quota_bytes=250, max_age_s=3600.0)
    >>> for ms in (1000, 2000, 3000):
    ...     p = root / "S1" / "cam-1" / f"{ms}.jpg"; p.parent.mkdir(parents=True, exist_ok=True)
    ...     _ = p.write_bytes(b"x" * 100); r.kept(p, 100)
    >>> r.prune(3.0, held={"S1/cam-1/1000.jpg"}), r.bytes
    (['S1/cam-1/2000.jpg'], 200)
    """

    def __init__(self, root: Path, quota_bytes: int, max_age_s: float) -> None:
        self.root = root
        self.quota_bytes = quota_bytes
        self.max_age_s = max_age_s
        self.bytes = 0
        self._files: dict[str, tuple[float, int]] = {}  # "<site>/<camera>/<name>" -> (capture time, bytes)
        self._oldest: list[tuple[float, str]] = []  # a min-heap over _files (entries of deleted files are skipped)
        self._lock = threading.Lock()
        if root.is_dir():  # what an earlier engine left
            for path in root.glob("*/*/*.jpg"):
                try:
                    self._add(path, path.stat().st_size)
                except OSError:
                    continue
        metrics.CAMERA_SNAPSHOT_BYTES.set(self.bytes)

    def _add(self, path: Path, size: int) -> None:
        m = SNAPSHOT_FILE.match(path.name)
        if m is None:
            return  # not the stage's file (a temporary, an operator's copy): not ours to delete
        rel = f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
        old = self._files.get(rel)
        self.bytes += size - (old[1] if old else 0)
        ts = int(m.group(1)) / 1000.0
        self._files[rel] = (ts, size)
        if old is None:
            heapq.heappush(self._oldest, (ts, rel))

    def kept(self, path: Path, size: int) -> None:
        """Count a file the camera stage just wrote (``root/<site>/<camera>/<name>``) of ``size`` bytes."""
        with self._lock:
            self._add(path, size)
            metrics.CAMERA_SNAPSHOT_BYTES.set(self.bytes)

    def prune(self, now: float, held: Collection[str] = ()) -> list[str]:
        """Delete, oldest first, the files captured more than ``max_age_s`` before ``now`` and as many more as
        bring them within the quota, except those in ``held`` (``held_snapshots``); the deleted ones."""
        removed: list[str] = []
        spared: list[tuple[float, str]] = []
        with self._lock:
            while self._oldest:
                ts, rel = self._oldest[0]
                entry = self._files.get(rel)
                if entry is None:
                    heapq.heappop(self._oldest)
                    continue
                reason = "age" if ts < now - self.max_age_s else "quota" if self.bytes > self.quota_bytes else ""
                if not reason:
                    break
                heapq.heappop(self._oldest)
                if rel in held:
                    spared.append((ts, rel))
                    continue
                try:
                    (self.root / rel).unlink(missing_ok=True)
                except OSError as exc:  # read-only, or a folder in its place: counted as gone, said once
                    logger.warning("cannot delete camera snapshot %s: %s", self.root / rel, exc)
                del self._files[rel]
                self.bytes -= entry[1]
                removed.append(rel)
                metrics.CAMERA_SNAPSHOTS_PRUNED.labels(reason).inc()
            for item in spared:
                heapq.heappush(self._oldest, item)
            metrics.CAMERA_SNAPSHOT_BYTES.set(self.bytes)
        if removed:
            logger.debug("deleted %d camera snapshots; %d bytes kept", len(removed), self.bytes)
        return removed


def held_snapshots(incidents: Iterable[Any]) -> set[str]:
    """The files open ``incidents`` (``Incident``: ``findings`` by detector and device) still show: each camera
    finding's snapshot (``evidence.snapshot``) and the frame kept at that instant, as ``<site>/<camera>/<name>``.

    >>> from types import SimpleNamespace as NS
    >>> f = NS(evidence={"snapshot": "/api/snapshots/S1/cam-1/5000.jpg"})
    >>> sorted(held_snapshots([NS(findings={("smoke_fire_onnx", "cam-1"): f})]))
    ['S1/cam-1/5000.frame.jpg', 'S1/cam-1/5000.jpg']
    """
    out: set[str] = set()
    for inc in incidents:
        for f in list(inc.findings.values()):
            snap = (f.evidence or {}).get("snapshot")
            if isinstance(snap, str) and snap.startswith(API_PREFIX):
                rel = snap[len(API_PREFIX) :]
                out.add(rel)
                if rel.endswith(".jpg"):
                    out.add(rel[: -len(".jpg")] + ".frame.jpg")
    return out
