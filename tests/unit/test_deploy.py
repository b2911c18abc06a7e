"""deploy/docker-compose.yml: the services the README promises, and a config the bridge and workers accept."""

from __future__ import annotations

from pathlib import Path

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
