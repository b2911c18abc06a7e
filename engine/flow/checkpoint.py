"""Checkpoints of the pipeline's detector state, so that a restarted engine does not forget 72 h of rain.

One ``.npz`` file: every detector's state arrays, and as metadata the device slots in order, each
detector's config and the watermark. It is written atomically (a temporary file, then a rename) when the
engine stops and every ``checkpoint_interval_s`` while it runs. On start, the state of every detector
whose config is unchanged is restored; a detector whose config changed starts afresh (as a reload does).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from detectors.base import ROW_OF_SLOT, SLOT_OF_ROW
from engine.flow.pipeline import Pipeline

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
        "wall_time": time.time(),  # when: the engine clock goes on from here after a restart (EngineClock.resume)
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


def renumbered(snap: dict[str, Any], slot_map: np.ndarray) -> dict[str, Any]:
    """A detector state snapshot with its device slots renumbered (saved slot k is now ``slot_map[k]``); the
    rows, and so everything each device's row holds, stay as they are."""
    slot_of_row = snap.get(SLOT_OF_ROW)
    if slot_of_row is None or not slot_of_row.size:
        return snap
    new_slots = slot_map[slot_of_row]
    row_of_slot = np.full(max(int(new_slots.max()) + 1, snap[ROW_OF_SLOT].shape[0]), -1, dtype=np.int64)
    row_of_slot[new_slots] = np.arange(new_slots.shape[0])
    return {**snap, SLOT_OF_ROW: new_slots, ROW_OF_SLOT: row_of_slot}


def checkpoint_meta(path: Path) -> dict[str, Any] | None:
    """The metadata of a checkpoint (slots, detectors, watermark, wall time), or None if there is none."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta: dict[str, Any] = orjson.loads(data[META].tobytes())
            return meta
    except (OSError, ValueError, KeyError):
        return None


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
    # Devices are matched by (site, device), not by slot number: a device added to the config or its CSV
    # renumbers the slots, and used to discard every detector's state.
    devices = pipeline.devices
    slot_map = np.array([devices.slot(site, device) for site, device in meta["slots"]], dtype=np.int64)
    saved = {c["id"] if c.get("id") else c["type"]: c for c in meta["detectors"]}
    restored: list[str] = []
    for det, state in zip(pipeline.detectors, pipeline.states, strict=True):
        if saved.get(det.name) != det.config.model_dump(mode="json"):
            continue
        prefix = f"{det.name}/"
        state.restore(renumbered({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}, slot_map))
        restored.append(det.name)
    applied = arrays.get(APPLIED)
    if applied is not None and applied.shape[1:] == pipeline.applied.times.shape[1:]:  # older: none
        n = min(applied.shape[0], slot_map.shape[0])
        pipeline.applied.grow(int(slot_map.max(initial=-1)) + 1)
        pipeline.applied.times[slot_map[:n]] = applied[:n]
    if meta.get("watermark") is not None:
        pipeline.watermark = float(meta["watermark"])
    pipeline.readings = int(meta.get("readings", 0))
    return restored
