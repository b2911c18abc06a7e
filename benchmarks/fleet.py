"""A city's fleet for the benchmarks: the ``city-scale`` scenario over days, fed as columns, not tuples.

Full history means every detector's windows filled: 72 hours of rain in each intensity–duration window
and full rings of 10-minute displacement (26.7 h of GNSS, 12 h of crack meters), so the warm-up runs
73 hours of the whole fleet (28 million readings for 65,000 devices) and the last hour is what a
benchmark measures. Readings are generated as a (time × channel) table and cut into batches straight from
it: as Python tuples, 28 million readings would need gigabytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.core.batch import ReadingBatch
from engine.core.devices import DeviceIndex
from engine.core.quantities import METRIC_INDEX
from engine.ingest.replay_file import Row
from simulators.scenario import load_scenario

BASE_TS = 1_700_000_000.0
FULL_HISTORY_H = 73  # 72 h of rain windows filled, then the measured hour
STEPS_PER_H = 6  # every device reports every 10 minutes


@dataclass
class Fleet:
    """Every reading of the fleet: times (T,), channels (site, device, metric), values (T, channels)."""

    ts: npt.NDArray[np.float64]
    channels: list[tuple[str, str, str]]
    table: npt.NDArray[np.float64]

    @property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(site for site, _, _ in self.channels))

    def readings(self, first_step: int = 0, last_step: int | None = None) -> int:
        return (len(self.ts[first_step:last_step])) * len(self.channels)

    def of_sites(self, n: int) -> Fleet:
        """The first ``n`` sites' channels (a sample for the slow baselines)."""
        keep = set(self.sites[:n])
        cols = [i for i, (site, _, _) in enumerate(self.channels) if site in keep]
        return Fleet(self.ts, [self.channels[i] for i in cols], self.table[:, cols])

    def batches(
        self, devices: DeviceIndex, size: int, first_step: int = 0, last_step: int | None = None
    ) -> Iterator[ReadingBatch]:
        """Readings of steps ``first_step:last_step`` in arrival order (time, then site and device)."""
        slots = np.array([devices.slot(site, device) for site, device, _ in self.channels], dtype=np.int64)
        metric = np.array([METRIC_INDEX[m] for _, _, m in self.channels], dtype=np.int16)
        ts, table = self.ts[first_step:last_step], self.table[first_step:last_step]
        width = len(self.channels)
        total = ts.shape[0] * width
        for start in range(0, total, size):
            idx = np.arange(start, min(start + size, total))
            step, ch = np.divmod(idx, width)
            yield ReadingBatch(devices, ts[step], slots[ch], metric[ch], table[step, ch])

    def rows(self, first_step: int = 0, last_step: int | None = None) -> Iterator[Row]:
        """The same readings as tuples (for the per-reading Python baselines)."""
        for t, values in zip(self.ts[first_step:last_step], self.table[first_step:last_step], strict=True):
            at = float(t)
            for (site, device, metric), v in zip(self.channels, values.tolist(), strict=True):
                yield (at, site, device, metric, v)


def city_fleet(sites: int, hours: int = FULL_HISTORY_H) -> Fleet:
    """``city-scale`` with ``sites`` sites over ``hours``; its city-wide storm falls in the last hour."""
    sc = load_scenario("city-scale")
    storms = [s.model_copy(update={"start_h": hours - 1.0}) for s in sc.storms]
    sc = sc.model_copy(update={"duration_h": float(hours), "sites": sites, "storms": storms})
    ts, channels, table = sc.columns(BASE_TS)
    return Fleet(ts, channels, table)
