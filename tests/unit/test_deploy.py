"""deploy/docker-compose.yml: the services the README promises, and a config the bridge and workers accept."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from engine.config.loader import parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_mosquitto_kafka_postgres_a_bridge_and_two_workers():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"mosquitto", "kafka", "postgres", "bridge", "worker"}
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["bridge"]["command"].startswith("bridge -c ")
    assert services["worker"]["command"].startswith("worker -c ")
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_the_shipped_config_under_the_compose_environment_points_at_its_services(monkeypatch):
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    env = compose["services"]["worker"]["environment"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = ROOT / "config" / "gridwatch.yaml"
    cfg = parse_config(path.read_text(), str(path), path.parent)
    assert cfg.kafka.bootstrap_servers() == ["kafka:9092"]
    assert cfg.mqtt.url == "mqtt://mosquitto:1883"
    assert cfg.store_url().startswith("postgresql+psycopg://gridwatch:gridwatch@postgres/")
    assert cfg.kafka.table_store == "rocksdb://"
    assert cfg.data_dir == "/var/lib/gridwatch"


def test_the_shipped_mosquitto_config_keeps_what_it_queues():
    """Stock Mosquitto settings dropped 4,000 of 5,000 readings queued for a restarting engine."""
    conf = dict(
        line.split(None, 1) for line in (ROOT / "deploy" / "mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )  # fmt: skip
    assert conf["persistence"] == "true"
    assert int(conf["max_queued_messages"]) >= 1_000_000 and conf["max_queued_bytes"] == "0"
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    assert "./mosquitto.conf:/mosquitto/config/mosquitto.conf" in compose


def test_the_shipped_mosquitto_config_drops_a_message_larger_than_any_frame_or_report(tmp_path):
    """A 200 MB "report" cost the engine ~500 MB before it was refused; the shipped broker never passes one on."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.conftest import Mosquitto, _mosquitto_binary, wait_for

    binary = _mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (make test installs Debian's package when it can)")
    shipped = [
        ln for ln in (ROOT / "deploy" / "mosquitto.conf").read_text().splitlines() if ln.startswith("max_packet")
    ]
    assert shipped == ["max_packet_size 16777216"]
    broker = Mosquitto(binary, tmp_path)
    broker.conf.write_text(broker.conf.read_text() + shipped[0] + "\n")
    broker.start()
    got: list[int] = []
    try:
        sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        sub.on_message = lambda c, u, m: got.append(len(m.payload))
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe("gw/reports/#", qos=1)
        sub.loop_start()
        for size in (17_000_000, 6_700_000):  # over the bound; the largest photo a report may carry
            pub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            pub.publish("gw/reports/S1/r1", b"x" * size, qos=0)
            time.sleep(0.5)
            pub.loop_stop()
            pub.disconnect()
        assert wait_for(lambda: got, timeout_s=20)
        time.sleep(0.5)
        assert got == [6_700_000]
        sub.loop_stop()
        sub.disconnect()
    finally:
        broker.stop()
