"""Scale-out workers asking each other for what a site's owner holds (charts, frames, snapshots), trusted
by a secret they share, never by the operator's token.

A worker that does not hold a site's partition asks the worker that does, at the URL that worker advertised
with its Kafka group membership. Anyone who can join the group can advertise a URL, so the asker sends no
token of the operator's (a rogue member would harvest it) but a signature of the request made with
``api.peer_secret`` (HMAC-SHA256 over the time and the path, valid ``MAX_SKEW_S``), forwards only to hosts in
``api.peer_hosts`` when that list is set, and passes back only an answer of the kind the route gives (JSON
that parses, or a JPEG or PNG that sizes as one), never the peer's page as it came.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

import orjson

from engine.ingest.frames import FrameError, checked_size

PEER_HEADER = "X-Gridwatch-Peer"
MAX_SKEW_S = 30.0


def sign(secret: str, path: str, now: float | None = None) -> str:
    """The peer header's value for a request of ``path``: ``<time>:<hmac>``.

    >>> v = sign("s" * 32, "/api/sites/S1/devices/c1/chart", now=1000.0)
    >>> verify("s" * 32, "/api/sites/S1/devices/c1/chart", v, now=1010.0)
    True
    >>> verify("s" * 32, "/api/sites/S2/devices/c1/chart", v, now=1010.0), verify("x" * 32, "/api/x", v, 1010.0)
    (False, False)
    """
    ts = f"{time.time() if now is None else now:.0f}"
    mac = hmac.new(secret.encode(), f"{ts}\n{path}".encode(), hashlib.sha256).hexdigest()
    return f"{ts}:{mac}"


def verify(secret: str, path: str, value: str, now: float | None = None) -> bool:
    """Whether ``value`` signs ``path`` with ``secret`` within ``MAX_SKEW_S`` of ``now``."""
    ts, _, mac = value.partition(":")
    try:
        at = float(ts)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - at) > MAX_SKEW_S:
        return False
    want = hmac.new(secret.encode(), f"{ts}\n{path}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, mac)


def trusted_host(url: str, hosts: list[str]) -> bool:
    """Whether a peer's advertised URL is one to forward to: http(s), and on ``hosts`` when it is set.

    >>> trusted_host("http://worker-2:8080", ["worker-1", "worker-2"]), trusted_host("http://evil:80", ["worker-2"])
    (True, False)
    >>> trusted_host("file:///etc/passwd", []), trusted_host("http://10.0.0.7:8080/", [])
    (False, True)
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    return not hosts or parts.hostname in hosts


def checked_answer(content: bytes, media_type: str) -> str:
    """The media type to pass a peer's answer back as, or ``ValueError``: JSON that parses, or an image that
    sizes as the JPEG or PNG it says it is."""
    kind = media_type.split(";", maxsplit=1)[0].strip().lower()
    if kind == "application/json":
        orjson.loads(content)
        return kind
    if kind in ("image/jpeg", "image/png"):
        try:
            found, _w, _h = checked_size(content)
        except FrameError as exc:
            raise ValueError(str(exc)) from None
        if found != kind.removeprefix("image/"):
            raise ValueError(f"a {found} sent as {kind}")
        return kind
    raise ValueError(f"a peer answered {kind or 'no type'}")
