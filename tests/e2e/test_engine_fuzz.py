"""The running engine fuzzed as a stranger would: its HTTP API from its own OpenAPI schema with every role's
token (and none), and its MQTT entries (readings, gateway batches, frames, reports) with Hypothesis. After
each, the engine must still be ready and a storm that follows must still raise its RED and notify.

Bounded (examples per operation and per entry) so that `make test` stays well inside CI's time.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.models import ApiConfig, LogSinkConfig, MqttConfig, StoreConfig
from engine.ingest.embedded_broker import free_port
from tests.conftest import RunnerThread, default_config, publisher, wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"operator": "fuzz-operator-0123456789", "viewer": "fuzz-viewer-0123456789",
          "reporter": "fuzz-reporter-0123456789"}  # fmt: skip
FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


class Fuzzed:
    def __init__(self, engine: RunnerThread, url: str, log: Path, pub: Any) -> None:
        self.engine, self.url, self.log, self.pub = engine, url, log, pub

    def ready(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as res:
                return res.status, orjson.loads(res.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())


@pytest.fixture(scope="module")
def fuzzed(mosquitto, tmp_path_factory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port("127.0.0.1")
    cfg = default_config(
        mqtt=MqttConfig(url=mosquitto.url, client_id=f"engine-fuzz-{tmp.name}"),
        data_dir=str(tmp),
        store=StoreConfig(url=f"sqlite:///{tmp / 'gridwatch.db'}"),
        api=ApiConfig(port=port, tokens=[{"name": f"fuzz-{r}", "token": t, "role": r} for r, t in TOKENS.items()]),
        sinks=[LogSinkConfig(path=str(tmp / "incidents.jsonl"))],
        inhibit=[],
    )
    engine = RunnerThread(cfg)
    pub = publisher(mosquitto.url)
    f = Fuzzed(engine, f"http://127.0.0.1:{port}", tmp / "incidents.jsonl", pub)
    assert wait_for(lambda: f.ready()[0] == 200, 30), f.ready()
    yield f
    pub.stop()
    engine.stop()


def test_the_http_api_answers_every_generated_request_without_a_server_error(fuzzed):
    """Every operation of the engine's own OpenAPI schema, with generated parameters and bodies, each request
    sent with every role's token and with none: never a server error, never a write without a token."""
    api = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [r.ok() for r in api.get_all_operations()]  # type: ignore[union-attr]  # an Err: the test fails
    assert len(operations) > 20
    for op in operations:
        if op.path == "/api/stream":  # an endless event stream: its answer is headers, checked elsewhere
            continue

        @FUZZ
        @given(case=op.as_strategy())
        def fuzz(case: Any) -> None:
            for role in [*TOKENS, None]:
                headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
                res = case.call(headers=headers, timeout=10)
                assert res.status_code < 500, (role, case.method, case.path, res.status_code, res.text[:300])
                if role is None and case.path.startswith("/api/"):
                    assert res.status_code in (400, 401, 403, 404, 405, 413, 422, 429), (case.path, res.status_code)

        fuzz()
    status, health = fuzzed.ready()
    assert status == 200 and health["ok"], health


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
times = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.just(-1e300), st.integers(-(2**63), 2**63),
    st.sampled_from(["1900-01-01T00:00:00+00:00", "0001-01-01T00:00:00Z", "2026-13-40", "now"]), json_values,
)  # fmt: skip
reading = st.fixed_dictionaries(
    {},
    optional={
        "ts": times,
        "seq": json_values,
        "values": st.dictionaries(st.sampled_from(["rain_mm", "disp_mm", "tilt_deg", "x\x00"]), json_values),
    },
)
report = st.fixed_dictionaries(
    {},
    optional={
        "category": st.sampled_from(["crack", "smoke", "flood", "x" * 40, "cr\x00ack"]),
        "text": st.text(max_size=40),
        "ts": times,
        "lat": json_values,
        "lon": json_values,
        "level": st.sampled_from(["red", "blue", "purple"]),
        "photo": st.sampled_from(["", "iVBORw0KGgo=", "not base64!"]),
    },
)
npy_header = st.builds(
    lambda descr, shape, body: (
        b"\x93NUMPY\x01\x00"
        + (len(h := repr({"descr": descr, "fortran_order": False, "shape": shape}).encode() + b"    \n")).to_bytes(
            2, "little"
        )
        + h
        + body
    ),
    st.sampled_from(["<u2", "<f4", "|O", "<f8", [("f", "<f8", (10000, 10000))]]),
    st.sampled_from([(1, 1), (0, 5), (100000, 100000), (4,), (2, 2, 9)]),
    st.binary(max_size=32),
)
# What a broker lets a client publish to (it disconnects one that sends control characters or wildcards)
TOPIC_CHARS = st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn"), exclude_characters="+#")
messages = st.one_of(
    st.tuples(st.just("sensors/S01/fuzz-dev"), reading.map(orjson.dumps)),
    st.tuples(st.just("sensors/S01/_batch"), st.lists(reading, max_size=4).map(lambda r: orjson.dumps({"readings": r}))),  # noqa: E501
    st.tuples(st.sampled_from(["reports/S01/fuzz-res", "reports/_nearest/fuzz-res"]), report.map(orjson.dumps)),
    st.tuples(st.sampled_from(["cameras/S01/fuzz-cam", "thermal/S01/fuzz-cam"]), st.binary(max_size=64) | npy_header),
    st.tuples(st.text(TOPIC_CHARS, max_size=30).map(lambda t: f"sensors/{t}"),
              st.binary(max_size=64)),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(messages, min_size=1, max_size=4))
def test_mqtt_entries_refuse_or_take_whatever_comes_and_the_engine_stays_ready(fuzzed, batch):
    for topic, payload in batch:
        fuzzed.pub.publish(f"gw/{topic}", payload, qos=0)


def test_after_the_fuzz_the_engine_is_ready_and_a_storm_still_raises_its_red(fuzzed):
    from simulators.scenario import load_scenario

    assert fuzzed.pub.flush()
    time.sleep(1.0)
    status, health = fuzzed.ready()
    assert status == 200 and health["ok"], health
    # The storm at the wall clock's time (the fuzz moved no clock ahead of it; older data would be stale).
    scenario = load_scenario("storm-over-slope")
    rows = scenario.readings(base_ts=0.0)
    span = max(r[0] for r in rows)
    for ts, site, device, metric, value in scenario.readings(base_ts=time.time() - span - 60):
        body = orjson.dumps({"ts": ts, "values": {metric: value}})
        fuzzed.pub.publish(f"gw/sensors/{site}/{device}", body, qos=1)
    assert fuzzed.pub.flush()

    def red() -> bool:
        if not fuzzed.log.exists():
            return False
        events = [orjson.loads(line) for line in fuzzed.log.read_bytes().splitlines()]
        return any(e["level"] == "red" and e["hazard"] == "landslide" for e in events)

    assert wait_for(red, 60), "no RED landslide notified after the fuzz"
    status, health = fuzzed.ready()
    assert status == 200 and health["ok"], health
