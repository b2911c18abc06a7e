"""The engine's MQTT client (paho-mqtt 2.x): persistent session, QoS 1, reconnect with backoff."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from engine import metrics
from engine.config.models import MqttConfig

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, dict[str, str]], None]
AckingHandler = Callable[[str, bytes, dict[str, str], Callable[[], None], bool], None]
"""A handler that acknowledges the message itself, by calling the ack argument once it is safe; the last
argument says the broker delivered the message before (MQTT DUP: it may have been processed already)."""


def broker_address(url: str) -> tuple[str, int]:
    """Host and port of an ``mqtt://host:port`` URL.

    >>> broker_address("mqtt://10.0.0.5:1884"), broker_address("mqtt://broker")
    (('10.0.0.5', 1884), ('broker', 1883))
    """
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or (8883 if parsed.scheme == "mqtts" else 1883)


class BufferedClient(paho.Client):
    """paho's client reading the socket 64 KB at a time and handling every packet that read brought.

    paho reads a packet's fixed header one byte per ``recv`` and handles one packet per ``select``: three
    system calls and a wake-up per message, a fifth of the engine's CPU on a stream of single-reading
    messages. Here ``recv`` is served from a buffer filled 64 KB at a time, and a read goes on while the
    buffer holds data (which would not wake ``select``); at most one buffer's packets per read, so
    keep-alives still go out. A reconnect drops what is left of the old connection's bytes.
    """

    _CHUNK = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = memoryview(b"")

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._rbuf:
            data = super()._sock_recv(self._CHUNK)
            if not data:  # the broker closed the connection
                return data
            self._rbuf = memoryview(data)
        out = self._rbuf[:bufsize].tobytes()
        self._rbuf = self._rbuf[bufsize:]
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rbuf and self._sock is not None:
            rc = super().loop_read(max_packets)
        return rc

    def reconnect(self) -> MQTTErrorCode:
        self._rbuf = memoryview(b"")
        return super().reconnect()


class MqttClient:
    """Connects, (re)subscribes on every connect, and calls ``on_message(topic, payload, user_properties)``.

    ``on_message`` runs on paho's network thread. With ``clean=False`` the broker keeps the session and
    the QoS 1 messages published while the engine was away, and delivers them on reconnect.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        on_message: MessageHandler | None = None,
        subscriptions: list[str] | None = None,
        client_id: str | None = None,
        protocol: str | None = None,
        clean: bool = False,
        will: tuple[str, bytes] | None = None,
        track: bool = False,
        on_message_ack: AckingHandler | None = None,
        receive_maximum: int = 0,
    ) -> None:
        """``on_message_ack`` instead of ``on_message``: QoS 1 messages are acknowledged to the broker only
        when the handler says so, so that a message is not lost if this process dies holding it; the
        broker sends at most ``receive_maximum`` (MQTT v5) unacknowledged messages at a time."""
        self.cfg = cfg
        self._on_message_ack = on_message_ack
        self._receive_maximum = receive_maximum
        self.v5 = (protocol or cfg.protocol) == "5"
        self._subs = subscriptions or []
        self._on_message = on_message
        self._track = track
        self._unacked: list[paho.MQTTMessageInfo] = []
        self.connected = threading.Event()
        cid = client_id if client_id is not None else cfg.client_id
        manual = on_message_ack is not None
        if self.v5:
            self.client = BufferedClient(
                CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5, manual_ack=manual
            )
        else:
            self.client = BufferedClient(
                CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv311, clean_session=clean,
                manual_ack=manual,
            )  # fmt: skip
        self._clean = clean
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.secret())
        if cfg.tls:
            self.client.tls_set(
                ca_certs=cfg.tls_ca_file, certfile=cfg.tls_cert_file, keyfile=cfg.tls_key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )  # fmt: skip
            self.client.tls_insecure_set(cfg.tls_insecure)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.on_message = self._message

    def _connected(self, client: paho.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            logger.error("MQTT broker refused the connection: %s", rc)
            return
        logger.info("connected to MQTT broker")
        if self._subs:
            client.subscribe([(s, int(self.cfg.qos)) for s in self._subs])
        metrics.MQTT_CONNECTED.set(1)
        self.connected.set()

    def _disconnected(self, _c: paho.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connected.clear()
        metrics.MQTT_CONNECTED.set(0)
        if rc.is_failure:
            logger.warning("MQTT connection lost (%s); reconnecting with backoff", rc)

    def _message(self, client: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        props: dict[str, str] = {}
        if self.v5 and msg.properties is not None:
            props = dict(getattr(msg.properties, "UserProperty", []) or [])
        try:
            if self._on_message_ack is not None:
                mid, qos = msg.mid, msg.qos
                self._on_message_ack(
                    msg.topic, bytes(msg.payload), props, lambda: self._ack(client, mid, qos), bool(msg.dup)
                )
            elif self._on_message is not None:
                self._on_message(msg.topic, bytes(msg.payload), props)
        except Exception:
            # A handler bug must not kill paho's network thread: log it and keep receiving.
            logger.exception("handling a message on %s failed", msg.topic)

    @staticmethod
    def _ack(client: paho.Client, mid: int, qos: int) -> None:
        if qos > 0:
            client.ack(mid, qos)

    def start(self, host: str, port: int, wait_s: float = 10.0) -> None:
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0 if self._clean else self.cfg.session_expiry_s
            if self._receive_maximum:
                props.ReceiveMaximum = min(self._receive_maximum, 65535)
            self.client.connect_async(
                host, port, keepalive=self.cfg.keepalive_s, clean_start=self._clean, properties=props
            )
        else:
            self.client.connect_async(host, port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        if wait_s and not self.connected.wait(wait_s):
            logger.warning("no connection to MQTT broker %s:%s yet; still trying", host, port)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int | None = None,
        retain: bool = False,
        user_properties: dict[str, str] | None = None,
    ) -> paho.MQTTMessageInfo:
        """Publish; ``user_properties`` (MQTT v5 only, e.g. a camera frame's capture ``ts``) ride along.
        Returns paho's message info (``wait_for_publish`` waits for the broker's PUBACK at QoS 1)."""
        props = None
        if user_properties and self.v5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = list(user_properties.items())
        qos_ = self.cfg.qos if qos is None else qos
        info = self.client.publish(topic, payload, qos=qos_, retain=retain, properties=props)
        if self._track:
            self._unacked.append(info)
            if len(self._unacked) > 10000:
                self._unacked = [i for i in self._unacked if not i.is_published()]
        return info

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until the broker has acknowledged every tracked publication (``track=True``)."""
        deadline = time.monotonic() + timeout_s
        for info in self._unacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                info.wait_for_publish(remaining)
            except RuntimeError:  # not queued: the client was disconnected
                return False
        ok = all(i.is_published() for i in self._unacked)
        self._unacked = []
        return ok

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        metrics.MQTT_CONNECTED.set(0)
