"""`gridwatch bridge`: MQTT in, Kafka out, for the scale-out runner.

The bridge subscribes through an MQTT v5 shared subscription (``$share/<group>/gw/sensors/+/+``…), so
several bridges of one group split the load, and validates sensor messages exactly as the local runner
does (rejections go to ``gw/deadletter/<reason>`` with the reason). Accepted readings are produced to
``gridwatch.readings`` keyed by site; camera and thermal frames go as they came to ``gridwatch.frames``
and ``gridwatch.thermal``. LoRaWAN network servers' uplinks (``lorawan.networks``) are read as the local
runner reads them (``engine/ingest/network_servers.py``) and go as readings too.

Nothing is lost when either side restarts: the bridge holds each QoS 1 message unacknowledged until
Kafka has acknowledged the record (``acks=all``), retrying a failed send for as long as it takes; a
bridge that dies holding messages gets them again from its persistent MQTT session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from engine import metrics
from engine.api.server import ApiServer, create_app
from engine.config.models import EngineConfig
from engine.core.batch import BatchBuilder
from engine.core.devices import DeviceIndex
from engine.core.quantities import METRIC_NAMES
from engine.incidents.reports import ReportError, ReportQuota, ReportWorker, finding_of, mqtt_report
from engine.ingest.decode import Rejection, SensorDecoder
from engine.ingest.intake import deadletter_message
from engine.ingest.mqtt_client import MqttClient, broker_address
from engine.ingest.network_servers import NetworkServerSource
from engine.ingest.topics import Topic, TopicError, deadletter_topic, parse_topic
from engine.runners.records import encode_readings, ensure_topics, findings_record

logger = logging.getLogger(__name__)


@dataclass
class Outgoing:
    """One MQTT message's worth of Kafka record, and how to acknowledge the MQTT message once sent."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    kind: str
    ack: Callable[[], None]


class Bridge:
    """Validates MQTT messages and produces them to Kafka; ``run`` until ``stop`` is set.

    ``ready`` is set once both the Kafka producer and the MQTT client are connected.
    """

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.prefix = cfg.mqtt.topic_prefix
        self.devices = DeviceIndex()
        self.builder = BatchBuilder(self.devices)
        self.decoder = SensorDecoder(cfg.ingest, self.builder, {s.id for s in cfg.sites})
        self._photo_dir = Path(cfg.data_dir) / "reports"
        self.report_quota = ReportQuota(cfg.reports, self._photo_dir)
        self.report_worker = ReportWorker()
        self.ready = threading.Event()
        self.forwarded = 0
        self.rejected = 0
        self._queue: asyncio.Queue[Outgoing] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0
        self._lock = threading.Lock()
        self.client: MqttClient | None = None
        self.network_sources: list[NetworkServerSource] = []  # LoRaWAN network servers (lorawan.networks)
        self._decoding = threading.Lock()  # the decoder is shared by the MQTT clients' threads
        self._producer_ok = False
        self.http_url: str | None = None

    def subscriptions(self) -> list[str]:
        group = self.cfg.kafka.bridge_group
        return [f"$share/{group}/{self.prefix}/{kind}/+/+" for kind in ("sensors", "cameras", "thermal", "reports")]

    def handle(
        self, topic: str, payload: bytes, props: dict[str, str], ack: Callable[[], None], redelivered: bool = False
    ) -> None:
        """On paho's thread: validate, then queue the record (or dead-letter it and acknowledge at once).

        A redelivered message is forwarded like any other: the workers drop readings they applied."""
        now = time.time()
        try:
            t = parse_topic(topic, self.prefix)
        except TopicError as exc:
            self._reject([Rejection("bad_topic", str(exc))], topic, payload, now)
            ack()
            return
        metrics.MESSAGES.labels(t.kind).inc()
        kafka = self.cfg.kafka
        if t.kind in ("cameras", "thermal"):
            headers = [("topic", topic.encode()), ("ts", props.get("ts", repr(now)).encode())]
            out_topic = kafka.topic_frames if t.kind == "cameras" else kafka.topic_thermal
            self._send(Outgoing(out_topic, t.site.encode(), payload, headers, t.kind, ack))
            return
        if t.kind == "reports":
            self._report(t, topic, payload, now, ack)
            return
        if t.kind != "sensors":
            ack()  # device status: the scale-out runner does not use it
            return
        with self._decoding:
            rejected = self.decoder.decode(t, payload, now)
            batch = self.builder.take()
        if rejected:
            self._reject(rejected, topic, payload, now)
        if not len(batch):
            ack()
            return
        metrics.READINGS.inc(len(batch))
        names = self.devices.devices
        rows = [
            (names[s], ts, METRIC_NAMES[m], v)
            for s, ts, m, v in zip(
                batch.slot.tolist(), batch.ts.tolist(), batch.metric.tolist(), batch.value.tolist(), strict=True
            )
        ]
        record = encode_readings(t.site, rows)
        self._send(Outgoing(kafka.topic_readings, t.site.encode(), record, [("topic", topic.encode())], "sensors", ack))

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
    ) -> list[Rejection]:
        """Readings placed by a LoRaWAN uplink (``NetworkServerSource``): checked as a sensor message's, then
        produced to the readings topic keyed by site; ``ack`` once Kafka has every record."""
        metrics.MESSAGES.labels(kind).inc()
        rejected = list(refused)
        with self._decoding:
            try:
                for site, device, doc in readings:
                    rej = self.decoder.reading(site, device, doc, now)
                    if rej is not None:
                        rejected.append(rej)
            except Exception as exc:  # a bug: the message is dead-lettered and acknowledged, never held
                logger.exception("taking the readings of %s failed", topic)
                self.builder.take()  # none of the message's readings, as for any dead letter
                rejected.append(Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:300]))
            batch = self.builder.take()
        if rejected:
            self._reject(rejected, topic, payload, now)
        done = ack or _no_ack
        if not len(batch):
            done()
            return rejected
        metrics.READINGS.inc(len(batch))
        by_site: dict[str, list[tuple[str, float, str, float]]] = {}
        devices = self.devices
        for s, ts, m, v in zip(batch.slot.tolist(), batch.ts.tolist(), batch.metric.tolist(), batch.value.tolist(),
                               strict=True):  # fmt: skip
            by_site.setdefault(devices.site_of_slot(s), []).append((devices.device_of_slot(s), ts, METRIC_NAMES[m], v))
        left = [len(by_site)]

        def one_sent() -> None:  # the message is acknowledged once Kafka has each site's record
            left[0] -= 1
            if not left[0]:
                done()

        kafka = self.cfg.kafka
        for site, rows in by_site.items():
            record = encode_readings(site, rows)
            self._send(Outgoing(kafka.topic_readings, site.encode(), record, [("topic", topic.encode())], kind,
                                one_sent))  # fmt: skip
        return rejected

    def _report(self, t: Topic, topic: str, payload: bytes, now: float, ack: Callable[[], None]) -> None:
        """A grid report: checked here (a bad one dead-lettered), then to the findings topic keyed by its
        site, so that the worker that owns the site applies it. A report does not move data time (its
        watermark is null); its photo is kept in this bridge's ``data_dir/reports``. Checked on the reports'
        thread (``ReportWorker``), never on paho's: a photo takes up to a second."""

        def check() -> None:
            try:
                spec = mqtt_report(t, payload, self.cfg, now, self._photo_dir, self.report_quota)
            except ReportError as exc:
                self._reject([Rejection(exc.reason, str(exc)[:500], t.device)], topic, payload[:65536], now)
                ack()
                return
            record = findings_record([(finding_of(spec), None)], None)
            out = self.cfg.kafka.topic_findings
            self._send(Outgoing(out, spec["site"].encode(), record, [("topic", topic.encode())], "reports", ack))

        if not self.report_worker.submit(check):
            busy = Rejection(
                "rate_limited", "too many reports are waiting to be checked; send it again later", t.device
            )
            self._reject([busy], topic, payload[:65536], now)
            ack()

    def _reject(self, rejected: list[Rejection], topic: str, payload: bytes, now: float) -> None:
        for rej in rejected:
            self.rejected += 1
            metrics.DEADLETTERS.labels(rej.reason).inc()
            if self.client is not None:
                self.client.publish(
                    deadletter_topic(self.prefix, rej.reason), deadletter_message(rej, topic, payload, now)
                )

    def _send(self, out: Outgoing) -> None:
        assert self._loop is not None and self._queue is not None
        queue = self._queue
        with self._lock:
            self._in_flight += 1
        metrics.BRIDGE_IN_FLIGHT.inc()
        self._loop.call_soon_threadsafe(queue.put_nowait, out)

    async def _produce(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
        """Send records in arrival order; acknowledge each MQTT message when Kafka has its record.

        Records are handed to the producer one after the other, here, so that a site's readings keep their
        order in its partition; only the waits for Kafka's acknowledgements run side by side. (A task per
        record that called ``send`` itself let a later record overtake one waiting for metadata or buffer
        space: a device's readings out of order, taken for a faulty device by the workers.)
        """
        assert self._queue is not None
        pending: set[asyncio.Task[None]] = set()
        while not (stop.is_set() and self._queue.empty()):
            try:
                out = await asyncio.wait_for(self._queue.get(), timeout=0.2)
            except TimeoutError:
                continue
            fut = await self._enqueue(producer, out)
            task = asyncio.create_task(self._confirm(producer, out, fut))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)

    async def _enqueue(self, producer: AIOKafkaProducer, out: Outgoing) -> asyncio.Future[Any]:
        """The record in the producer's buffer (retried while Kafka is away); the future of its acknowledgement."""
        delay = 0.2
        while True:
            try:
                fut: asyncio.Future[Any] = await producer.send(out.topic, out.value, key=out.key, headers=out.headers)
                return fut
            except KafkaError as exc:  # the broker is away: hold the message (unacknowledged) and retry
                self._producer_ok = False
                metrics.BRIDGE_SEND_ERRORS.inc()
                logger.warning("Kafka send to %s failed (%s); retrying in %.1f s", out.topic, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _confirm(self, producer: AIOKafkaProducer, out: Outgoing, fut: asyncio.Future[Any]) -> None:
        while True:
            try:
                await fut
                break
            except KafkaError as exc:  # not written: send it again (at least once)
                metrics.BRIDGE_SEND_ERRORS.inc()
                logger.warning("Kafka did not take a record for %s (%s); sending it again", out.topic, exc)
                fut = await self._enqueue(producer, out)
        out.ack()
        self._producer_ok = True
        with self._lock:
            self._in_flight -= 1
        self.forwarded += 1
        metrics.BRIDGE_IN_FLIGHT.dec()
        metrics.BRIDGE_FORWARDED.labels(out.kind).inc()

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        producer = AIOKafkaProducer(
            bootstrap_servers=cfg.kafka.bootstrap_servers(), acks="all", linger_ms=5, max_request_size=4 << 20
        )
        while True:
            try:
                await ensure_topics(cfg.kafka)
                await producer.start()
                break
            except KafkaError as exc:
                logger.warning("no Kafka at %s yet (%s); retrying", cfg.kafka.url, exc)
                await producer.stop()
                if stop.is_set():
                    return
                await asyncio.sleep(1.0)
                producer = AIOKafkaProducer(
                    bootstrap_servers=cfg.kafka.bootstrap_servers(), acks="all", linger_ms=5,
                    max_request_size=4 << 20,
                )  # fmt: skip
        host, port = broker_address(cfg.mqtt.url)
        client = MqttClient(
            cfg.mqtt,
            subscriptions=self.subscriptions(),
            client_id=cfg.kafka.bridge_client_id,
            protocol="5",
            on_message_ack=self.handle,
            receive_maximum=cfg.kafka.bridge_max_in_flight,
        )
        self.client = client
        self._producer_ok = True
        producing = asyncio.create_task(self._produce(producer, stop))
        http = None
        if cfg.kafka.bridge_http_port is not None:
            http = ApiServer(create_app(self.health), cfg.api.host, cfg.kafka.bridge_http_port)
            await http.start()
            self.http_url = http.url
            logger.info("bridge metrics and health at %s", http.url)
        await asyncio.to_thread(client.start, host, port)
        for net in cfg.lorawan.networks:
            source = NetworkServerSource(cfg, net, self)
            self.network_sources.append(source)
            await asyncio.to_thread(source.start, (host, port), "5", 10.0, cfg.kafka.bridge_group,
                                    cfg.kafka.bridge_client_id)  # fmt: skip
        self.ready.set()
        logger.info("bridge running: MQTT %s:%s → Kafka %s", host, port, cfg.kafka.url)
        try:
            await stop.wait()
            for source in self.network_sources:
                await asyncio.to_thread(source.stop)
            await asyncio.to_thread(client.stop)  # no new messages; what we hold goes out, then we leave
            await asyncio.to_thread(self.report_worker.close)  # reports being checked go out too
            await producing
        finally:
            producing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producing
            await producer.stop()
            if http is not None:
                await http.stop()

    def health(self) -> dict[str, Any]:
        """What ``/readyz`` says of this bridge: connected to the MQTT broker and to Kafka."""
        mqtt_ok = self.client is not None and self.client.connected.is_set()
        networks = {s.network.name: s.connected for s in self.network_sources}
        return {
            "ok": bool(mqtt_ok and self._producer_ok and all(networks.values())),
            "lorawan_connected": networks,
            "runner": "bridge",
            "mqtt_connected": mqtt_ok,
            "kafka_producer": self._producer_ok,
            "in_flight": self._in_flight,
            "forwarded": self.forwarded,
            "rejected": self.rejected,
        }


def run_bridge(cfg: EngineConfig, stop: asyncio.Event | None = None) -> Bridge:
    """Run a bridge until SIGINT/SIGTERM (or ``stop``)."""
    import signal

    bridge = Bridge(cfg)

    async def main() -> None:
        done = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, done.set)
        await bridge.run(done)

    asyncio.run(main())
    return bridge


def _no_ack() -> None:
    """The acknowledgement of a message that needs none (QoS 0)."""
