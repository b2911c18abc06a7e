"""LoRaWAN uplinks, as a network server's MQTT integration publishes them, turned into gridwatch readings.

Two network servers' JSON (the protobuf JSON mapping: a field at its default value, ``0`` or ``""``, is left
out):

- ChirpStack v4, ``application/<application_id>/device/<dev_eui>/event/up``: ``deviceInfo`` (``devEui``,
  ``deviceName``, ``deviceProfileName``, ``tags``), ``time``, ``fCnt``, the codec's decoded ``object``, and
  ``rxInfo[]`` (``rssi``, ``snr``) per gateway; ``…/event/status`` carries ``batteryLevel`` (%).
- The Things Stack v3, ``v3/<application>@<tenant>/devices/<device_id>/up``: ``end_device_ids``
  (``device_id``, ``dev_eui``), ``received_at``, and ``uplink_message`` with ``decoded_payload``,
  ``rx_metadata[]`` (``rssi``, ``snr``, ``time``), ``f_cnt``, ``received_at``, ``version_ids`` and, on some,
  ``last_battery_percentage`` (``f_cnt``, ``value``).

The reading's time is the network's (ChirpStack's ``time``, The Things Stack's network-server
``received_at``), not the engine's; the decoder bounds it as every entry's. ``fCnt`` becomes the reading's
``seq``, so an uplink delivered twice is a ``duplicate_seq``. The decoded fields become values through the
device profile's field map (``lorawan.profiles``); the best RSSI and SNR of the gateways that heard the
uplink, and the battery, become the device-health metrics ``rssi_dbm``, ``snr_db`` and ``battery_pct``.
An uplink that cannot be read raises ``UplinkError`` with the dead letter's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from engine.config.models import LorawanConfig, LorawanDevice
from engine.core.quantities import value_name
from engine.ingest.topics import valid_id

MAX_DEPTH = 6  # decoded objects nest sensors in channels at most a few levels deep
MAX_FIELDS = 256  # leaves of a decoded object looked at; a larger object's rest is left out


class UplinkError(ValueError):
    """An uplink that gives no reading: ``reason`` names the dead letter, the message says what to fix."""

    def __init__(self, reason: str, detail: str, device: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.device = device


@dataclass(frozen=True, slots=True)
class Uplink:
    """What gridwatch reads of one network-server event, whichever server sent it."""

    dev_eui: str  # lower-case hex
    ts: str  # the network's time, ISO-8601 with offset
    decoded: dict[str, Any] | None = None  # None: a status event (battery only)
    fcnt: int | None = None
    device_id: str | None = None  # The Things Stack's own device id
    profile: str | None = None
    tags: dict[str, Any] | None = None
    rssi: float | None = None
    snr: float | None = None
    battery: float | None = None


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _signal(receptions: Any) -> tuple[float | None, float | None]:
    """The best RSSI and SNR over the gateways that heard the uplink. A gateway entry without ``snr`` had 0 dB
    (the protobuf JSON mapping leaves a zero out)."""
    rssi: float | None = None
    snr: float | None = None
    if not isinstance(receptions, list):
        return None, None
    for rx in receptions:
        if not isinstance(rx, dict):
            continue
        r = _number(rx.get("rssi"))
        if r is None:
            continue
        s = _number(rx.get("snr", 0.0))
        rssi = r if rssi is None else max(rssi, r)
        if s is not None:
            snr = s if snr is None else max(snr, s)
    return rssi, snr


def _dev_eui(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 16:
        raise UplinkError("not_an_uplink", f"{where} is not a 16-digit DevEUI")
    try:
        int(value, 16)
    except ValueError:
        raise UplinkError("not_an_uplink", f"{where} is not a 16-digit DevEUI") from None
    return value.lower()


def _frame_counter(value: Any, what: str, dev_eui: str) -> int:
    """The uplink's frame counter (``fCnt``, ``f_cnt``: the reading's ``seq``); 0 where the network leaves it out."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UplinkError("bad_seq", f"{what} is not an integer", dev_eui)
    return value


def _time(value: Any, what: str, dev_eui: str) -> str:
    if not isinstance(value, str) or not value:
        raise UplinkError("missing_ts", f"the uplink has no {what}", dev_eui)
    return value


def chirpstack_event(topic: str, doc: Any) -> Uplink | None:
    """A ChirpStack v4 ``up`` or ``status`` event; None for a status that reports no battery level.

    >>> up = chirpstack_event("application/a1/device/0101010101010101/event/up", {
    ...     "time": "2022-07-18T09:34:15.775023242+00:00", "fCnt": 7, "object": {"level": 1.25},
    ...     "deviceInfo": {"devEui": "0101010101010101", "deviceProfileName": "gauge"},
    ...     "rxInfo": [{"rssi": -36, "snr": 10.5}, {"rssi": -90}]})
    >>> up.dev_eui, up.fcnt, up.decoded, up.rssi, up.snr
    ('0101010101010101', 7, {'level': 1.25}, -36.0, 10.5)
    """
    parts = topic.split("/")
    event = parts[-1] if len(parts) == 6 and parts[0] == "application" and parts[4] == "event" else ""
    if event not in ("up", "status"):
        raise UplinkError("not_an_uplink", f"topic {topic[:200]!r} is not application/<id>/device/<deveui>/event/up "
                          "or …/status")  # fmt: skip
    if not isinstance(doc, dict) or not isinstance(doc.get("deviceInfo"), dict):
        raise UplinkError("not_an_uplink", "a ChirpStack event needs a `deviceInfo` object")
    info = doc["deviceInfo"]
    dev_eui = _dev_eui(info.get("devEui"), "deviceInfo.devEui")
    if parts[3].lower() != dev_eui:
        raise UplinkError("topic_mismatch", f"the topic's DevEUI {parts[3][:32]!r} is not the payload's {dev_eui}",
                          dev_eui)  # fmt: skip
    ts = _time(doc.get("time"), "`time`", dev_eui)
    profile = info.get("deviceProfileName") if isinstance(info.get("deviceProfileName"), str) else None
    tags = info.get("tags") if isinstance(info.get("tags"), dict) else None
    if event == "status":
        if doc.get("batteryLevelUnavailable") or doc.get("externalPowerSource"):
            return None
        level = _number(doc.get("batteryLevel", 0.0))  # left out when it is 0 %
        if level is None:
            raise UplinkError("non_numeric", "batteryLevel is not a number", dev_eui)
        return Uplink(dev_eui, ts, None, profile=profile, tags=tags, battery=level)
    decoded = doc.get("object")
    if not isinstance(decoded, dict):
        raise UplinkError("no_decoded_payload", "the uplink has no decoded `object`: give its device profile a codec "
                          "(ChirpStack: device profile → Codec) that decodes the payload", dev_eui)  # fmt: skip
    fcnt = _frame_counter(doc.get("fCnt", 0), "fCnt", dev_eui)
    rssi, snr = _signal(doc.get("rxInfo"))
    return Uplink(dev_eui, ts, decoded, fcnt, None, profile, tags, rssi, snr)


def tts_uplink(topic: str, doc: Any) -> Uplink:
    """A The Things Stack v3 uplink message.

    >>> up = tts_uplink("v3/app1@tenant1/devices/dev1/up", {
    ...     "end_device_ids": {"device_id": "dev1", "dev_eui": "0004A30B001C0530"},
    ...     "received_at": "2020-02-12T15:15:50.1Z",
    ...     "uplink_message": {"f_cnt": 3, "decoded_payload": {"temperature": 1.0},
    ...                        "received_at": "2020-02-12T15:15:50.09Z", "rx_metadata": [{"rssi": -35, "snr": 5.2}],
    ...                        "last_battery_percentage": {"f_cnt": 3, "value": 87.5}}})
    >>> up.dev_eui, up.device_id, up.ts, up.rssi, up.battery
    ('0004a30b001c0530', 'dev1', '2020-02-12T15:15:50.09Z', -35.0, 87.5)
    """
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "v3" or parts[2] != "devices" or parts[4] != "up":
        raise UplinkError("not_an_uplink", f"topic {topic[:200]!r} is not v3/<app>@<tenant>/devices/<device>/up")
    if not isinstance(doc, dict) or not isinstance(doc.get("end_device_ids"), dict):
        raise UplinkError("not_an_uplink", "a The Things Stack message needs `end_device_ids`")
    ids = doc["end_device_ids"]
    dev_eui = _dev_eui(ids.get("dev_eui"), "end_device_ids.dev_eui")
    device_id = ids.get("device_id") if isinstance(ids.get("device_id"), str) else None
    if device_id is not None and device_id != parts[3]:
        raise UplinkError("topic_mismatch", f"the topic's device {parts[3][:64]!r} is not the payload's "
                          f"{device_id[:64]!r}", dev_eui)  # fmt: skip
    up = doc.get("uplink_message")
    if not isinstance(up, dict):
        raise UplinkError("not_an_uplink", "the message has no `uplink_message`", dev_eui)
    ts = _time(up.get("received_at") or doc.get("received_at"), "`received_at`", dev_eui)
    decoded = up.get("decoded_payload")
    if not isinstance(decoded, dict):
        raise UplinkError("no_decoded_payload", "the uplink has no `decoded_payload`: give the end device a payload "
                          "formatter (The Things Stack: Payload formatters → Uplink)", dev_eui)  # fmt: skip
    fcnt = _frame_counter(up.get("f_cnt", 0), "f_cnt", dev_eui)
    versions = up.get("version_ids")
    profile = versions.get("model_id") if isinstance(versions, dict) else None
    battery = None
    last = up.get("last_battery_percentage")
    # The Things Stack repeats the last battery report on every uplink; it is this uplink's only when it came
    # with it (its f_cnt), so the same reading is not taken again and again at later times.
    if isinstance(last, dict) and last.get("f_cnt", 0) == fcnt:
        battery = _number(last.get("value", 0.0))
    rssi, snr = _signal(up.get("rx_metadata"))
    return Uplink(dev_eui, ts, decoded, fcnt, device_id, profile if isinstance(profile, str) else None, None, rssi,
                  snr, battery)  # fmt: skip


def flatten(decoded: dict[str, Any]) -> dict[str, Any]:
    """The leaves of a decoded object by dotted path (lists are leaves), at most ``MAX_FIELDS`` of them and
    ``MAX_DEPTH`` levels deep.

    >>> flatten({"level": 1.2, "ch1": {"temp": 20.5, "ok": True}, "raw": [1, 2]})
    {'level': 1.2, 'ch1.temp': 20.5, 'ch1.ok': True, 'raw': [1, 2]}
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any], depth: int) -> None:
        for key, value in node.items():
            if len(out) >= MAX_FIELDS:
                return
            if isinstance(value, dict):
                if depth + 1 < MAX_DEPTH:
                    walk(f"{prefix}{key}.", value, depth + 1)
            else:
                out[f"{prefix}{key}"] = value

    walk("", decoded, 0)
    return out


class UplinkReadings:
    """Turns uplinks into readings ``(site, device, doc)``, ``doc`` as a sensor message's
    (``{"ts", "values", "seq"}``) for ``SensorDecoder.reading``.

    >>> from engine.config.models import LorawanProfile
    >>> cfg = LorawanConfig(profiles=[LorawanProfile(name="gauge", fields={"level": "water_level_cm"})],
    ...                     devices=[LorawanDevice(dev_eui="0101010101010101", site="S1")])
    >>> r = UplinkReadings(cfg, "chirpstack")
    >>> site, device, doc = r.reading("application/a1/device/0101010101010101/event/up", orjson.dumps({
    ...     "time": "2022-07-18T09:34:15Z", "fCnt": 7, "object": {"level": 125, "note": "ok"},
    ...     "deviceInfo": {"devEui": "0101010101010101", "deviceProfileName": "gauge"},
    ...     "rxInfo": [{"rssi": -36, "snr": 10.5}]}))
    >>> site, device, doc["values"], doc["seq"]
    ('S1', 'eui-0101010101010101', {'water_level_cm': 125, 'rssi_dbm': -36.0, 'snr_db': 10.5}, 7)
    """

    def __init__(self, cfg: LorawanConfig, kind: str) -> None:
        self.cfg = cfg
        self.parse = chirpstack_event if kind == "chirpstack" else tts_uplink
        self.devices: dict[str, LorawanDevice] = {d.dev_eui.lower(): d for d in cfg.devices}
        self.profiles = {p.name: p.fields for p in cfg.profiles}

    def reading(self, topic: str, payload: bytes) -> tuple[str, str, dict[str, Any]] | None:
        """The reading of one uplink, None for an event with nothing to take; raises ``UplinkError``."""
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UplinkError("malformed_json", f"not JSON: {exc}") from None
        up = self.parse(topic, doc)
        if up is None:
            return None
        site, device, profile = self._place(up)
        values: dict[str, Any] = {}
        if up.decoded is not None:
            fields = self.profiles.get(profile or "", {})
            flat = flatten(up.decoded)
            for path, value in flat.items():
                name = fields.get(path) or (path if value_name(path) is not None else None)
                if name is not None:
                    values[name] = value
            if not values:
                names = ", ".join(sorted(flat)[:20]) or "none"
                hint = (f"lorawan.profiles entry {profile!r} maps none of them" if profile in self.profiles
                        else f"add a lorawan.profiles entry named {profile!r} with `fields`" if profile
                        else "give the device a `profile` in lorawan.devices")  # fmt: skip
                raise UplinkError("unmapped_fields", f"no decoded field is a gridwatch metric (fields: {names}); "
                                  f"{hint}", device)  # fmt: skip
        if self.cfg.signal and up.rssi is not None:
            values.setdefault("rssi_dbm", up.rssi)
            if up.snr is not None:
                values.setdefault("snr_db", up.snr)
        if self.cfg.battery and up.battery is not None:
            values.setdefault("battery_pct", up.battery)
        if not values:
            return None
        doc_out: dict[str, Any] = {"ts": up.ts, "values": values}
        if up.fcnt is not None:
            doc_out["seq"] = up.fcnt
        return site, device, doc_out

    def _place(self, up: Uplink) -> tuple[str, str, str | None]:
        """Site, device id and profile of the uplink's device: its ``lorawan.devices`` entry, else its tags."""
        entry = self.devices.get(up.dev_eui)
        tags = up.tags or {}
        default_id = up.device_id if up.device_id and valid_id(up.device_id) else f"eui-{up.dev_eui}"
        if entry is not None:
            return entry.site, entry.id or default_id, entry.profile or up.profile
        site = tags.get(self.cfg.site_tag)
        if not isinstance(site, str):
            raise UplinkError("unknown_device", f"device {up.dev_eui} is in no lorawan.devices entry and has no "
                              f"`{self.cfg.site_tag}` tag: add it to lorawan.devices with its site",
                              f"eui-{up.dev_eui}")  # fmt: skip
        device = tags.get("gridwatch_device")
        device = device if isinstance(device, str) else default_id
        if not valid_id(site) or not valid_id(device):
            raise UplinkError("malformed_reading", f"site {site[:64]!r} or device {device[:64]!r} from the tags is not "
                              "a valid id (1-128 letters, digits, _ . : @ -)", f"eui-{up.dev_eui}")  # fmt: skip
        return site, device, up.profile
