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
