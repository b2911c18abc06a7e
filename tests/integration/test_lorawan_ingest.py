"""LoRaWAN uplinks over a real Mosquitto: ChirpStack v4 and The Things Stack v3 payloads, as their documentation
shows them, through the local runner's network-server subscriptions; bad ones dead-lettered on the engine's broker;
and a datalogger's post to the engine's own HTTP server into the same intake."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from engine.config.models import (
    ApiConfig,
    DataloggerConfig,
    DataloggerGroup,
    KafkaConfig,
    LogSinkConfig,
    LorawanConfig,
    LorawanDevice,
    LorawanNetwork,
    LorawanProfile,
    MqttConfig,
)
from engine.runners.bridge import Bridge
from tests.conftest import RunnerThread, default_config, publisher, wait_for
from tests.integration.test_faust_runner import read_topic
from tests.integration.test_local_runner import Listener

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data" / "lorawan"
CS_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"
TTS_TOPIC = "v3/app1@tenant1/devices/dev1/up"
LOGGER_TOKEN = "piezometer-loggers-0123"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def lorawan(site_id: str, url: str) -> LorawanConfig:
    """Two network servers on the test's Mosquitto: ChirpStack on the engine's broker setting, The Things Stack
    with its own broker setting."""
    return LorawanConfig(
        networks=[LorawanNetwork(name="city-chirpstack", kind="chirpstack"),  # on the engine's broker
                  LorawanNetwork(name="ttn", kind="tts", mqtt=MqttConfig(url=url, client_id="gw-it"))],
        profiles=[LorawanProfile(name="Test device-profile", fields={"crack": "crack_mm"}),
                  LorawanProfile(name="the-things-uno", fields={"temperature": "temp_c"})],
        devices=[LorawanDevice(dev_eui="0101010101010101", site=site_id, id="crack-lora-1"),
                 LorawanDevice(dev_eui="0004A30B001C0530", site=site_id)],
    )  # fmt: skip


def test_uplinks_of_both_network_servers_become_readings_and_bad_ones_dead_letters(mosquitto, tmp_path):
    cfg = default_config(
        mqtt=MqttConfig(url=mosquitto.url, client_id="engine-it-lorawan"),
        data_dir=str(tmp_path),
        api=ApiConfig(port=0),
        sinks=[LogSinkConfig(path=str(tmp_path / "incidents.jsonl"))],
    )
    site_id = cfg.sites[0].id
    loggers = DataloggerConfig(groups=[DataloggerGroup(name="piezo", token=LOGGER_TOKEN, sites=[site_id])])
    cfg = cfg.model_copy(update={"datalogger": loggers, "lorawan": lorawan(site_id, mosquitto.url)})
    listener = Listener(mosquitto.url, ["gw/deadletter/#"])
    engine = RunnerThread(cfg)
    pub = publisher(mosquitto.url)
    try:
        assert wait_for(lambda: engine.runner.health()["lorawan_connected"] == {"city-chirpstack": True, "ttn": True})
        now = time.time() - 600.0  # the network's time, ten minutes before the engine's clock
        cs = orjson.loads((DATA / "chirpstack_v4_up.json").read_bytes())
        tts = orjson.loads((DATA / "tts_v3_up.json").read_bytes())
        pub.publish(CS_TOPIC, orjson.dumps(cs | {"time": iso(now)}))  # the documented uplink: no codec, no object
        for k in range(3):
            pub.publish(
                CS_TOPIC, orjson.dumps(cs | {"time": iso(now + k), "fCnt": k + 1, "object": {"crack": 1.5 + k}})
            )
        tts["uplink_message"]["received_at"] = iso(now)
        pub.publish(TTS_TOPIC, orjson.dumps(tts))
        pub.publish(TTS_TOPIC, b"{not json")
        assert pub.flush()
        # 3 ChirpStack uplinks x (crack, rssi, snr) + 1 TTS uplink x (temp, rssi, snr)
        assert wait_for(lambda: engine.runner.pipeline.readings >= 12, 30), engine.runner.pipeline.readings
        assert wait_for(lambda: len(listener.received) >= 2, 15)
        reasons = sorted((t, d["topic"]) for t, d in listener.received)
        assert reasons == [("gw/deadletter/malformed_json", TTS_TOPIC), ("gw/deadletter/no_decoded_payload", CS_TOPIC)]
        sources = {s.network.name: (s.taken, s.refused) for s in engine.runner.network_sources}
        assert sources == {"city-chirpstack": (3, 1), "ttn": (1, 1)}
        history = engine.runner.history
        slot = engine.runner.pipeline.devices.find(site_id, "crack-lora-1")
        assert slot is not None
        ts, values = history.series(slot, "crack_mm")
        assert list(values) == [1.5, 2.5, 3.5] and ts[0] == pytest.approx(now, abs=1.0)
        # A datalogger's post goes into the same intake (the engine's own HTTP server)
        csv = f"ts,site,device,metric,value\n{now:.3f},{site_id},pz-9,pore_pressure_kpa,41.5\n".encode()
        post = urllib.request.Request(
            f"{engine.runner.api_url}/api/ingest",
            data=csv,
            method="POST",
            headers={"Authorization": f"Bearer {LOGGER_TOKEN}", "Content-Type": "text/csv"},
        )
        with urllib.request.urlopen(post, timeout=10) as res:
            assert orjson.loads(res.read()) == {"taken": 1, "refused": 0, "refusals": []}
        assert wait_for(lambda: engine.runner.pipeline.readings >= 13, 15)
    finally:
        pub.stop()
        engine.stop()
        listener.stop()
    assert engine.runner.pipeline.readings == 13


def test_a_bridge_takes_uplinks_as_readings_records_for_the_workers(tansu, mosquitto, tmp_path):
    cfg = default_config(
        mqtt=MqttConfig(url=mosquitto.url, client_id="unused-lorawan-bridge"),
        data_dir=str(tmp_path),
        kafka=KafkaConfig(url=tansu.url, partitions=2, bridge_client_id="bridge-lorawan-it", bridge_group="g-lora"),
    )
    site_id = cfg.sites[0].id
    cfg = cfg.model_copy(update={"lorawan": lorawan(site_id, mosquitto.url)})
    bridge = Bridge(cfg)
    loop, stop = asyncio.new_event_loop(), asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(bridge.run(stop)), daemon=True)
    thread.start()
    listener = Listener(mosquitto.url, ["gw/deadletter/#"])
    pub = publisher(mosquitto.url)
    try:
        assert bridge.ready.wait(60)
        assert bridge.health()["lorawan_connected"] == {"city-chirpstack": True, "ttn": True}
        now = time.time() - 60.0
        cs = orjson.loads((DATA / "chirpstack_v4_up.json").read_bytes())
        pub.publish(CS_TOPIC, orjson.dumps(cs | {"time": iso(now), "fCnt": 5, "object": {"crack": 2.25}}))
        pub.publish(CS_TOPIC, orjson.dumps(cs | {"time": iso(now)}))  # no decoded object
        assert pub.flush()

        def forwarded() -> list[tuple[str, str, float, str, float]]:
            got = asyncio.run(read_topic(tansu.url, "gridwatch.readings"))
            return sorted((d["site"], dev, ts, m, v) for d in got for dev, ts, m, v in d["readings"])

        assert wait_for(lambda: len(forwarded()) >= 3, 60, interval_s=0.5)
        rows = forwarded()
        assert [(r[0], r[1], r[3], r[4]) for r in rows] == [
            (site_id, "crack-lora-1", "crack_mm", 2.25),
            (site_id, "crack-lora-1", "rssi_dbm", -36.0),
            (site_id, "crack-lora-1", "snr_db", 10.5),
        ]
        assert all(abs(r[2] - now) < 1e-3 for r in rows)  # the network's time
        assert wait_for(lambda: [t for t, _ in listener.received] == ["gw/deadletter/no_decoded_payload"], 15)
    finally:
        pub.stop()
        listener.stop()
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
