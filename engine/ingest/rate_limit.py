"""A token bucket per device: a device that floods is refused before its messages cost any decoding."""

from __future__ import annotations


class DeviceRateLimiter:
    """Allows each key ``rate`` messages a second on average, ``burst`` at once.

    >>> lim = DeviceRateLimiter(rate=1.0, burst=2)
    >>> [lim.allow("S1/rain-1", t) for t in (0.0, 0.0, 0.0, 0.5, 1.0)]
    [True, True, False, False, True]
    >>> lim.allow("S2/rain-1", 0.0)  # other devices are not affected
    True
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens: dict[str, float] = {}
        self._at: dict[str, float] = {}

    def allow(self, key: str, now: float) -> bool:
        last = self._at.get(key)
        tokens = self.burst if last is None else min(self.burst, self._tokens[key] + (now - last) * self.rate)
        self._at[key] = now
        if tokens >= 1.0:
            self._tokens[key] = tokens - 1.0
            return True
        self._tokens[key] = tokens
        return False
