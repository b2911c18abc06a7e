"""Readings already applied, so that a replay after a crash does not count the same rain twice.

Delivery is at least once: an engine killed after checkpointing its state but before the broker got the
acknowledgements gets those messages again after its restart, and a Faust worker replays the records after
its last committed offset. ``AppliedTimes`` keeps the newest reading time applied per device and metric,
saved with the detector state it belongs to, and ``fresh`` drops the readings of a batch that are no newer.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.core.batch import REDELIVERED, ReadingBatch
from engine.core.quantities import METRIC_NAMES


def repeated_rows(batch: ReadingBatch) -> npt.NDArray[np.bool_]:
    """Rows that repeat an earlier row of the same batch (same device, metric and time): a record that
    reached the stream twice (a producer's retry) lands in one batch, where the applied times of the
    batches before cannot catch it; ``device_health`` took it for a device's duplicate.

    >>> from engine.core.batch import BatchBuilder
    >>> from engine.core.devices import DeviceIndex
    >>> b = BatchBuilder(DeviceIndex())
    >>> for ts, v in [(1.0, 0.5), (2.0, 0.6), (1.0, 0.5), (1.0, 0.7)]:
    ...     b.add("S1", "gnss-1", ts, "disp_mm", v)
    >>> repeated_rows(b.take()).tolist()
    [False, False, True, True]
    """
    channel = batch.slot * len(METRIC_NAMES) + batch.metric.astype(np.int64)
    order = np.lexsort((batch.ts, channel))  # stable: the first of equal rows stays first
    same = (channel[order][1:] == channel[order][:-1]) & (batch.ts[order][1:] == batch.ts[order][:-1])
    out = np.zeros(len(batch), dtype=bool)
    out[order[1:][same]] = True
    return out


class AppliedTimes:
    """The newest reading time applied per (device slot, metric); -inf where none."""

    def __init__(self) -> None:
        self.times: npt.NDArray[np.float64] = np.full((0, len(METRIC_NAMES)), -np.inf)

    def grow(self, n_slots: int) -> None:
        if n_slots > self.times.shape[0]:
            grown = np.full((max(n_slots, 2 * self.times.shape[0], 64), len(METRIC_NAMES)), -np.inf)
            grown[: self.times.shape[0]] = self.times
            self.times = grown

    def of(self, batch: ReadingBatch) -> npt.NDArray[np.float64]:
        """The newest reading time already applied for each row's device and metric."""
        self.grow(len(batch.devices))
        return self.times[batch.slot, batch.metric]

    def mark(self, batch: ReadingBatch) -> None:
        self.grow(len(batch.devices))
        np.maximum.at(self.times, (batch.slot, batch.metric), batch.ts)

    def fresh(self, batch: ReadingBatch, redelivered_only: bool = False) -> tuple[ReadingBatch, int]:
        """The batch without readings no newer than those applied, marked applied; and how many were dropped.

        ``redelivered_only``: judge only the rows of messages the broker redelivered (``REDELIVERED``), so
        that a device's own out-of-order reading still reaches ``device_health``; the flag is cleared.
        Otherwise (a worker's stream, where every record may come again) a row repeating an earlier row of
        the same batch is dropped too (``repeated_rows``).
        """
        stale = batch.ts <= self.of(batch)
        if redelivered_only:
            stale &= (batch.flags & REDELIVERED) != 0
            batch.flags &= ~REDELIVERED
        elif len(batch) > 1:
            stale |= repeated_rows(batch)
        dropped = int(stale.sum())
        if dropped:
            batch = batch.take_rows(np.flatnonzero(~stale))
        self.mark(batch)
        return batch, dropped
