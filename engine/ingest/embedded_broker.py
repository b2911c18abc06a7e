"""The embedded broker (``mqtt.url: embedded``): an in-process amqtt broker, so a first run needs nothing.

amqtt speaks MQTT 3.1.1 only; real deployments point ``mqtt.url`` at Mosquitto or EMQX.
"""

from __future__ import annotations

import logging
import secrets
import socket
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, taken below the kernel's range for outgoing connections: a
    port from that range (what binding port 0 gives) can be handed to an outgoing connection (a Kafka client
    opens many) before the caller listens on it, and the listener then fails with "address in use".

    >>> 1024 <= free_port() < _outgoing_ports()[0]
    True
    """
    low = _outgoing_ports()[0]
    span = min(12000, low - 1024)
    for _ in range(100) if span > 0 else ():
        port = low - 1 - secrets.randbelow(span)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _outgoing_ports() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux; the usual default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


class PortInUseError(RuntimeError):
    """A port gridwatch must listen on is taken: the message says which setting to change."""


def ensure_free(host: str, port: int, what: str, fix: str) -> None:
    """Stop with a clear message when ``host:port`` cannot be bound (rather than a library's traceback).

    >>> import socket
    >>> s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); taken = s.getsockname()[1]
    >>> ensure_free("127.0.0.1", taken, "the embedded MQTT broker", "set mqtt.embedded_port")
    Traceback (most recent call last):
    ...
    engine.ingest.embedded_broker.PortInUseError: the embedded MQTT broker cannot listen on 127.0.0.1:...
    >>> s.close()
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortInUseError(f"{what} cannot listen on {host}:{port} ({exc.strerror}): {fix}") from None


class EmbeddedBroker:
    """Starts and stops an amqtt broker inside the running event loop.

    Example (inside a coroutine)::

        broker = EmbeddedBroker("127.0.0.1", 0)
        port = await broker.start()
        ...
        await broker.stop()
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    async def start(self) -> int:
        from amqtt.broker import Broker

        ensure_free(
            self.host, self.port, "the embedded MQTT broker",
            "another broker is there? set mqtt.embedded_port (0: a free port) or point mqtt.url at that broker",
        )  # fmt: skip
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()
        logger.info("embedded MQTT broker listening on %s:%s", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
