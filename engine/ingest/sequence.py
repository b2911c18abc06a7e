"""Duplicate detection by ``seq``: a sliding window per device, as in IPsec's anti-replay window."""

from __future__ import annotations


class SeqWindow:
    """Remembers the last ``size`` sequence numbers of each device.

    A seq seen before inside the window is a duplicate (QoS 1 redelivery, a gateway resending). A seq
    far behind the newest (more than ``size``) means the device restarted its counter: the window
    starts again from it rather than rejecting everything after a reboot.

    >>> w = SeqWindow(8)
    >>> [w.is_duplicate(0, s) for s in (1, 2, 2, 4, 3, 1)]
    [False, False, True, False, False, True]
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._full = (1 << size) - 1
        self._top: dict[int, int] = {}
        self._mask: dict[int, int] = {}

    def is_duplicate(self, key: int, seq: int) -> bool:
        """True when ``seq`` was already seen for ``key``; otherwise records it."""
        top = self._top.get(key)
        if top is None or seq - top >= self.size or top - seq >= self.size:
            self._top[key] = seq
            self._mask[key] = 1
            return False
        if seq > top:
            self._mask[key] = ((self._mask[key] << (seq - top)) | 1) & self._full
            self._top[key] = seq
            return False
        bit = 1 << (top - seq)
        if self._mask[key] & bit:
            return True
        self._mask[key] |= bit
        return False

    def __len__(self) -> int:
        return len(self._top)
