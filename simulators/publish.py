"""Publishing readings as device feeds: one MQTT message per device and time, paced in real time."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator

import orjson

from engine.ingest.replay_file import Row
from engine.ingest.topics import sensor_topic

Publish = Callable[[str, bytes], object]


def messages(rows: Iterable[Row], prefix: str) -> Iterator[tuple[float, str, bytes]]:
    """(ts, topic, payload) per device and time: consecutive rows of one device at one ts form one message."""
    seqs: dict[tuple[str, str], int] = {}
    for (ts, site, device), group in itertools.groupby(rows, key=lambda r: (r[0], r[1], r[2])):
        seq = seqs.get((site, device), 0)
        seqs[(site, device)] = seq + 1
        values = {r[3]: r[4] for r in group}
        yield ts, sensor_topic(prefix, site, device), orjson.dumps({"ts": ts, "seq": seq, "values": values})


def publish_paced(
    rows: Iterable[Row],
    publish: Publish,
    prefix: str,
    speed: float | None = None,
    stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Publish readings; ``speed`` N plays N seconds of data time per second (None: as fast as possible)."""
    sent = 0
    t0_data: float | None = None
    t0_wall = time.monotonic()
    for ts, topic, payload in messages(rows, prefix):
        if stop():
            break
        if speed:
            if t0_data is None:
                t0_data = ts
            lag = (ts - t0_data) / speed - (time.monotonic() - t0_wall)
            if lag > 0:
                time.sleep(lag)
        publish(topic, payload)
        sent += 1
        if progress is not None:
            progress(sent)
    return sent
