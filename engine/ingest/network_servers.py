"""The subscriptions to LoRaWAN network servers: each one's uplinks as readings, into the local runner's
intake or, in a scale-out, into the bridge's Kafka records (both ``ReadingsTaker``).

One MQTT client per network server (``lorawan.networks``), on its own broker or the engine's, with a
persistent session; with the engine's ``ack_after`` (MQTT v5) an uplink is acknowledged to the network
server's broker only once the batch holding its reading is processed (the bridge: once Kafka has its
record), as a sensor message is. Bridges subscribe through a shared subscription, so that several split
the uplinks. Uplinks that give no reading are dead-lettered on the engine's broker
(``<prefix>/deadletter/<reason>``) with the network server's topic, and counted in
``gridwatch_lorawan_uplinks_total``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from engine import metrics
from engine.config.models import EngineConfig, LorawanNetwork
from engine.ingest.decode import Rejection
from engine.ingest.lorawan import UplinkError, UplinkReadings
from engine.ingest.mqtt_client import MqttClient, broker_address

logger = logging.getLogger(__name__)


class ReadingsTaker(Protocol):
    """What takes placed readings (``Intake.take_readings``, ``Bridge.take_readings``): it checks them, keeps the
    good ones, dead-letters the refused ones (those given too) and returns them; ``ack`` once they are safe."""

    def take_readings(
        self,
        kind: str,
        topic: str,
        payload: bytes,
        readings: list[tuple[str, str, dict[str, Any]]],
        refused: list[Rejection],
        now: float,
        ack: Callable[[], None] | None = None,
        redelivered: bool = False,
    ) -> list[Rejection]: ...


class NetworkServerSource:
    """Takes one network server's uplinks into ``intake``; ``taken`` and ``refused`` count its uplinks."""

    def __init__(self, cfg: EngineConfig, network: LorawanNetwork, intake: ReadingsTaker) -> None:
        self.cfg = cfg
        self.network = network
        self.intake = intake
        self.readings = UplinkReadings(cfg.lorawan, network.kind)
        self.max_bytes = cfg.ingest.max_payload_bytes
        self.taken = 0
        self.refused = 0
        self._taken = metrics.LORAWAN_UPLINKS.labels(network.name, "taken")
        self._refused = metrics.LORAWAN_UPLINKS.labels(network.name, "refused")
        self.client: MqttClient | None = None

    def handle(
        self, topic: str, payload: bytes, ack: Callable[[], None] | None = None, redelivered: bool = False
    ) -> None:
        """One uplink (on paho's thread)."""
        now = time.time()
        refused: list[Rejection] = []
        readings = []
        if len(payload) > self.max_bytes:
            refused.append(Rejection("too_large", f"payload of {len(payload)} bytes is over {self.max_bytes}"))
        else:
            try:
                reading = self.readings.reading(topic, payload)
            except UplinkError as exc:
                refused.append(Rejection(exc.reason, str(exc), exc.device))
            except Exception as exc:  # a parser bug must not stop the network's uplinks
                logger.exception("reading an uplink on %s failed", topic)
                refused.append(Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:300]))
            else:
                if reading is not None:
                    readings.append(reading)
        rejected = self.intake.take_readings("lorawan", topic, payload, readings, refused, now, ack, redelivered)
        if rejected:
            self.refused += 1
            self._refused.inc()
        else:
            self.taken += 1
            self._taken.inc()

    def start(
        self,
        engine_broker: tuple[str, int],
        engine_protocol: str,
        wait_s: float = 10.0,
        share_group: str | None = None,
        client_id: str | None = None,
    ) -> MqttClient:
        """Connect and subscribe; ``engine_broker`` and its protocol serve a network without its own broker.
        A bridge subscribes as ``share_group`` (``$share/<group>/…``) with its own ``client_id``, and always
        acknowledges an uplink only once it is safe."""
        cfg, net = self.cfg, self.network
        mqtt = net.mqtt or cfg.mqtt
        protocol = mqtt.protocol if net.mqtt is not None else engine_protocol
        host, port = broker_address(mqtt.url) if net.mqtt is not None else engine_broker
        manual_ack = (share_group is not None or cfg.mqtt.ack_after != "receipt") and protocol == "5"
        topics = net.subscriptions()
        if share_group is not None:
            topics = [f"$share/{share_group}/{t}" for t in topics]

        def acking(topic: str, payload: bytes, _p: dict[str, str], ack: Callable[[], None], again: bool) -> None:
            self.handle(topic, payload, ack, again)

        def plain(topic: str, payload: bytes, _p: dict[str, str]) -> None:
            self.handle(topic, payload)

        self.client = MqttClient(
            mqtt,
            on_message=None if manual_ack else plain,
            on_message_ack=acking if manual_ack else None,
            receive_maximum=cfg.mqtt.receive_maximum if manual_ack else 0,
            subscriptions=topics,
            client_id=f"{client_id or mqtt.client_id}-lorawan-{net.name}",
            protocol=protocol,
        )
        self.client.start(host, port, wait_s)
        logger.info("taking LoRaWAN uplinks of %s (%s) from %s:%s", net.name, net.kind, host, port)
        return self.client

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected.is_set()

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
