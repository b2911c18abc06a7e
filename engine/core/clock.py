"""The engine clock: the data's watermark, moved on by the wall clock while no data arrives.

Escalation deadlines and operator actions use it, so a replay (data time running fast) escalates just as
the live run it recorded did, and a live engine whose devices fall silent still escalates on time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class EngineClock:
    """``now()`` is the latest watermark plus the wall time since it last advanced.

    >>> wall = iter([0.0, 0.0, 5.0]).__next__
    >>> clock = EngineClock(wall)
    >>> clock.observe(1000.0)
    >>> clock.now()
    1005.0
    """

    def __init__(self, wall: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._watermark = float("-inf")
        self._since = wall()

    def observe(self, watermark: float) -> None:
        if watermark > self._watermark:
            self._watermark = watermark
            self._since = self._wall()

    def resume(self, watermark: float, wall_time: float, now_wall: float | None = None) -> None:
        """Take up a clock that stood at ``watermark`` at wall time ``wall_time`` (a checkpoint): the time the
        engine was away counts, so escalations that fell due meanwhile fire at once, not that much later.

        >>> wall = iter([0.0, 0.0, 0.0]).__next__
        >>> clock = EngineClock(wall)
        >>> clock.resume(1000.0, wall_time=50.0, now_wall=3650.0)  # stopped an hour ago
        >>> clock.now()
        4600.0
        """
        away = max(0.0, (time.time() if now_wall is None else now_wall) - wall_time)
        self._watermark = watermark
        self._since = self._wall() - away

    @property
    def started(self) -> bool:
        """Whether any data time has been observed (before that, ``now`` is the wall clock)."""
        return self._watermark != float("-inf")

    def now(self) -> float:
        if self._watermark == float("-inf"):
            return time.time()  # no data yet: the wall clock is all there is
        return self._watermark + (self._wall() - self._since)
