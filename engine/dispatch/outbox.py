"""Delivery from the outbox: one task per sink sends its events in order, retrying with exponential backoff.

A failed event holds back the later events of its own incident (every receiver sees an incident's events
in order), not those of other incidents. An event that can never be delivered (the receiver refuses it with
a 4xx, or the sink cannot even format it) is set aside at once (``gave_up`` with its error in the store,
``gridwatch_outbox_dead_letters_total``), so one poison event never blocks a sink; a sink that is down
retries with backoff. The backlog is the ``gridwatch_outbox_backlog`` metric. Delivery is
at-least-once: an event is marked delivered after the sink accepted it, so a crash in between sends it
again on restart, with the same ``X-Gridwatch-Delivery`` id for the receiver to drop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine import metrics
from engine.dispatch.sinks import PermanentDeliveryError, Sink
from engine.store.store import OutboxItem, Store

logger = logging.getLogger(__name__)

# Errors no retry can cure: the receiver refused the event, or the sink cannot format it (a bug or an odd
# value in the event); network and receiver outages raise ConnectionError/OSError and are retried.
PERMANENT = (PermanentDeliveryError, TypeError, ValueError, KeyError, AttributeError, IndexError)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``backoff_s * 2**(attempt-1)`` capped at ``backoff_max_s``.

    >>> [RetryPolicy(1.0, 10.0).delay(n) for n in (1, 2, 3, 4, 5)]
    [1.0, 2.0, 4.0, 8.0, 10.0]
    """

    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    max_attempts: int = 0  # 0: never give up

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempt - 1)))


def delivery_id(item: OutboxItem) -> str:
    """The id a receiver drops repeats by: the same for every retry of one event to one sink, and never
    reused by another event, also across stores (the outbox's row numbers restart with a new store, and a
    receiver keyed on them dropped new alerts as repeats).

    >>> delivery_id(OutboxItem(7, "hook", "19a71bbd040da447", 3, {}, 0, 0.0, 0))
    '19a71bbd040da447.3.hook'
    """
    return f"{item.incident_id}.{item.seq}.{item.sink}"


class OutboxDelivery:
    """Drains the store's outbox into the sinks until ``stop`` is set (then one last try)."""

    def __init__(
        self,
        store: Store,
        sinks: list[Sink],
        policies: dict[str, RetryPolicy] | None = None,
        poll_s: float = 0.25,
        shards: Callable[[], set[int]] | None = None,
    ) -> None:
        """``shards``: the outbox shards this process delivers (a Faust worker: its partitions); all if unset."""
        self.store = store
        self.shards = shards
        self.sinks = sinks
        self.policies = policies or {}
        self.poll_s = poll_s
        self._kick = asyncio.Event()

    def kick(self) -> None:
        """New rows were written: look now rather than at the next poll."""
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        if not self.sinks:  # nothing to deliver: wait with the others (a supervisor restarts a task that ends)
            await stop.wait()
            return
        tasks = [asyncio.create_task(self._sink_loop(sink, stop)) for sink in self.sinks]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def _sink_loop(self, sink: Sink, stop: asyncio.Event) -> None:
        failing_since: float | None = None  # an outage (the store out) is logged when it starts, each minute, ends
        logged_at = 0.0
        tries = 0
        while not stop.is_set():
            try:
                await self.drain(sink)
                flush_held = getattr(sink, "flush_held", None)
                if flush_held is not None:  # a people-facing sink: summaries of what its rate limits held
                    await asyncio.to_thread(flush_held)
                if failing_since is not None:
                    logger.warning("outbox delivery to %s works again after %.0f s (%d tries)", sink.name,
                                   time.monotonic() - failing_since, tries)  # fmt: skip
                failing_since, tries = None, 0
            except Exception as exc:
                tries += 1
                now = time.monotonic()
                if failing_since is None:
                    failing_since = logged_at = now
                    logger.exception("outbox delivery to %s failed; retrying", sink.name)
                elif now - logged_at >= 60.0:
                    logged_at = now
                    logger.error("outbox delivery to %s still failing after %.0f s (%d tries): %s", sink.name,
                                 now - failing_since, tries, repr(exc)[:300])  # fmt: skip
            waiter = asyncio.ensure_future(self._kick.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            self._kick.clear()
        await self.drain(sink, final=True)

    async def drain(self, sink: Sink, final: bool = False) -> int:
        """Send what is due for one sink, in order, until the queue is empty or an attempt fails.

        ``final`` (at shutdown) tries once more even where a retry is not yet due.
        """
        sent = 0
        policy = self.policies.get(sink.name, RetryPolicy())
        while True:
            shards = self.shards() if self.shards is not None else None
            if shards is not None and not shards:
                break
            items = await asyncio.to_thread(self.store.outbox_due, sink.name, 200, shards)
            if not items:
                break
            delivered: list[int] = []
            moved = False  # a shard moved to another worker (a rebalance): it delivers from here
            progress = False
            blocked: set[str] = set()  # incidents whose earlier event is failing or backing off
            for item in items:
                if shards is not None and item.shard not in self.shards():  # type: ignore[misc]
                    moved = True
                    break
                if item.incident_id in blocked:
                    continue
                if item.next_attempt_at > time.time() and not final:
                    blocked.add(item.incident_id)  # backing off: this incident's later events wait
                    continue
                try:
                    await asyncio.to_thread(sink.send, item.event, delivery_id(item))
                except Exception as exc:
                    attempt = item.attempts + 1
                    permanent = isinstance(exc, PERMANENT)
                    give_up = permanent or (policy.max_attempts > 0 and attempt >= policy.max_attempts)
                    metrics.SINK_ERRORS.labels(sink.name).inc()
                    if permanent:
                        metrics.OUTBOX_DEAD.labels(sink.name).inc()
                    logger.warning(
                        "sink %s: delivery %s of incident %s failed (attempt %d%s): %s", sink.name, item.id,
                        item.incident_id, attempt,
                        ", set aside: it can never be delivered" if permanent else ", giving up" if give_up else "",
                        exc,
                    )  # fmt: skip
                    await asyncio.to_thread(
                        self.store.outbox_failed, item.id, f"{type(exc).__name__}: {exc}",
                        time.time() + policy.delay(attempt), give_up,
                    )  # fmt: skip
                    progress = progress or give_up
                    if not give_up:
                        blocked.add(item.incident_id)
                    continue
                delivered.append(item.id)
                progress = True
                metrics.SINK_DELIVERED.labels(sink.name).inc()
            await asyncio.to_thread(self.store.outbox_delivered, delivered, time.time())
            sent += len(delivered)
            if moved or not progress:
                break
        backlog = await asyncio.to_thread(self.store.outbox_backlog)
        metrics.OUTBOX_BACKLOG.labels(sink.name).set(backlog.get(sink.name, 0))
        return sent
