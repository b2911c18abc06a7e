"""LoRaWAN uplinks (ChirpStack v4, The Things Stack v3) into readings: the documentation's own payloads, the
dead letter of every kind of bad uplink, and property tests of the parsers."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.loader import ConfigError, parse_config
from engine.config.models import (
    EngineConfig,
    LorawanConfig,
    LorawanDevice,
    LorawanNetwork,
    LorawanProfile,
    SiteConfig,
)
from engine.core.devices import DeviceIndex
from engine.core.quantities import METRIC_INDEX
from engine.ingest.intake import Intake
from engine.ingest.lorawan import (
    MAX_DEPTH,
    MAX_FIELDS,
    UplinkError,
    UplinkReadings,
    chirpstack_event,
    flatten,
    tts_uplink,
)
from engine.ingest.network_servers import NetworkServerSource

DATA = Path(__file__).resolve().parents[1] / "data" / "lorawan"
CS_EUI = "0101010101010101"
CS_UP = f"application/17c82e96-be03-4f38-aef3-f83d48582d97/device/{CS_EUI}/event/up"
CS_STATUS = f"application/17c82e96-be03-4f38-aef3-f83d48582d97/device/{CS_EUI}/event/status"
TTS_UP = "v3/app1@tenant1/devices/dev1/up"


def example(name: str) -> dict[str, Any]:
    return orjson.loads((DATA / name).read_bytes())


def site(sid: str) -> SiteConfig:
    return SiteConfig(id=sid, lat=30.0, lon=120.0, grid="g1", town="t1", district="d1")


def lorawan_config(**kw: Any) -> LorawanConfig:
    return LorawanConfig(
        profiles=[
            LorawanProfile(name="Test device-profile", fields={"level": "water_level_cm", "bat": "battery_pct"}),
            LorawanProfile(name="the-things-uno", fields={"temperature": "temp_c"}),
        ],
        devices=[
            LorawanDevice(dev_eui=CS_EUI, site="S1", id="gauge-1"),
            LorawanDevice(dev_eui="0004A30B001C0530", site="S2"),
        ],
        **kw,
    )


class Engine:
    """An intake with a network source of each kind, dead letters collected as the MQTT client would publish."""

    def __init__(self, **lorawan: Any) -> None:
        self.cfg = EngineConfig(sites=[site("S1"), site("S2")], lorawan=lorawan_config(**lorawan))
        self.deadletters: list[tuple[str, dict[str, Any]]] = []
        self.intake = Intake(
            self.cfg, DeviceIndex(), publish=lambda t, p: self.deadletters.append((t, orjson.loads(p)))
        )
        self.chirpstack = NetworkServerSource(self.cfg, LorawanNetwork(name="cs", kind="chirpstack"), self.intake)
        self.tts = NetworkServerSource(self.cfg, LorawanNetwork(name="tts", kind="tts"), self.intake)

    def readings(self) -> list[tuple[str, str, float, str, float]]:
        b = self.intake.take()
        names = list(METRIC_INDEX)
        return [
            (b.devices.site_of_slot(int(s)), b.devices.device_of_slot(int(s)), float(t), names[int(m)], float(v))
            for s, t, m, v in zip(b.slot, b.ts, b.metric, b.value, strict=True)
        ]

    def reasons(self) -> list[str]:
        return [doc["reason"] for _, doc in self.deadletters]


NOW_2022 = 1658136855.775023
NOW_2020 = 1581520550.091735


def test_chirpstack_doc_uplink_without_a_codec_is_dead_lettered_with_the_fix(monkeypatch):
    monkeypatch.setattr("time.time", lambda: NOW_2022)
    e = Engine()
    e.chirpstack.handle(CS_UP, (DATA / "chirpstack_v4_up.json").read_bytes())
    assert e.reasons() == ["no_decoded_payload"]
    topic, doc = e.deadletters[0]
    assert topic == "gw/deadletter/no_decoded_payload" and doc["topic"] == CS_UP and "codec" in doc["detail"]
    assert orjson.loads(doc["payload"])["deduplicationId"] == "3ac7e3c4-4401-4b8d-9386-a5c902f9202d"
    assert (e.chirpstack.refused, e.intake.rejected) == (1, 1)


def test_chirpstack_doc_uplink_with_its_decoded_object_is_a_reading_at_the_network_time(monkeypatch):
    monkeypatch.setattr("time.time", lambda: NOW_2022 + 2.0)
    doc = example("chirpstack_v4_up.json")
    doc["fCnt"] = 10
    doc["object"] = {"level": 125, "bat": 97, "rain_mm": 0.2, "status": "ok", "ch": {"temp": 20}}
    e = Engine()
    e.chirpstack.handle(CS_UP, orjson.dumps(doc))
    assert e.deadletters == []
    got = sorted(e.readings())
    assert [(r[0], r[1], r[3]) for r in got] == [
        ("S1", "gauge-1", name) for name in sorted(["water_level_m", "battery_pct", "rain_mm", "rssi_dbm", "snr_db"])
    ]
    assert {r[3]: r[4] for r in got} == pytest.approx(
        {"water_level_m": 1.25, "battery_pct": 97.0, "rain_mm": 0.2, "rssi_dbm": -36.0, "snr_db": 10.5}
    )
    assert all(r[2] == pytest.approx(NOW_2022) for r in got)  # ChirpStack's `time`, not the engine's clock
    e.chirpstack.handle(CS_UP, orjson.dumps(doc))  # the same uplink again (fCnt 10)
    assert e.reasons() == ["duplicate_seq"]


def test_chirpstack_doc_status_event_is_the_battery(monkeypatch):
    monkeypatch.setattr("time.time", lambda: NOW_2022 + 60)
    e = Engine()
    e.chirpstack.handle(CS_STATUS, (DATA / "chirpstack_v4_status.json").read_bytes())
    [(site_id, device, ts, name, value)] = e.readings()
    assert (site_id, device, name, value) == ("S1", "gauge-1", "battery_pct", 88.3)
    assert ts == pytest.approx(1658136906.927172)
    external = example("chirpstack_v4_status.json") | {"externalPowerSource": True}
    e.chirpstack.handle(CS_STATUS, orjson.dumps(external))  # mains-powered: nothing to take, nothing refused
    assert e.readings() == [] and e.deadletters == [] and e.chirpstack.taken == 2


def test_tts_doc_uplink_is_a_reading_at_the_network_servers_time(monkeypatch):
    monkeypatch.setattr("time.time", lambda: NOW_2020 + 1.0)
    e = Engine()
    e.tts.handle(TTS_UP, (DATA / "tts_v3_up.json").read_bytes())
    assert e.deadletters == []
    got = {r[3]: r for r in e.readings()}
    assert sorted(got) == ["rssi_dbm", "snr_db", "temp_c"]  # luminosity maps to no metric: left out
    assert got["temp_c"][:2] == ("S2", "dev1") and got["temp_c"][4] == 1.0
    assert got["rssi_dbm"][4] == -35.0 and got["snr_db"][4] == pytest.approx(5.2)
    assert got["temp_c"][2] == pytest.approx(NOW_2020)  # uplink_message.received_at (the network server's)


def test_tts_battery_is_taken_with_the_uplink_that_carried_it(monkeypatch):
    monkeypatch.setattr("time.time", lambda: NOW_2020 + 1.0)
    doc = example("tts_v3_up.json")
    e = Engine(signal=False)
    doc["uplink_message"]["last_battery_percentage"] = {
        "f_cnt": 1,
        "value": 52.5,
        "received_at": "2020-02-12T15:15:50Z",
    }
    e.tts.handle(TTS_UP, orjson.dumps(doc))
    doc["uplink_message"]["f_cnt"] = 2  # a later uplink repeats the same report: not a new battery reading
    e.tts.handle(TTS_UP, orjson.dumps(doc))
    assert sorted(r[3] for r in e.readings()) == ["battery_pct", "temp_c", "temp_c"]


def _bad_uplinks() -> list[tuple[str, str, str, bytes]]:
    """(network, topic, reason, payload) of each kind of uplink that gives no reading."""
    cs = example("chirpstack_v4_up.json") | {"object": {"level": 100}, "fCnt": 1}
    tts = example("tts_v3_up.json")

    def c(**changes: Any) -> bytes:
        return orjson.dumps(cs | changes)

    def t(**changes: Any) -> bytes:
        d = copy.deepcopy(tts)
        d["uplink_message"].update(changes)
        return orjson.dumps(d)

    stranger = copy.deepcopy(cs)
    stranger["deviceInfo"]["devEui"] = "0202020202020202"
    other_topic = CS_UP.replace(CS_EUI, "0202020202020202")
    return [
        ("cs", CS_UP, "malformed_json", b'{"deviceInfo": '),
        ("cs", CS_UP, "not_an_uplink", b"[1, 2]"),
        ("cs", CS_UP.replace("/up", "/join"), "not_an_uplink", c()),
        ("cs", other_topic, "topic_mismatch", c()),
        ("cs", other_topic, "unknown_device", orjson.dumps(stranger)),
        ("cs", CS_UP, "missing_ts", c(time=None)),
        ("cs", CS_UP, "bad_ts", c(time="yesterday")),
        ("cs", CS_UP, "future_ts", c(time="2099-01-01T00:00:00Z")),
        ("cs", CS_UP, "non_numeric", c(object={"level": "high"})),
        ("cs", CS_UP, "out_of_range", c(object={"level": 5e6})),  # 50 km of water
        ("cs", CS_UP, "non_numeric", c(object={"level": True})),
        ("cs", CS_UP, "unmapped_fields", c(object={"distance": 3})),
        ("cs", CS_UP, "bad_seq", c(fCnt="7")),
        ("tts", TTS_UP, "no_decoded_payload", t(decoded_payload=None)),
        ("tts", TTS_UP, "not_an_uplink", orjson.dumps({"end_device_ids": tts["end_device_ids"]})),
        ("tts", TTS_UP.replace("dev1", "dev2"), "topic_mismatch", orjson.dumps(tts)),
        ("tts", TTS_UP, "out_of_range", t(rx_metadata=[{"rssi": 300}])),
    ]


def test_every_bad_uplink_is_dead_lettered_with_its_reason_and_counted(monkeypatch):
    monkeypatch.setattr("time.time", lambda: NOW_2022 + 1.0)
    e = Engine()
    e.cfg.ingest.max_past_s = 0  # the 2020 example and the 2022 one in one stream
    e.intake.decoder.window.max_past_s = 0
    bad = _bad_uplinks()
    for net, topic, _reason, payload in bad:
        (e.chirpstack if net == "cs" else e.tts).handle(topic, payload)
    assert e.reasons() == [reason for _, _, reason, _ in bad]
    assert all(doc["topic"] == topic for (_, doc), (_, topic, _, _) in zip(e.deadletters, bad, strict=True))
    assert e.intake.rejected == len(bad) == e.chirpstack.refused + e.tts.refused
    assert e.readings() == []


def test_the_site_tag_places_a_device_that_is_not_listed(monkeypatch):
    monkeypatch.setattr("time.time", lambda: NOW_2022)
    doc = example("chirpstack_v4_up.json") | {"object": {"crack_mm": 0.5}}
    doc["deviceInfo"]["devEui"] = "0303030303030303"
    doc["deviceInfo"]["tags"] = {"gridwatch_site": "S2", "gridwatch_device": "crack-9"}
    e = Engine()
    e.chirpstack.handle(CS_UP.replace(CS_EUI, "0303030303030303"), orjson.dumps(doc))
    assert {(r[0], r[1], r[3]) for r in e.readings()} == {
        ("S2", "crack-9", "crack_mm"), ("S2", "crack-9", "rssi_dbm"), ("S2", "crack-9", "snr_db")
    }  # fmt: skip


def test_config_errors_name_the_field_and_the_fix(tmp_path):
    base = "sites: [{id: S1, lat: 30, lon: 120, grid: g, town: t, district: d}]\n"
    with pytest.raises(ConfigError) as bad_metric:
        parse_config(base + "lorawan: {profiles: [{name: p, fields: {lvl: water_depth_cm}}]}\n", "gw.yaml", tmp_path)
    assert "gw.yaml:2: lorawan.profiles[0].fields: water_depth_cm: not a contract metric" in str(bad_metric.value)
    with pytest.raises(ConfigError) as bad_site:
        parse_config(base + "lorawan: {devices: [{dev_eui: '0101010101010101', site: S9}]}\n", "gw.yaml", tmp_path)
    assert "lorawan.devices.0" in str(bad_site.value) and "S9" in str(bad_site.value)
    with pytest.raises(ConfigError) as own_broker:
        parse_config(base + "lorawan: {networks: [{name: cs, kind: chirpstack, mqtt: {url: embedded}}]}\n", "gw.yaml",
                     tmp_path)  # fmt: skip
    assert "lorawan.networks[0]" in str(own_broker.value) and "mqtt://host:port" in str(own_broker.value)


# Property tests: the parsers take any JSON at all and either give a reading or raise UplinkError.

scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
keys = st.text("abcdefgh_", min_size=1, max_size=5)
decoded_objects = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4), max_leaves=30
)
numbers = st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False, width=32)


def _fuzzed(base: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """``base`` with some of its keys (top level and one level down) replaced by any JSON value or removed."""
    doc = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(0, 4))):
        target = doc
        inner = [k for k, v in doc.items() if isinstance(v, dict)]
        go_in: bool = data.draw(st.booleans())
        if inner and go_in:
            target = doc[data.draw(st.sampled_from(sorted(inner)))]
        key: str = data.draw(st.sampled_from(sorted(target))) if target else "x"
        drop: bool = data.draw(st.booleans())
        if drop:
            target.pop(key, None)
        else:
            target[key] = data.draw(json_values)
    return doc


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_json_in_an_uplink_gives_a_reading_or_an_uplink_error(data):
    kind = data.draw(st.sampled_from(["chirpstack", "tts"]))
    base = (
        example("chirpstack_v4_up.json") | {"object": {"level": 1}}
        if kind == "chirpstack"
        else example("tts_v3_up.json")
    )
    doc = _fuzzed(base, data) if data.draw(st.booleans()) else data.draw(json_values)
    topic = CS_UP if kind == "chirpstack" else TTS_UP
    try:
        out = UplinkReadings(lorawan_config(), kind).reading(topic, orjson.dumps(doc))
    except UplinkError as exc:
        assert exc.reason and str(exc)
        return
    assert out is None or (isinstance(out[2]["values"], dict) and out[2]["values"])


receptions = st.lists(st.fixed_dictionaries({"rssi": st.integers(-140, -20)}, optional={"snr": numbers}), max_size=4)


@settings(max_examples=100, deadline=None)
@given(
    decoded=st.dictionaries(st.sampled_from(["level", "bat", "rain_mm", "temp_f", "junk"]), numbers, min_size=1),
    rx=receptions,
    fcnt=st.integers(0, 2**32 - 1),
    tts=st.booleans(),
)
def test_a_well_formed_uplink_gives_its_mapped_values_and_best_signal(decoded, rx, fcnt, tts):
    if tts:
        doc = example("tts_v3_up.json")
        doc["end_device_ids"]["dev_eui"] = CS_EUI
        doc["uplink_message"].update(decoded_payload=decoded, rx_metadata=rx, f_cnt=fcnt)
        doc["uplink_message"]["version_ids"]["model_id"] = "Test device-profile"
        topic, kind = TTS_UP, "tts"
    else:
        doc = example("chirpstack_v4_up.json") | {"object": decoded, "rxInfo": rx, "fCnt": fcnt}
        topic, kind = CS_UP, "chirpstack"
    mapped = {{"level": "water_level_cm", "bat": "battery_pct"}.get(k, k): v for k, v in decoded.items() if k != "junk"}
    try:
        out = UplinkReadings(lorawan_config(), kind).reading(topic, orjson.dumps(doc))
    except UplinkError as exc:
        assert exc.reason == "unmapped_fields" and not mapped
        return
    assert out is not None and mapped
    site_id, device, reading = out
    assert (site_id, device, reading["seq"]) == ("S1", "gauge-1", fcnt)
    values = dict(reading["values"])
    if rx:
        assert values.pop("rssi_dbm") == max(r["rssi"] for r in rx)
        assert values.pop("snr_db") == max(r.get("snr", 0.0) for r in rx)
    assert values == mapped


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, decoded_objects, max_size=6))
def test_flatten_finds_every_leaf_by_its_path(decoded):
    flat = flatten(decoded)
    for path, value in flat.items():
        node: Any = decoded
        for part in path.split("."):
            node = node[part]
        assert node == value
    leaves = 0
    stack = [(decoded, 0)]
    while stack:
        node, depth = stack.pop()
        for v in node.values():
            if isinstance(v, dict):
                stack.append((v, depth + 1))
            else:
                leaves += depth < MAX_DEPTH
    assert len(flat) == min(leaves, MAX_FIELDS)


def test_parsers_read_the_docs_examples_field_by_field():
    cs = chirpstack_event(CS_UP, example("chirpstack_v4_up.json") | {"object": {}})
    assert cs is not None
    assert (cs.dev_eui, cs.profile, cs.fcnt, cs.rssi, cs.snr) == (CS_EUI, "Test device-profile", 0, -36.0, 10.5)
    up = tts_uplink(TTS_UP, example("tts_v3_up.json"))
    assert (up.dev_eui, up.device_id, up.profile, up.fcnt) == ("0004a30b001c0530", "dev1", "the-things-uno", 1)
    assert up.decoded == {"temperature": 1.0, "luminosity": 0.64} and up.battery is None


def test_a_flat_battery_reported_by_the_network_is_a_device_fault_where_device_health_watches_it(monkeypatch):
    from detectors.device_health import DeviceHealth, DeviceHealthConfig

    monkeypatch.setattr("time.time", lambda: NOW_2022 + 7200)
    e = Engine()
    doc = example("chirpstack_v4_status.json")
    for k, level in enumerate([80.0, 80.0, 80.0, 9.5]):  # the same level for hours, then flat
        when = datetime.fromtimestamp(NOW_2022 + 600 * k, UTC).isoformat()
        e.chirpstack.handle(CS_STATUS, orjson.dumps(doc | {"time": when, "batteryLevel": level}))
    batch = e.intake.take()
    cfg = DeviceHealthConfig(
        metrics=["crack_mm", "battery_pct"],
        stuck_exempt=["battery_pct"],
        ranges={"battery_pct": (15.0, 100.0)},
        stuck_count=3,
    )
    det = DeviceHealth(cfg)
    found = det.process(batch, det.new_state())
    assert [(f.device, f.evidence["fault"], f.evidence.get("metric")) for f in found] == [
        ("gauge-1", "out_of_range", "battery_pct")
    ]
    assert DeviceHealthConfig().metrics == ["rain_mm", "disp_mm", "tilt_deg", "crack_mm", "soil_moisture_pct",
                                            "pore_pressure_kpa", "water_level_m", "temp_c"]  # fmt: skip
