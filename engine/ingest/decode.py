"""Sensor payloads (docs/contracts.md: single readings and gateway batches) decoded into a ``BatchBuilder``.

Every reading is validated whole: if any of its values is bad, the reading is rejected with the reason
and nothing of it enters the batch. A gateway batch rejects only its bad readings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

from engine.config.models import IngestConfig
from engine.core.batch import BatchBuilder
from engine.core.quantities import QUANTITIES, ValueName, alias_name, value_name
from engine.ingest.bounds import TimeWindow
from engine.ingest.sequence import SeqWindow
from engine.ingest.timestamps import TimestampError, parse_ts
from engine.ingest.topics import Topic, valid_id

_LOW = [q.low for q in QUANTITIES]
_HIGH = [q.high for q in QUANTITIES]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a reading or message was refused; it goes to ``<prefix>/deadletter/<reason>``."""

    reason: str
    detail: str
    device: str = ""
    reading: Any = None


class SensorDecoder:
    """Decodes sensor messages into the batch builder; returns the rejections.

    >>> from engine.core.devices import DeviceIndex
    >>> b = BatchBuilder(DeviceIndex()); d = SensorDecoder(IngestConfig(), b)
    >>> d.decode(Topic("sensors", "S1", "rain-1"), b'{"ts": 1700000000, "values": {"rain_mm": 0.4}}', now=1700000000)
    []
    >>> bad = b'{"ts": 1700000000, "values": {"rain": 1}}'
    >>> [r.reason for r in d.decode(Topic("sensors", "S1", "rain-1"), bad, now=1700000000)]
    ['unknown_metric']
    """

    def __init__(self, cfg: IngestConfig, builder: BatchBuilder, known_sites: set[str] | None = None) -> None:
        self.cfg = cfg
        self.builder = builder
        self.known_sites = known_sites if cfg.reject_unknown_sites else None
        self.seq = SeqWindow(cfg.seq_window)
        self.window = TimeWindow(cfg.max_future_s, cfg.max_past_s)
        self._aliases = {k: alias_name(k, v) for k, v in cfg.metric_aliases.items()}
        # Per reading, the hot path looks each value's name up once here: (metric, scale, offset, low, high) of
        # the names met so far. Only names that mean a metric are kept, and those are few (metrics x units).
        self._known: dict[str, tuple[int, float, float, float, float]] = {}
        self._valid_devices: set[str] = set()  # device ids of gateway batches already checked (valid_id)

    def _name(self, name: str) -> ValueName | None:
        return self._aliases.get(name) or value_name(name)

    def _metric(self, name: str) -> tuple[int, float, float, float, float] | None:
        known = self._known.get(name)
        if known is None:
            vn = self._name(name)
            if vn is None:
                return None
            known = self._known[name] = (vn.metric, vn.scale, vn.offset, _LOW[vn.metric], _HIGH[vn.metric])
        return known

    def _valid_device(self, device: object) -> TypeGuard[str]:
        if not isinstance(device, str):
            return False
        if device in self._valid_devices:
            return True
        if not valid_id(device):
            return False
        if len(self._valid_devices) >= 262_144:  # bounded: a stream of made-up ids costs a re-check, not memory
            self._valid_devices.clear()
        self._valid_devices.add(device)
        return True

    def decode(self, topic: Topic, payload: bytes, now: float) -> list[Rejection]:
        if len(payload) > self.cfg.max_payload_bytes:
            return [Rejection("too_large", f"payload of {len(payload)} bytes is over {self.cfg.max_payload_bytes}")]
        if self.known_sites is not None and topic.site not in self.known_sites:
            return [Rejection("unknown_site", f"site {topic.site!r} is not in the config")]
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return [Rejection("malformed_json", f"not JSON: {exc}")]
        if not isinstance(doc, dict):
            return [Rejection("malformed_reading", "the payload must be a JSON object")]
        if not topic.is_gateway_batch:
            reason = self._reading(topic.site, topic.device, doc, now)
            return [] if reason is None else [Rejection(reason[0], reason[1], topic.device)]
        items = doc.get("readings")
        if not isinstance(items, list):
            return [Rejection("malformed_batch", "a gateway batch needs a `readings` list")]
        rejected = []
        for item in items:
            device = item.get("device") if isinstance(item, dict) else None
            if not self._valid_device(device):
                rejected.append(
                    Rejection(
                        "malformed_reading",
                        "each batch reading needs a `device` id (1-128 letters, digits, _ . : @ -)",
                        reading=item,
                    )
                )
                continue
            reason = self._reading(topic.site, device, item, now)
            if reason is not None:
                rejected.append(Rejection(reason[0], reason[1], device, item))
        return rejected

    def reading(self, site: str, device: str, doc: dict[str, Any], now: float) -> Rejection | None:
        """One reading already placed at its site and device (a LoRaWAN uplink's, a datalogger's row): checked
        as every reading of a sensor message, and added to the batch when it passes."""
        if self.known_sites is not None and site not in self.known_sites:
            return Rejection("unknown_site", f"site {site!r} is not in the config", device)
        reason = self._reading(site, device, doc, now)
        return None if reason is None else Rejection(reason[0], reason[1], device)

    def _reading(self, site: str, device: str, doc: dict[str, Any], now: float) -> tuple[str, str] | None:
        raw = doc.get("ts")
        # The common case first: a number (not a bool) that is a valid epoch time, checked as parse_ts would.
        if type(raw) is float or type(raw) is int:
            ts = float(raw)
            if not ts >= 0.0 or ts == math.inf:
                try:
                    parse_ts(raw)
                except TimestampError as exc:
                    return exc.reason, str(exc)
        else:
            try:
                ts = parse_ts(raw)
            except TimestampError as exc:
                return exc.reason, str(exc)
        window = self.window
        if not window.oldest <= ts <= now + window.max_future_s:  # the common case costs two comparisons
            late = window.reason(ts, now)
            if late is not None:
                return late.reason, str(late)
        values = doc.get("values")
        if not isinstance(values, dict) or not values:
            return "no_values", "the reading needs a non-empty `values` object"
        parsed: list[tuple[int, float]] = []
        for name, value in values.items():
            known = self._metric(name)
            if known is None:
                return "unknown_metric", f"metric {name!r} is not a contract metric, a unit of one, or an alias"
            kind = type(value)
            if kind is not float and (kind is bool or not isinstance(value, int | float)):
                return "non_numeric", f"value of {name} is {type(value).__name__}, not a number"
            mid, scale, offset, low, high = known
            v = float(value)
            if scale != 1.0 or offset != 0.0:
                v = v * scale + offset
            if not low <= v <= high:  # NaN fails it too
                if not math.isfinite(v):
                    return "non_finite", f"value of {name} is not finite"
                return "out_of_range", f"{name}={v} is outside the possible {low}…{high}"
            parsed.append((mid, v))
        devices = self.builder.devices
        slot = devices.find(site, device)
        if slot is None:
            if len(devices) >= self.cfg.max_devices:
                return "device_limit", (
                    f"already {len(devices)} devices (ingest.max_devices): {site}/{device} not tracked"
                )
            slot = devices.slot(site, device)
        seq = doc.get("seq")
        if seq is not None:
            if isinstance(seq, bool) or not isinstance(seq, int):
                return "bad_seq", "seq must be an integer"
            if self.seq.is_duplicate(slot, seq):
                return "duplicate_seq", f"seq {seq} of {site}/{device} was already received"
        add = self.builder.add_slot
        for mid, v in parsed:
            add(slot, ts, mid, v)
        if ts > window.newest:
            window.observe(ts)
        return None
