"""Device slots: every (site, device) pair gets a small integer that indexes detector state arrays."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class DeviceIndex:
    """Interns sites and devices to dense integer slots.

    Slots are handed out in order of first appearance and never reused, so state arrays only grow.

    >>> idx = DeviceIndex()
    >>> idx.slot("S1", "rain-1"), idx.slot("S1", "gnss-1"), idx.slot("S1", "rain-1")
    (0, 1, 0)
    >>> idx.site_of_slot(1), idx.device_of_slot(1)
    ('S1', 'gnss-1')
    """

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], int] = {}
        self._site_ids: dict[str, int] = {}
        self.sites: list[str] = []
        self.devices: list[str] = []
        self._slot_site: list[int] = []
        self._site_slots: dict[str, list[int]] = {}
        self._expected = np.full(0, np.nan)  # per slot: the reporting interval the config states (s), or NaN

    def set_expected_interval(self, slot: int, seconds: float) -> None:
        """The device's reporting interval as the config (``expected_interval_s``) states it."""
        if slot >= self._expected.shape[0]:
            grown = np.full(max(slot + 1, 2 * self._expected.shape[0], 64), np.nan)
            grown[: self._expected.shape[0]] = self._expected
            self._expected = grown
        self._expected[slot] = seconds

    def expected_intervals(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float64] | None:
        """The configured interval of each slot (NaN where none is set); None when the config sets none.

        >>> idx = DeviceIndex(); a, b = idx.slot("S1", "rain-1"), idx.slot("S1", "gnss-1")
        >>> idx.expected_intervals(np.array([a, b])) is None
        True
        >>> idx.set_expected_interval(b, 900.0); idx.expected_intervals(np.array([a, b])).tolist()
        [nan, 900.0]
        """
        if not self._expected.shape[0]:
            return None
        out = np.full(slots.shape[0], np.nan)
        inside = slots < self._expected.shape[0]
        out[inside] = self._expected[slots[inside]]
        return out

    def __len__(self) -> int:
        return len(self.devices)

    def site_id(self, site: str) -> int:
        sid = self._site_ids.get(site)
        if sid is None:
            sid = self._site_ids[site] = len(self.sites)
            self.sites.append(site)
        return sid

    def slot(self, site: str, device: str) -> int:
        key = (site, device)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = len(self.devices)
            self.devices.append(device)
            self._slot_site.append(self.site_id(site))
            self._site_slots.setdefault(site, []).append(slot)
        return slot

    def slots_of_site(self, site: str) -> list[int]:
        """The slots of a site's devices, in the order they were first seen."""
        return self._site_slots.get(site, [])

    def find(self, site: str, device: str) -> int | None:
        return self._slots.get((site, device))

    def site_of_slot(self, slot: int) -> str:
        return self.sites[self._slot_site[slot]]

    def device_of_slot(self, slot: int) -> str:
        return self.devices[slot]

    def site_ids_of(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.asarray(self._slot_site, dtype=np.int64)[slots]
