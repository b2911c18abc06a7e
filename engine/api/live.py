"""Server-sent events: every incident notification, pushed to the operator pages as it is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

logger = logging.getLogger(__name__)

_CLOSE = object()


class EventHub:
    """Fans notifications out to every open stream; ``publish`` may be called from any thread.

    A page that falls more than ``max_queue`` events behind is told to reload its board (``resync``)
    instead of holding the engine's memory hostage.
    """

    def __init__(self, max_queue: int = 1000, keepalive_s: float = 15.0) -> None:
        self._subs: set[asyncio.Queue[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.max_queue = max_queue
        self.keepalive_s = keepalive_s

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, items: list[dict[str, Any]]) -> None:
        if items and self._loop is not None and self._subs:
            self._loop.call_soon_threadsafe(self._fan_out, items)

    def _fan_out(self, items: list[Any]) -> None:
        for q in list(self._subs):
            for item in items:
                if q.qsize() >= self.max_queue:
                    with contextlib.suppress(asyncio.QueueEmpty):
                        while True:
                            q.get_nowait()
                    q.put_nowait({"resync": True})
                    break
                q.put_nowait(item)

    def close(self) -> None:
        """End every stream (the engine is stopping; the pages reconnect to the next one)."""
        for q in list(self._subs):
            q.put_nowait(_CLOSE)

    async def stream(self) -> AsyncIterator[bytes]:
        q: asyncio.Queue[Any] = asyncio.Queue()
        self._subs.add(q)
        try:
            yield b"retry: 2000\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), timeout=self.keepalive_s)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if item is _CLOSE:
                    return
                kind = b"resync" if item.get("resync") else b"incident"
                yield b"event: " + kind + b"\ndata: " + orjson.dumps(item) + b"\n\n"
        finally:
            self._subs.discard(q)


class StoreFeed:
    """Every incident event the store records, from any engine, to ``publish`` (a hub's): the page's stream on a
    scale-out worker, which itself records only its own partitions' events.

    ``poll`` reads the audit lines after the last one seen. On PostgreSQL a line with a lower id can commit
    after a higher one (concurrent workers): an id skipped over is looked for again for ``gap_s`` seconds, so
    it is published when it lands, once.
    """

    def __init__(
        self, store: Any, publish: Callable[[list[dict[str, Any]]], None], gap_s: float = 30.0, max_gaps: int = 10_000
    ) -> None:
        self.store = store
        self.publish = publish
        self.gap_s = gap_s
        self.max_gaps = max_gaps
        self.cursor: int | None = None
        self.gaps: dict[int, float] = {}  # id skipped over -> when it was first missed

    def poll(self, now: float) -> int:
        """Publish the events recorded since the last poll; returns how many (a store error propagates)."""
        if self.cursor is None:  # the stream starts now; a page loads the board before it listens
            self.cursor = int(self.store.last_event_id())
            return 0
        got = self.store.events_after(self.cursor, sorted(self.gaps))
        for line_id, _event in got:
            self.gaps.pop(line_id, None)
            if line_id > self.cursor:
                self.gaps.update(dict.fromkeys(range(self.cursor + 1, line_id), now))
                self.cursor = line_id
        for line_id in [i for i, t in self.gaps.items() if now - t > self.gap_s]:
            del self.gaps[line_id]  # a rolled-back transaction's ids never land
        if len(self.gaps) > self.max_gaps:
            for line_id in sorted(self.gaps)[: len(self.gaps) - self.max_gaps]:
                del self.gaps[line_id]
        self.publish([event for _id, event in got])
        return len(got)
