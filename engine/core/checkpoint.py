"""Checkpoints of the pipeline's detector state, so that a restarted engine does not forget 72 h of rain.

One ``.npz`` file: every detector's state arrays, and as metadata the device slots in order, each
detector's config and the watermark. It is written atomically (a temporary file, then a rename) when the
engine stops and every ``checkpoint_interval_s`` while it runs. On start, the state of every detector
whose config is unchanged is restored; a detector whose config changed starts afresh (as a reload does).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from engine.core.pipeline import Pipeline

logger = logging.getLogger(__name__)

META = "__meta__"
APPLIED = "__applied_ts__"  # newest reading time applied per device slot and metric (engine/core/replays.py)


def save_checkpoint(pipeline: Pipeline, path: Path) -> None:
    """Write the pipeline's state to ``path`` (atomically)."""
    write_checkpoint(checkpoint_arrays(pipeline), path)


def checkpoint_buffers(pipeline: Pipeline) -> dict[str, Any]:
    """Arrays shaped like the detectors' state, their pages already written: made before the step lock is
    taken, so that the copy under it (``checkpoint_arrays``) does not fault in hundreds of MB (the first
    checkpoint of a city held the step for 0.8 s instead of 0.08 s). A shape that changes meanwhile is
    copied afresh."""
    out: dict[str, Any] = {}
    for det, state in zip(pipeline.detectors, pipeline.states, strict=True):
        for name, arr in list(state.arrays.items()):
            buf = np.empty_like(arr)
            buf.fill(0)
            out[f"{det.name}/{name}"] = buf
    return out


def checkpoint_arrays(pipeline: Pipeline, buffers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the pipeline's state, cheap enough to take between batches (into ``buffers`` where they
    fit); ``write_checkpoint`` does the slow part (writing hundreds of MB for a city) outside the step."""
    devices = pipeline.devices
    meta = {
        "slots": [[devices.site_of_slot(k), devices.device_of_slot(k)] for k in range(len(devices))],
        "detectors": [d.config.model_dump(mode="json") for d in pipeline.detectors],
        "watermark": pipeline.watermark if np.isfinite(pipeline.watermark) else None,
        "readings": pipeline.readings,
    }
    arrays: dict[str, Any] = {META: np.frombuffer(orjson.dumps(meta), dtype=np.uint8)}
    into = buffers or {}
    for det, state in zip(pipeline.detectors, pipeline.states, strict=True):
        for name, arr in state.arrays.items():
            key = f"{det.name}/{name}"
            buf = into.get(key)
            if buf is not None and buf.shape == arr.shape and buf.dtype == arr.dtype:
                np.copyto(buf, arr)
                arrays[key] = buf
            else:
                arrays[key] = arr.copy()
    arrays[APPLIED] = pipeline.applied.times[: len(devices)].copy()
    return arrays


def write_checkpoint(arrays: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(pipeline: Pipeline, path: Path) -> list[str]:
    """Restore what ``path`` holds into ``pipeline``; returns the detectors restored (none if unusable)."""
    if not path.exists():
        return []
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = orjson.loads(data[META].tobytes())
            arrays = {k: data[k] for k in data.files if k != META}
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("checkpoint %s is unreadable (%s); starting with empty detector state", path, exc)
        return []
    devices = pipeline.devices
    for k, (site, device) in enumerate(meta["slots"]):
        if devices.slot(site, device) != k:
            logger.warning("checkpoint %s numbers devices differently from this config; not restored", path)
            return []
    saved = {c["id"] if c.get("id") else c["type"]: c for c in meta["detectors"]}
    restored: list[str] = []
    for det, state in zip(pipeline.detectors, pipeline.states, strict=True):
        if saved.get(det.name) != det.config.model_dump(mode="json"):
            continue
        prefix = f"{det.name}/"
        state.restore({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
        restored.append(det.name)
    applied = arrays.get(APPLIED)
    if applied is not None and applied.shape[1:] == pipeline.applied.times.shape[1:]:  # older: none
        pipeline.applied.grow(applied.shape[0])
        pipeline.applied.times[: applied.shape[0]] = applied
    if meta.get("watermark") is not None:
        pipeline.watermark = float(meta["watermark"])
    pipeline.readings = int(meta.get("readings", 0))
    return restored
