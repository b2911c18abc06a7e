"""One site's share of the detectors' state, as bytes: what a Faust worker keeps in its table per site.

The detectors hold state in arrays indexed by an engine-wide device slot, and slots differ from one
process to the next; so a site's state is packed by device name. A worker packs the sites a batch
touched and unpacks a site the first time it sees it after a rebalance, so that the state follows the
site's partition from worker to worker through the table's changelog.

Replays: at-least-once delivery hands a worker readings it has already applied (its changelog was
written, the offsets were not committed when it died). Each site's pack carries the newest reading time
applied per device and metric, and ``fresh`` drops readings no newer than that, so a replay does not
count the same rain twice.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from detectors.base import ROW_OF_SLOT
from engine.core.batch import ReadingBatch
from engine.core.replays import AppliedTimes
from engine.flow.pipeline import Pipeline

DEVICES = "__devices__"
APPLIED = "__applied_ts__"


class SiteState:
    """Packs and unpacks per-site detector state of a pipeline; drops replayed readings.

    >>> from engine.config.models import EngineConfig
    >>> from engine.runners.assembly import build_pipeline
    >>> from engine.core.batch import BatchBuilder
    >>> rule = {"metric": "water_level_m", "levels": {"yellow": 2.0}}
    >>> cfg = EngineConfig.model_validate({"detectors": [{"type": "level_threshold", "rules": [rule]}]})
    >>> a, b = SiteState(build_pipeline(cfg)), SiteState(build_pipeline(cfg))
    >>> bb = BatchBuilder(a.pipeline.devices); bb.add("S1", "wl-1", 100.0, "water_level_m", 2.5)
    >>> batch = a.fresh(bb.take()); _ = a.pipeline.detect(batch)
    >>> b.unpack("S1", a.pack("S1"))
    >>> bb = BatchBuilder(b.pipeline.devices); bb.add("S1", "wl-1", 100.0, "water_level_m", 2.5)
    >>> len(b.fresh(bb.take()))  # the same reading again: a replay
    0
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.applied_times = AppliedTimes()

    @property
    def applied(self) -> npt.NDArray[np.float64]:
        return self.applied_times.times

    def fresh(self, batch: ReadingBatch) -> ReadingBatch:
        """The batch without readings already applied (per device and metric), and marks the rest applied."""
        return self.applied_times.fresh(batch)[0]

    def sites_of(self, batch: ReadingBatch) -> list[str]:
        devices = batch.devices
        return [devices.sites[i] for i in np.unique(devices.site_ids_of(np.unique(batch.slot)))]

    def pack(self, site: str) -> bytes:
        """The site's rows of every detector's state (and detector-wide arrays) as bytes (``pack_arrays``)."""
        devices = self.pipeline.devices
        slots = np.asarray(devices.slots_of_site(site), dtype=np.int64)
        self.applied_times.grow(len(devices))
        names = [devices.device_of_slot(int(k)) for k in slots]
        arrays: dict[str, Any] = {
            DEVICES: np.frombuffer(orjson.dumps(names), dtype=np.uint8),
            APPLIED: self.applied[slots],
        }
        for det, state in zip(self.pipeline.detectors, self.pipeline.states, strict=True):
            index = state.arrays[ROW_OF_SLOT]
            rows = np.full(slots.shape[0], -1, dtype=np.int64)
            inside = slots < index.shape[0]
            rows[inside] = index[slots[inside]]
            held = rows >= 0
            arrays[f"{det.name}/{ROW_OF_SLOT}"] = held
            for name, spec in state.spec.items():
                arr = state.arrays[name]
                arrays[f"{det.name}/{name}"] = arr[rows[held]] if spec.per_device else arr
        return pack_arrays(arrays)

    def unpack(self, site: str, data: bytes | None) -> None:
        """Put a packed site's state into the pipeline (``None``: the site starts afresh)."""
        devices = self.pipeline.devices
        for k in devices.slots_of_site(site):  # what this worker may still hold from before is stale
            self._forget(k)
        if data is None:
            return
        packed = unpack_arrays(data)
        names = orjson.loads(packed[DEVICES].tobytes())
        slots = np.asarray([devices.slot(site, n) for n in names], dtype=np.int64)
        self.applied_times.grow(len(devices))
        self.applied[slots] = packed[APPLIED]
        for det, state in zip(self.pipeline.detectors, self.pipeline.states, strict=True):
            held = packed.get(f"{det.name}/{ROW_OF_SLOT}")
            if held is None:  # a detector this pack does not know (config changed): it starts afresh
                continue
            rows = state.rows_for(slots[held])
            for name, spec in state.spec.items():
                value = packed.get(f"{det.name}/{name}")
                if value is None or spec.on_takeover == "fill":  # "fill": left as ``_forget`` set it
                    continue
                if spec.per_device:
                    state.arrays[name][rows] = value
                elif np.issubdtype(value.dtype, np.number) and spec.on_takeover != "stream":
                    merge = np.maximum if spec.on_takeover == "max" else np.minimum
                    state.arrays[name] = merge(state.arrays[name], value)

    def _forget(self, slot: int) -> None:
        if slot < self.applied.shape[0]:
            self.applied[slot] = -np.inf
        for state in self.pipeline.states:
            index = state.arrays[ROW_OF_SLOT]
            if slot < index.shape[0] and index[slot] >= 0:
                row = index[slot]
                for name, spec in state.spec.items():
                    if spec.per_device:
                        state.arrays[name][row] = spec.fill


COMPRESSED = b"GWZ1"  # zlib level 1 of the layout below: a site's state is mostly empty rings, 17x smaller


def pack_arrays(arrays: dict[str, npt.NDArray[Any]]) -> bytes:
    """Named arrays as bytes: a JSON header (name, dtype, shape of each) and their raw data, in order,
    compressed (zlib level 1, behind the ``COMPRESSED`` marker).

    A tenth of ``np.savez``'s cost for the small arrays of one site (no zip, no per-array header); the
    compression costs ~55 us a site and shrinks the changelog's records from ~20 KB to ~1.2 KB.

    >>> out = unpack_arrays(pack_arrays({"a": np.arange(3.0), "b": np.zeros((2, 2), np.int16)}))
    >>> out["a"].tolist(), out["b"].shape, out["b"].dtype.name
    ([0.0, 1.0, 2.0], (2, 2), 'int16')
    """
    parts = [np.ascontiguousarray(a) for a in arrays.values()]
    header = orjson.dumps([[k, a.dtype.str, list(a.shape)] for k, a in zip(arrays, parts, strict=True)])
    raw = b"".join([len(header).to_bytes(4, "little"), header, *(a.tobytes() for a in parts)])
    return COMPRESSED + zlib.compress(raw, 1)


def unpack_arrays(data: bytes) -> dict[str, npt.NDArray[Any]]:
    """The arrays ``pack_arrays`` packed (copies, writable); uncompressed packs of earlier versions too."""
    if data[:4] == COMPRESSED:
        data = zlib.decompress(data[4:])
    size = int.from_bytes(data[:4], "little")
    header = orjson.loads(data[4 : 4 + size])
    out: dict[str, npt.NDArray[Any]] = {}
    at = 4 + size
    for name, dtype_str, shape in header:
        dtype = np.dtype(dtype_str)
        count = int(np.prod(shape)) if shape else 1
        out[name] = np.frombuffer(data, dtype=dtype, count=count, offset=at).reshape(shape).copy()
        at += count * dtype.itemsize
    return out
