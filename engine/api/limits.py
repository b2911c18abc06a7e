"""What every HTTP request meets before a route reads it: a body size limit, a credentials check, and the
headers that keep the operator page from being framed or sniffed.

A pure ASGI middleware, so it runs before FastAPI reads or parses a byte of the body: a 400 MB POST with no
token is answered 401 from its headers alone, and one with a token 413 once it passes the limit (as its
``Content-Length`` says, or as its chunks arrive), never held in memory whole.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# The operator page is same-origin plain JavaScript: nothing inline but style attributes, nothing framed.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]  # fmt: skip

WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_ENCODED_CONTROL = re.compile(rb"%(?:[01][0-9a-fA-F]|7[fF])")


class RequestLimits:
    """Refuse a body over ``max_body_bytes`` (413) and a write with no credentials at all (401) before the
    app reads it; add ``SECURITY_HEADERS`` to every answer.

    >>> import asyncio
    >>> async def app(scope, receive, send):
    ...     await send({"type": "http.response.start", "status": 200, "headers": []})
    ...     await send({"type": "http.response.body", "body": b"ok"})
    >>> sent = []
    >>> async def send(m): sent.append(m)
    >>> async def receive(): return {"type": "http.request", "body": b"", "more_body": False}
    >>> scope = {"type": "http", "method": "POST", "path": "/api/reports", "query_string": b"",
    ...          "headers": [(b"content-length", b"400000000")]}
    >>> asyncio.run(RequestLimits(app, 1_000_000)(scope, receive, send))
    >>> sent[0]["status"]
    401
    """

    def __init__(self, app: App, max_body_bytes: int, max_inflight_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Bodies being received by all requests together: sixty 7.9 MB bodies at once held 1.15 GB
        self.max_inflight_bytes = max_inflight_bytes if max_inflight_bytes is not None else 4 * max_body_bytes
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in SECURITY_HEADERS if h[0] not in names)]
            await send(message)

        if _has_control(scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b"")):
            # a NUL in a query reached PostgreSQL (a 500); no id, name or filter holds a control character
            await _answer(send_with_headers, 400, "the path or query holds a control character")
            return
        if scope["method"] not in WITH_BODY:
            await self.app(scope, receive, send_with_headers)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        query = scope.get("query_string", b"")
        if b"authorization" not in headers and b"token=" not in query:  # every write needs a token
            await _answer(send_with_headers, 401, "a token is needed: Authorization: Bearer <token>")
            return
        too_large = f"the body is over {self.max_body_bytes} bytes (api.max_body_bytes)"
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit():
            await _answer(send_with_headers, 400, "Content-Length is not a number")
            return
        if int(declared) > self.max_body_bytes:
            await _answer(send_with_headers, 413, too_large)
            return
        seen = 0
        started = answered = False
        busy = "too many large requests at once; try again in a few seconds"

        async def counted() -> Message:
            # Past the limit the client is answered 413 here and the app is told the client has gone: it stops
            # reading, and whatever it would still send is dropped.
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                chunk = len(message.get("body", b""))
                seen += chunk
                self.inflight += chunk
                over = seen > self.max_body_bytes
                if over or self.inflight > self.max_inflight_bytes:
                    if not started:
                        await _answer(send_with_headers, 413 if over else 503, too_large if over else busy)
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not answered:
                raise
        finally:
            self.inflight -= seen


def _has_control(path: bytes, query: bytes) -> bool:
    """Whether a request's path or query holds a control character, raw or percent-encoded.

    >>> _has_control(b"/api/incidents", b"site=S%2A&state=open"), _has_control(b"/api/incidents", b"site=%00")
    (False, True)
    """
    return any(_CONTROL.search(part) or _ENCODED_CONTROL.search(part) for part in (path, query))


async def _answer(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
