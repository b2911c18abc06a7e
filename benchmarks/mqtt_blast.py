"""A load generator that publishes pre-encoded MQTT 3.1.1 QoS 1 messages in bulk over one socket.

paho spends about 100 us of Python on each message it publishes, so on a 2-core box two paho generators
offer fewer than 10,000 single-reading messages/s and take the CPU the engine and the broker need. This
writes the same PUBLISH packets (QoS 1, a packet id each, one device per topic) thousands at a time and
counts the broker's PUBACKs, keeping at most ``window`` unacknowledged: a few microseconds a message.
Used by ``bench_ingest_e2e.py`` for the single-reading run; the engine side is unchanged (paho, MQTT v5).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    body = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _string(client_id.encode())
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = _string(topic.encode()) + struct.pack("!H", packet_id) + payload
    return b"\x32" + _remaining_length(len(body)) + body  # PUBLISH, QoS 1


def blast(host: str, port: int, client_id: str, messages: Iterator[tuple[str, bytes]], total: int,
          rate: float = 0.0, window: int = 20_000, chunk: int = 500) -> float:  # fmt: skip
    """Publish ``total`` (topic, payload) messages, paced at ``rate``/s if given; returns when the broker has
    acknowledged them all, the messages/s from the first write to the last PUBACK."""
    if rate:
        chunk = max(1, min(chunk, int(rate / 200)))  # 5 ms of messages a write
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(client_id))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"broker refused the connection: {connack!r}")
    sent = acked = 0
    pending = b""  # bytes of a PUBACK split across reads
    t0 = time.perf_counter()
    while acked < total:
        allowed = total if not rate else min(total, int(rate * (time.perf_counter() - t0)) + chunk)
        if sent < allowed and sent - acked < window:
            n = min(chunk, allowed - sent, window - (sent - acked))
            packets = []
            for _ in range(n):
                topic, payload = next(messages)
                packets.append(publish_packet(topic, payload, sent % 65535 + 1))
                sent += 1
            sock.sendall(b"".join(packets))
            sock.setblocking(False)
        elif sent < total and sent - acked < window:  # paced: wait for the next slot, reading acks meanwhile
            sock.settimeout(max(0.0005, (sent + 1 - chunk) / rate - (time.perf_counter() - t0)))
        else:
            sock.setblocking(True)
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, TimeoutError):
            continue
        if not data:
            raise ConnectionError("the broker closed the connection")
        data = pending + data
        whole = len(data) - len(data) % 4  # every packet from the broker now is a 4-byte PUBACK
        acked += whole // 4
        pending = data[whole:]
    elapsed = time.perf_counter() - t0
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    return total / elapsed
