"""Columnar batches of sensor readings: one numpy array a column, one row a (device, metric) value."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from engine.core.devices import DeviceIndex
from engine.core.quantities import METRIC_INDEX

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

SUSPECT = np.uint8(1)
"""Flag bit of a reading that a quality screen found faulty (stuck, out of range, impossible jump…)."""
REDELIVERED = np.uint8(2)
"""Flag bit of a reading from a message the broker delivered again (MQTT DUP): maybe applied already.
Cleared by ``AppliedTimes.fresh`` before the detectors see the batch."""


@dataclass
class ReadingBatch:
    """Readings in arrival order. Rows of one device keep their relative order.

    >>> idx = DeviceIndex()
    >>> b = BatchBuilder(idx)
    >>> b.add("S1", "rain-1", 1700000000.0, "rain_mm", 0.4)
    >>> batch = b.take()
    >>> len(batch), batch.value.tolist()
    (1, [0.4])
    """

    devices: DeviceIndex
    ts: F64
    slot: I64
    metric: npt.NDArray[np.int16]
    value: F64
    flags: npt.NDArray[np.uint8] = field(default_factory=lambda: np.empty(0, np.uint8))
    _by_metric: dict[tuple[int, ...], ReadingBatch] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.flags.shape[0] != self.ts.shape[0]:
            self.flags = np.zeros(self.ts.shape[0], np.uint8)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def empty(cls, devices: DeviceIndex) -> ReadingBatch:
        return cls(devices, np.empty(0), np.empty(0, np.int64), np.empty(0, np.int16), np.empty(0))

    def rows_of(self, metrics: tuple[str, ...], include_suspect: bool = False) -> I64:
        """Row numbers of the readings of these metrics, in arrival order.

        Rows a quality screen (``device_health``) flagged as suspect are left out unless asked for, so
        that no detector raises an alarm from a broken sensor.
        """
        ids = [METRIC_INDEX[m] for m in metrics]
        wanted = self.metric == ids[0] if len(ids) == 1 else np.isin(self.metric, ids)
        if not include_suspect:
            wanted &= self.flags == 0
        return np.flatnonzero(wanted)

    def flag_suspect(self, rows: I64) -> None:
        """Mark rows as suspect readings (set by quality screens before other detectors run)."""
        self.flags[rows] |= SUSPECT

    def take_rows(self, rows: I64) -> ReadingBatch:
        return ReadingBatch(
            self.devices, self.ts[rows], self.slot[rows], self.metric[rows], self.value[rows], self.flags[rows]
        )


class BatchBuilder:
    """Accumulates decoded readings into typed arrays; ``take`` hands them over as a ``ReadingBatch``.

    Appending to ``array`` columns keeps the ingest path free of per-reading Python objects.
    """

    def __init__(self, devices: DeviceIndex) -> None:
        self.devices = devices
        self._reset()

    def _reset(self) -> None:
        self._ts = array("d")
        self._slot = array("q")
        self._metric = array("h")
        self._value = array("d")
        self._redelivered: list[tuple[int, int]] = []  # row ranges of redelivered messages

    def __len__(self) -> int:
        return len(self._ts)

    def add(self, site: str, device: str, ts: float, metric: str, value: float) -> None:
        self.add_slot(self.devices.slot(site, device), ts, METRIC_INDEX[metric], value)

    def add_slot(self, slot: int, ts: float, metric_id: int, value: float) -> None:
        self._ts.append(ts)
        self._slot.append(slot)
        self._metric.append(metric_id)
        self._value.append(value)

    def truncate(self, rows: int) -> None:
        """Drop the rows from ``rows`` on (what a message that failed to decode half-way had added)."""
        for column in (self._ts, self._slot, self._metric, self._value):
            del column[rows:]

    def mark_redelivered(self, start: int) -> None:
        """Rows from ``start`` on came in a message the broker delivered again."""
        if start < len(self._ts):
            self._redelivered.append((start, len(self._ts)))

    def take(self) -> ReadingBatch:
        batch = ReadingBatch(
            self.devices,
            np.frombuffer(self._ts, dtype=np.float64).copy(),
            np.frombuffer(self._slot, dtype=np.int64).copy(),
            np.frombuffer(self._metric, dtype=np.int16).copy(),
            np.frombuffer(self._value, dtype=np.float64).copy(),
        )
        for start, end in self._redelivered:
            batch.flags[start:end] |= REDELIVERED
        self._reset()
        return batch
