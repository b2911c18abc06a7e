"""Recent readings per device and metric, for the operator page's charts (not used by any detector).

A ring of the last ``points`` readings per (device slot, metric) channel, in blocks of 4,096 channels
added as the fleet grows: a new block is zero pages until written, and growing never copies what is
held, so a fleet coming online does not stall the step. A batch is written in one vectorized pass per
block. A point is its time to the second (epoch seconds as uint32, good until 2106: a chart needs no
finer) and its value as float32: 8 bytes, so the default 432 points (72 h at 10-minute reporting) cost
3.5 KB per channel, 225 MB for 65,000 single-metric devices; set ``api.history_points`` lower (or 0 to
keep none) on a box that is short of memory.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.core.batch import ReadingBatch
from engine.core.quantities import METRIC_NAMES

BLOCK = 4096  # channels a block
TS_MAX = float(np.iinfo(np.uint32).max)


class ReadingHistory:
    """The last ``points`` readings of every (device, metric) channel.

    >>> from engine.core.batch import BatchBuilder
    >>> from engine.core.devices import DeviceIndex
    >>> idx = DeviceIndex(); b = BatchBuilder(idx)
    >>> for k in range(5):
    ...     b.add("S1", "rain-1", 100.0 + k, "rain_mm", float(k))
    >>> h = ReadingHistory(points=3); h.add(b.take())
    >>> h.series(idx.slot("S1", "rain-1"), "rain_mm")
    ([102.0, 103.0, 104.0], [2.0, 3.0, 4.0])
    """

    def __init__(self, points: int) -> None:
        self.points = points
        self._lookup = np.full(0, -1, np.int64)  # slot * len(METRIC_NAMES) + metric → channel, -1: none yet
        self._n = 0  # channels handed out
        self._ts: list[npt.NDArray[np.uint32]] = []  # block b holds channels b * BLOCK ... (epoch s)
        self._value: list[npt.NDArray[np.float32]] = []
        self.count = np.zeros(0, np.int64)
        self.last_reading_ts: float | None = None  # the latest reading's own time, for the page's data clock
        self.last_received_at: float | None = None  # when (wall clock) the last batch with readings came in

    def _channels(self, slot: npt.NDArray[np.int64], metric: npt.NDArray[np.int16]) -> npt.NDArray[np.int64]:
        keys = slot.astype(np.int64) * len(METRIC_NAMES) + metric.astype(np.int64)
        top = int(keys.max()) + 1
        if top > self._lookup.shape[0]:
            grow = max(top, 2 * self._lookup.shape[0])
            self._lookup = np.concatenate([self._lookup, np.full(grow - self._lookup.shape[0], -1, np.int64)])
        new = np.unique(keys[self._lookup[keys] < 0])  # channels first seen in this batch, in key order
        if new.size:
            self._lookup[new] = np.arange(self._n, self._n + new.size)
            self._n += new.size
        while len(self._ts) * BLOCK < self._n:  # slots are only read below a channel's count: no fill needed
            self._ts.append(np.zeros((BLOCK, self.points), dtype=np.uint32))
            self._value.append(np.zeros((BLOCK, self.points), dtype=np.float32))
        if self._n > self.count.shape[0]:
            self.count = np.concatenate([self.count, np.zeros(len(self._ts) * BLOCK - self.count.shape[0], np.int64)])
        ids: npt.NDArray[np.int64] = self._lookup[keys]
        return ids

    def nbytes(self) -> int:
        """Bytes held, blocks whole (a block's untouched pages are not resident until written)."""
        return sum(a.nbytes for a in self._ts) + sum(a.nbytes for a in self._value) + self.count.nbytes

    def _channel_of(self, slot: int, metric: int) -> int | None:
        key = slot * len(METRIC_NAMES) + metric
        ch = int(self._lookup[key]) if key < self._lookup.shape[0] else -1
        return ch if ch >= 0 else None

    def add(self, batch: ReadingBatch, received_at: float | None = None) -> None:
        if not len(batch):
            return
        newest = float(batch.ts.max())
        self.last_reading_ts = newest if self.last_reading_ts is None else max(self.last_reading_ts, newest)
        self.last_received_at = received_at
        if self.points <= 0:
            return
        ch = self._channels(batch.slot, batch.metric)
        order = np.argsort(ch, kind="stable")  # arrival order within each channel
        sorted_ch = ch[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_ch)) + 1]
        rank = np.arange(sorted_ch.shape[0]) - np.repeat(starts, np.diff(np.r_[starts, sorted_ch.shape[0]]))
        pos = (self.count[sorted_ch] + rank) % self.points
        ts = np.rint(np.clip(batch.ts[order], 0.0, TS_MAX)).astype(np.uint32)
        value = batch.value[order]
        block = sorted_ch // BLOCK
        cuts = np.searchsorted(block, np.arange(block[0], block[-1] + 2))  # channels are sorted: one slice a block
        for b, lo, hi in zip(range(int(block[0]), int(block[-1]) + 1), cuts[:-1], cuts[1:], strict=True):
            if hi > lo:
                row = sorted_ch[lo:hi] - b * BLOCK
                self._ts[b][row, pos[lo:hi]] = ts[lo:hi]
                self._value[b][row, pos[lo:hi]] = value[lo:hi]
        self.count += np.bincount(sorted_ch, minlength=self.count.shape[0])

    def series(self, slot: int, metric: str) -> tuple[list[float], list[float]]:
        """(times, values) of one channel, oldest first; empty when it never reported."""
        ch = self._channel_of(slot, METRIC_NAMES.index(metric))
        if ch is None:
            return [], []
        n = int(self.count[ch])
        idx = np.arange(max(0, n - self.points), n) % self.points
        b, row = divmod(ch, BLOCK)
        times = self._ts[b][row, idx].astype(np.float64).tolist()
        return times, self._value[b][row, idx].astype(np.float64).round(6).tolist()

    def metrics_of(self, slot: int) -> list[str]:
        """The metrics a device has reported, in the order it first reported them."""
        seen = [(ch, m) for k, m in enumerate(METRIC_NAMES) if (ch := self._channel_of(slot, k)) is not None]
        return [m for _, m in sorted(seen)]
