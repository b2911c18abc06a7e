"""Shared fixtures: a real Mosquitto per test session, scenario data, configs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config.loader import parse_config
from engine.config.models import EngineConfig
from engine.ingest.embedded_broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def _mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


class Mosquitto:
    """A mosquitto process on a free loopback port; ``restart`` keeps the port (and persistence)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nmax_queued_messages 100000\nmax_inflight_messages 1000\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    binary = _mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (make test installs Debian's package when it can)")
    broker = Mosquitto(binary, tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def storm_rows() -> list[tuple[float, str, str, str, float]]:
    from simulators.scenario import load_scenario

    return load_scenario("storm-over-slope").readings(base_ts=1_700_000_000.0)


def default_config(**overrides: object) -> EngineConfig:
    """The shipped config/gridwatch.yaml (with the embedded default), optionally overridden per section."""
    cfg = parse_config((ROOT / "config" / "gridwatch.yaml").read_text(), "config/gridwatch.yaml", ROOT / "config")
    return cfg.model_copy(update=overrides)


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.05) -> bool:
    """Poll until ``predicate()`` is true; False on time-out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def direct_events(rows, cfg: EngineConfig | None = None) -> list[dict]:
    """The incident events of feeding rows straight into the core: the reference for runs over MQTT."""
    from engine.ingest.replay_file import batches
    from engine.runners.assembly import build_pipeline

    pipeline = build_pipeline(cfg or default_config())
    events: list[dict] = []
    for b in batches(rows, pipeline.devices, 10_000):
        events += pipeline.step(b)
    return events
