"""Server-sent events: every incident notification, pushed to the operator pages as it is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
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
