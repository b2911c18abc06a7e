"""Supervised background tasks: a task that raises is logged, counted, restarted and shown in health.

Without it, an exception in the delivery loop, the escalation timer or the camera loop ended that task
silently: checkpoints, reminders, escalations or fire detection stopped while ``/healthz`` said 200.

>>> import asyncio
>>> async def main():
...     runs, stop = [], asyncio.Event()
...     async def flaky():
...         runs.append(1)
...         if len(runs) < 3:
...             raise OSError("disk full")
...         await stop.wait()
...     sup = Supervisor(backoff_s=0.001)
...     task = sup.start("checkpoint", flaky, stop)
...     while len(runs) < 3:
...         await asyncio.sleep(0.01)
...     stop.set()
...     await task
...     return len(runs), sup.failures["checkpoint"]
>>> asyncio.run(main())
(3, 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from engine import metrics

logger = logging.getLogger(__name__)


@dataclass
class Supervisor:
    """Starts named tasks and restarts any that raises, with a backoff from ``backoff_s`` to ``max_backoff_s``.

    A task that returns while ``stop`` is not set is restarted too (a loop that ended by mistake). ``failing``
    names the tasks that raised lately (within twice the longest backoff).
    """

    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    healthy_after_s: float = 10.0
    failures: dict[str, int] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    _failed_at: dict[str, float] = field(default_factory=dict)

    def start(self, name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event) -> asyncio.Task[None]:
        return asyncio.create_task(self._supervise(name, run, stop), name=f"gridwatch-{name}")

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        delay = self.backoff_s
        while not stop.is_set():
            started = time.monotonic()
            try:
                await run()
                if stop.is_set():
                    return
                raise RuntimeError("the task returned while the engine was running")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures[name] = self.failures.get(name, 0) + 1
                self.last_error[name] = repr(exc)[:500]
                self._failed_at[name] = time.monotonic()
                metrics.TASK_FAILURES.labels(name).inc()
                logger.exception("background task %s failed (%d so far); restarting in %.1f s",
                                 name, self.failures[name], delay)  # fmt: skip
                if time.monotonic() - started > self.healthy_after_s:
                    delay = self.backoff_s  # it had run fine for a while: start the backoff again
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, self.max_backoff_s)

    def failing(self) -> dict[str, str]:
        """The tasks that failed within the last ``healthy_after_s`` (or more, while they keep failing)."""
        now = time.monotonic()
        window = max(self.healthy_after_s, 2 * self.max_backoff_s)  # longer than the wait between restarts
        return {n: self.last_error[n] for n, at in self._failed_at.items() if now - at < window}
