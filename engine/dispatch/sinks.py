"""Sinks: where incident events go (JSON Lines log, MQTT alerts topic, signed webhook, console).

A sink's ``send`` raises when delivery failed; the outbox then keeps the event and retries it later.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
from rich.console import Console

from engine.config.models import ConsoleSinkConfig, LogSinkConfig, MqttSinkConfig, WebhookSinkConfig
from engine.ingest.topics import alert_topic

SIGNATURE_HEADER = "X-Gridwatch-Signature-256"
DELIVERY_HEADER = "X-Gridwatch-Delivery"

logger = logging.getLogger(__name__)

LEVEL_STYLE = {"blue": "bold blue", "yellow": "bold yellow", "orange": "bold dark_orange", "red": "bold red"}


class Sink(Protocol):
    name: str

    def send(self, event: dict[str, Any], delivery_id: str | None = None) -> None: ...

    def close(self) -> None: ...


class LogSink:
    """Appends each event as one JSON line, flushed at once so a crash loses nothing already sent."""

    name = "log"

    def __init__(self, cfg: LogSinkConfig, path: Path | None = None) -> None:
        self.name = cfg.name or cfg.type
        self.path = path or Path(cfg.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab")

    def send(self, event: dict[str, Any], delivery_id: str | None = None) -> None:
        self._fh.write(orjson.dumps(event) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


PUBACK_TIMEOUT_S = 10.0


class MqttSink:
    """Publishes each event to ``<prefix>/alerts/<site>/<hazard>``; delivered once the broker acknowledged
    it (PUBACK at QoS 1), so an event published into a dropped connection is sent again."""

    name = "mqtt"

    def __init__(self, cfg: MqttSinkConfig, publish: Any, prefix: str) -> None:
        self.cfg = cfg
        self.name = cfg.name or cfg.type
        self._publish = publish
        self.prefix = prefix

    def send(self, event: dict[str, Any], delivery_id: str | None = None) -> None:
        topic = alert_topic(self.prefix, event["site"], event["hazard"])
        info = self._publish(topic, orjson.dumps(event), retain=self.cfg.retain)
        if info is None:  # a publisher that does not track acknowledgements
            return
        try:
            info.wait_for_publish(PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # not queued: the client is disconnected
            raise ConnectionError(f"alert on {topic} not accepted by the broker: {exc}") from None
        if not info.is_published():
            raise ConnectionError(f"no PUBACK for the alert on {topic} within {PUBACK_TIMEOUT_S:g} s")

    def close(self) -> None:
        pass


class ConsoleSink:
    """Prints one coloured line per event."""

    name = "console"

    def __init__(self, cfg: ConsoleSinkConfig, console: Console | None = None) -> None:
        self.name = cfg.name or cfg.type
        self.console = console or Console(stderr=True)

    def send(self, event: dict[str, Any], delivery_id: str | None = None) -> None:
        style = LEVEL_STYLE.get(event["level"], "")
        self.console.print(
            f"[{style}]{event['level'].upper():6}[/] {event['state']:9} {event['hazard']:12} site={event['site']} "
            f"findings={len(event['findings'])} id={event['incident_id']}"
        )

    def close(self) -> None:
        pass


def signature(secret: str, body: bytes) -> str:
    """The value of ``X-Gridwatch-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the body.

    >>> signature("s3cret", b'{"a":1}')
    'sha256=5910e62016ef5034272c926c27071992a465c2335cecf41851bda071577f4f6d'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class PermanentDeliveryError(Exception):
    """A delivery that will never succeed however often it is tried (the receiver refused this event): the
    outbox sets it aside at once instead of holding the incident's later events behind it."""


def redact_url(url: str) -> str:
    """A webhook URL fit for logs and the store: keys often sit in the path, query or user part.

    >>> redact_url("https://user:key@hooks.example.com:8443/services/T0/B0/XyZ?token=abc")
    'https://hooks.example.com:8443/…'
    """
    parts = httpx.URL(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.host}{port}/…"


class WebhookSink:
    """POSTs each event as JSON; a non-2xx answer or a timeout is a failure the outbox retries.

    Headers: ``X-Gridwatch-Signature-256`` (HMAC-SHA256 of the body with the shared secret, when set) and
    ``X-Gridwatch-Delivery`` (the outbox id: the same on every retry of one event, so a receiver that got
    an event whose answer was lost can drop the repeat).
    """

    def __init__(self, cfg: WebhookSinkConfig, client: httpx.Client | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name or cfg.type
        self._client = client or httpx.Client(timeout=cfg.timeout_s)

    def send(self, event: dict[str, Any], delivery_id: str | None = None) -> None:
        body = orjson.dumps(event)
        headers = {"Content-Type": "application/json", "User-Agent": "gridwatch"}
        if self.cfg.secret:
            headers[SIGNATURE_HEADER] = signature(self.cfg.secret, body)
        if delivery_id is not None:
            headers[DELIVERY_HEADER] = str(delivery_id)
        where = redact_url(self.cfg.url)
        try:
            resp = self._client.post(self.cfg.url, content=body, headers=headers)
        except httpx.HTTPError as exc:  # its text can carry the URL, keys and all
            raise ConnectionError(f"{type(exc).__name__} posting to {where}") from None
        if resp.status_code >= 400:
            detail = f"HTTP {resp.status_code} from {where}"
            if 400 <= resp.status_code < 500 and resp.status_code not in (408, 425, 429):
                raise PermanentDeliveryError(detail + ": the receiver refuses this event")
            raise ConnectionError(detail)

    def close(self) -> None:
        self._client.close()


class SinkSet:
    """The configured sinks (the outbox delivers to each; ``engine.dispatch.outbox``)."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
