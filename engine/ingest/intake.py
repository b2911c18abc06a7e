"""The thread-safe front of the core: MQTT messages in, batches out, rejections to the dead-letter topic."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from engine import metrics
from engine.config.models import EngineConfig
from engine.core.batch import BatchBuilder, ReadingBatch
from engine.core.devices import DeviceIndex
from engine.ingest.camera_intake import CameraIntake
from engine.ingest.decode import Rejection, SensorDecoder
from engine.ingest.rate_limit import DeviceRateLimiter
from engine.ingest.topics import Topic, TopicError, deadletter_topic, parse_topic

logger = logging.getLogger(__name__)

Publish = Callable[[str, bytes], object]


DEADLETTER_PAYLOAD_MAX = 4096


def deadletter_message(rej: Rejection, topic: str, payload: bytes, received_at: float) -> bytes:
    """The dead-letter record: reason, detail, original topic and the original payload (or reading); a
    payload over 4 KB is cut there (``payload_bytes`` gives its size): a dead letter never repeats a flood."""
    doc: dict[str, object] = {"reason": rej.reason, "detail": rej.detail, "topic": topic, "received_at": received_at}
    if len(payload) > DEADLETTER_PAYLOAD_MAX:
        doc["payload_bytes"] = len(payload)
        payload = payload[:DEADLETTER_PAYLOAD_MAX]
    if rej.reading is not None:
        try:
            reading = orjson.dumps(rej.reading)
        except (orjson.JSONEncodeError, TypeError):  # nested deeper than orjson writes (255 levels)
            reading = b""
            doc["reading_unsent"] = "the reading is nested too deep to send as JSON"
        if len(reading) > DEADLETTER_PAYLOAD_MAX:
            doc["reading_bytes"] = len(reading)
            doc["reading_cut"] = reading[:DEADLETTER_PAYLOAD_MAX].decode("utf-8", "replace")
        elif reading:
            doc["reading"] = rej.reading
    else:
        try:
            doc["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            doc["payload_b64"] = base64.b64encode(payload).decode()
    return orjson.dumps(doc)


class Intake:
    """Decodes messages into the current batch under a lock; ``take`` swaps the batch out.

    ``on_full`` is called (from the caller's thread) once the batch reaches ``batch_max``.
    """

    def __init__(
        self,
        cfg: EngineConfig,
        devices: DeviceIndex,
        publish: Publish | None = None,
        on_full: Callable[[], None] | None = None,
        cameras: CameraIntake | None = None,
        reports: Callable[[Topic, bytes, float, Callable[[], None]], list[Rejection] | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.prefix = cfg.mqtt.topic_prefix
        self.builder = BatchBuilder(devices)
        self.decoder = SensorDecoder(cfg.ingest, self.builder, {s.id for s in cfg.sites})
        self._lock = threading.Lock()
        self.publish = publish
        self._on_full = on_full
        self.first_at: float | None = None
        self.rejected = 0
        self._acks: list[Callable[[], None]] = []  # of the messages in the open batch
        self.taken_acks: list[Callable[[], None]] = []  # of the batch last taken, until it is processed
        self.cameras = cameras  # camera and thermal frames go there; without it they are ignored
        # Grid reports go there (without it they are dead-lettered, no_reports); it returns None when it has
        # taken the message's acknowledgement, to call once the report is applied.
        self.reports = reports
        ing = cfg.ingest
        self.limiter = (
            DeviceRateLimiter(ing.device_max_msgs_per_s, ing.device_burst) if ing.device_max_msgs_per_s else None
        )
        self._flood_reported: dict[str, float] = {}  # device topic → when its last rate_limited dead letter went
        self._messages: dict[str, Any] = {}  # gridwatch_messages children by topic kind

    def handle(
        self,
        topic: str,
        payload: bytes,
        props: dict[str, str] | None = None,
        now: float | None = None,
        ack: Callable[[], None] | None = None,
        redelivered: bool = False,
    ) -> None:
        """Decode one message into the batch. ``ack`` (manual MQTT acknowledgement) is called once the batch
        holding the message has been processed (``ack_taken``); at once for what adds nothing to a batch."""
        now = time.time() if now is None else now
        try:
            t = parse_topic(topic, self.prefix)
        except TopicError as exc:
            self.reject([Rejection("bad_topic", str(exc))], topic, payload, now)
            if ack is not None:
                ack()
            return
        counter = self._messages.get(t.kind)
        if counter is None:  # one labelled child a topic kind: labels() per message cost 8 us of its 60
            counter = self._messages[t.kind] = metrics.MESSAGES.labels(t.kind)
        counter.inc()
        if t.kind == "sensors" and self.limiter is not None and not self._allowed(topic, payload, now):
            if ack is not None:
                ack()
            return
        if t.kind == "reports":
            refused: list[Rejection] | None
            try:
                refused = (
                    self.reports(t, payload, now, ack or _no_ack)
                    if self.reports is not None
                    else [Rejection("no_reports", "this runner takes grid reports over its HTTP API only")]
                )
            except Exception as exc:  # a bug on one report must not stop intake
                logger.exception("handling a report on %s failed", topic)
                refused = [Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:300])]
            if refused:
                self.reject(refused, topic, payload[:65536], now)
            if refused is not None and ack is not None:
                ack()
            return
        if t.kind != "sensors":
            try:
                # Device status (online/offline) is acknowledged and not used; frames may be dropped under load
                # anyway: no holding them.
                if t.kind != "status" and self.cameras is not None:
                    self.cameras.handle(t, topic, payload, props or {}, now)
            except Exception as exc:  # a bug on one frame must not leave it unacknowledged, nor stop intake
                logger.exception("handling a frame on %s failed", topic)
                self.reject([Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:300])], topic,
                            payload[:64], now)  # fmt: skip
            finally:
                if ack is not None:
                    ack()
            return
        with self._lock:
            before = len(self.builder)
            try:
                rejected = self.decoder.decode(t, payload, now)
            except Exception as exc:  # a decoder bug: the message is dead-lettered and acknowledged, never held
                logger.exception("decoding a message on %s failed", topic)
                self.builder.truncate(before)  # none of the message's readings, as for any dead letter
                rejected = [Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:300])]
            added, full = self._kept(before, ack, redelivered)
        self._after(added, full, rejected, topic, payload, now)

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
        """Readings that another adapter placed (a LoRaWAN uplink, a datalogger's post: ``kind``) into the batch,
        checked as a sensor message's; the refused ones, those given and those the checks found, are
        dead-lettered with ``topic`` and ``payload`` and returned. ``ack`` as in ``handle``."""
        counter = self._messages.get(kind)
        if counter is None:
            counter = self._messages[kind] = metrics.MESSAGES.labels(kind)
        counter.inc()
        rejected = list(refused)
        with self._lock:
            before = len(self.builder)
            try:
                for site, device, doc in readings:
                    rej = self.decoder.reading(site, device, doc, now)
                    if rej is not None:
                        rejected.append(rej if len(readings) == 1 else replace(rej, reading=doc))
            except Exception as exc:  # a bug: the message is dead-lettered and acknowledged, never held
                logger.exception("taking the readings of %s failed", topic)
                self.builder.truncate(before)
                rejected.append(Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:300]))
            added, full = self._kept(before, ack, redelivered)
        self._after(added, full, rejected, topic, payload, now)
        return rejected

    def _kept(self, before: int, ack: Callable[[], None] | None, redelivered: bool) -> tuple[int, bool]:
        """Under the lock, after one message's readings went into the batch from index ``before``: how many
        were added and whether the batch is full; ``ack`` waits for the batch when some were, else runs now."""
        added = len(self.builder) - before
        if redelivered:
            self.builder.mark_redelivered(before)
        if added and self.first_at is None:
            self.first_at = time.monotonic()
        if ack is not None:
            if added:
                self._acks.append(ack)
            else:
                ack()
        return added, len(self.builder) >= self.cfg.ingest.batch_max

    def _after(self, added: int, full: bool, rejected: list[Rejection], topic: str, payload: bytes, now: float) -> None:
        """Outside the lock: count the readings, dead-letter the refused ones, start a full batch."""
        if added:
            metrics.READINGS.inc(added)
        if rejected:
            self.reject(rejected, topic, payload, now)
        if full and self._on_full is not None:
            self._on_full()

    def _allowed(self, topic: str, payload: bytes, now: float) -> bool:
        """The device's rate limit; a refused message is counted, and dead-lettered once a minute per device
        (so that a flood is not echoed message for message onto the dead-letter topic)."""
        assert self.limiter is not None
        with self._lock:
            if self.limiter.allow(topic, time.monotonic()):
                return True
            last = self._flood_reported.get(topic, -1e18)
            report = now - last >= 60.0
            if report:
                self._flood_reported[topic] = now
        if report:
            rate = self.cfg.ingest.device_max_msgs_per_s
            detail = f"more than {rate:g} messages/s from this device; refused until it slows down"
            self.reject([Rejection("rate_limited", detail)], topic, payload, now)
        else:
            metrics.DEADLETTERS.labels("rate_limited").inc()
            self.rejected += 1
        return False

    def publish_deadletter(self, reason: str, record: bytes) -> None:
        """A dead letter that is not about one message (a detector's failure on a batch), counted."""
        self.rejected += 1
        metrics.DEADLETTERS.labels(reason).inc()
        if self.publish is not None:
            self.publish(deadletter_topic(self.prefix, reason), record)

    def reject(self, rejected: list[Rejection], topic: str, payload: bytes, now: float) -> None:
        """Count every rejection; send at most ``max_deadletters_per_message`` dead letters for one message
        and one summary of the rest (a 262 KB batch of bad readings used to become 131,062 dead letters)."""
        limit = self.cfg.ingest.max_deadletters_per_message
        for rej in rejected:
            self.rejected += 1
            metrics.DEADLETTERS.labels(rej.reason).inc()
        if self.publish is None:
            return
        for rej in rejected[:limit]:
            logger.debug("dead-letter %s on %s: %s", rej.reason, topic, rej.detail)
            self.publish(deadletter_topic(self.prefix, rej.reason), deadletter_message(rej, topic, payload, now))
        rest = rejected[limit:]
        if rest:
            counts: dict[str, int] = {}
            for rej in rest:
                counts[rej.reason] = counts.get(rej.reason, 0) + 1
            first = rest[0].reason
            detail = f"{len(rest)} more rejected readings in this message: " + ", ".join(
                f"{reason} {n}" for reason, n in sorted(counts.items())
            )
            summary = Rejection(f"{first}_more" if len(counts) == 1 else "rejected_more", detail)
            self.publish(deadletter_topic(self.prefix, summary.reason), deadletter_message(summary, topic, b"", now))

    def pending(self) -> int:
        return len(self.builder)

    def take(self) -> ReadingBatch:
        """The open batch; its messages' acknowledgements move to ``taken_acks`` (see ``ack_taken``)."""
        with self._lock:
            self.first_at = None
            self.taken_acks.extend(self._acks)
            self._acks = []
            return self.builder.take()

    def ack_taken(self) -> None:
        """The batch last taken has been processed and stored: acknowledge its messages to the broker."""
        for ack in self.take_acks():
            ack()

    def take_acks(self) -> list[Callable[[], None]]:
        """The acknowledgements of the batch last taken, to call later (after a checkpoint, say)."""
        acks, self.taken_acks = self.taken_acks, []
        return acks


def _no_ack() -> None:
    """The acknowledgement of a message that needs none (QoS 0, a test's direct call)."""
