"""What the scale-out runner puts on Kafka: validated readings from the bridge, findings and watermarks.

Every record is keyed by site, so a site's readings, its findings and its detector state share one
partition number (Kafka's default partitioner, murmur2 of the key, in the bridge and the worker alike).

- ``gridwatch.readings``: one record per accepted MQTT message, the readings the bridge validated,
  ``{"site": "S1", "readings": [["rain-1", 1732345678.5, "rain_mm", 0.4], …]}``.
- ``gridwatch.frames`` / ``gridwatch.thermal``: the frame bytes as they came, with the MQTT topic and the
  capture time in the headers ``topic`` and ``ts``.
- ``gridwatch.findings``: one record per partition and batch, to the same partition number,
  ``{"wm": …, "findings": [{…, "wm": …}, …]}``: the findings with the watermark at each, and the
  batch's watermark, so that incidents resolve on data time when no finding comes. One record rather
  than one per finding: a send costs far more than the bytes of a finding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from engine.config.models import KafkaConfig
from engine.core.batch import BatchBuilder
from engine.core.findings import Finding
from engine.core.levels import Level
from engine.core.quantities import METRIC_INDEX

_partitioner = DefaultPartitioner()


class RecordError(ValueError):
    """A Kafka record that is not what gridwatch writes: it goes to the dead-letter topic."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def partition_of(site: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a site's records (murmur2 of the key).

    >>> partition_of("S01", 2), partition_of("S01", 2) == partition_of("S01", 2)
    (0, True)
    """
    every = list(range(partitions))
    return int(_partitioner(site.encode(), every, every))


def encode_readings(site: str, builder_rows: list[tuple[str, float, str, float]]) -> bytes:
    """A readings record.

    >>> from engine.core.devices import DeviceIndex
    >>> b = BatchBuilder(DeviceIndex())
    >>> decode_readings(encode_readings("S1", [("rain-1", 1.0, "rain_mm", 0.4)]), b), b.take().value.tolist()
    (('S1', 1), [0.4])
    """
    return orjson.dumps({"site": site, "readings": builder_rows})


def decode_readings(value: bytes, builder: BatchBuilder) -> tuple[str, int]:
    """Add a readings record to ``builder``; returns its site and how many readings. Raises ``RecordError``."""
    try:
        doc = orjson.loads(value)
        site = doc["site"]
        rows = doc["readings"]
        if not isinstance(site, str) or not isinstance(rows, list):
            raise TypeError("site must be a string and readings a list")
        parsed = [(str(d), float(ts), METRIC_INDEX[m], float(v)) for d, ts, m, v in rows]
    except orjson.JSONDecodeError as exc:
        raise RecordError("bad_record", f"not JSON: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError("bad_record", f"not a gridwatch readings record: {exc!r}") from exc
    devices = builder.devices
    for device, ts, metric, value_ in parsed:
        builder.add_slot(devices.slot(site, device), ts, metric, value_)
    return site, len(parsed)


def findings_record(found: Sequence[tuple[Finding, float | None]], watermark: float | None) -> bytes:
    """One partition's findings of one batch, each with the watermark at its reading, and the batch's
    watermark (also sent when there is no finding, so that incidents resolve on data time). ``None`` (JSON
    null): the record moves no data time (a person's grid report, from the bridge)."""
    doc = {
        "wm": watermark,
        "findings": [
            {"detector": f.detector, "hazard": f.hazard, "site": f.site, "device": f.device,
             "ts": None if f.ts == float("-inf") else f.ts,
             "level": int(f.level), "score": float(f.score), "evidence": f.evidence, "wm": at}
            for f, at in found
        ],
    }  # fmt: skip
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_findings_record(value: bytes) -> tuple[float, list[tuple[Finding, float]]]:
    """``(watermark, [(finding, watermark at it), …])`` of a findings-topic record.

    >>> f = Finding("d", "flood", "S1", "wl-1", 10.0, Level.ORANGE, 2.0, {"m": 1})
    >>> decode_findings_record(findings_record([(f, 12.0)], 13.0)) == (13.0, [(f, 12.0)])
    True
    """
    try:
        doc: dict[str, Any] = orjson.loads(value)
        wm = _data_time(doc["wm"])
        found = [
            (
                Finding(
                    str(g["detector"]), str(g["hazard"]), str(g["site"]), str(g["device"]), _data_time(g["ts"]),
                    Level(int(g["level"])), float(g["score"]), dict(g.get("evidence") or {}),
                ),
                _data_time(g["wm"]),
            )
            for g in doc["findings"]
        ]  # fmt: skip
    except orjson.JSONDecodeError as exc:
        raise RecordError("bad_record", f"not JSON: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError("bad_record", f"not a gridwatch findings record: {exc!r}") from exc
    return wm, found


def _data_time(value: Any) -> float:
    return float("-inf") if value is None else float(value)


def topic_names(cfg: KafkaConfig) -> list[str]:
    return [cfg.topic_readings, cfg.topic_frames, cfg.topic_thermal, cfg.topic_findings, cfg.topic_deadletter]


async def ensure_topics(cfg: KafkaConfig) -> None:
    """Create gridwatch's topics with ``partitions`` partitions; refuse to go on if one has another count.

    The bridge and the worker both call it at start: a topic that a producer let the broker create with
    its default partition count would put a site's readings and its state on different partitions.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=cfg.bootstrap_servers())
    await admin.start()
    try:
        wanted = topic_names(cfg)
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, cfg.partitions, cfg.replication) for t in wanted if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was quicker
                await admin.create_topics(missing)
        for desc in await admin.describe_topics(wanted):
            n = len(desc.get("partitions") or [])
            if n and n != cfg.partitions:
                raise SystemExit(
                    f"Kafka topic {desc['topic']!r} has {n} partitions but kafka.partitions is {cfg.partitions}: "
                    "set kafka.partitions to match, or recreate the topic (every gridwatch topic needs the same count)"
                )
    finally:
        await admin.close()
