"""Fuzzing every decoder of outside input and the config loader: no crash, no hang, a reason for every
rejection, nothing accepted that breaks the contract (hypothesis)."""

from __future__ import annotations

import math

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.loader import ConfigError, parse_config
from engine.config.models import IngestConfig
from engine.core.batch import BatchBuilder
from engine.core.devices import DeviceIndex
from engine.core.quantities import METRIC_NAMES
from engine.ingest.decode import SensorDecoder
from engine.ingest.frames import FrameError, decode
from engine.ingest.topics import Topic

REASONS = {
    "too_large", "malformed_json", "malformed_reading", "malformed_batch", "missing_ts", "bad_ts", "future_ts",
    "no_values", "unknown_metric", "non_numeric", "non_finite", "out_of_range", "bad_seq", "duplicate_seq",
    "unknown_site", "stale_ts", "device_limit",
}  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
readings = st.fixed_dictionaries(
    {},
    optional={
        "ts": st.one_of(st.floats(0, 2e9), st.text(max_size=30), st.integers(-5, 2_000_000_000), json_values),
        "seq": st.one_of(st.integers(-10, 10**12), json_values),
        "values": st.one_of(
            st.dictionaries(st.sampled_from([*METRIC_NAMES, "snow_mm", ""]), st.one_of(st.floats(), json_values)),
            json_values,
        ),
        "device": st.one_of(st.text(max_size=12), json_values),
    },
)
payloads = st.one_of(
    st.binary(max_size=300),
    readings.map(lambda r: orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
                 if all(not isinstance(v, float) or math.isfinite(v) for v in r.values()) else b"{}"),
    st.lists(readings, max_size=5).map(lambda rs: orjson.dumps({"readings": rs}) if _finite(rs) else b"[]"),
    st.just(b"{" * 5000),  # deeply nested
    st.just(b"\xff\xfe\x00invalid utf-8"),
)  # fmt: skip


def _finite(obj: object) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads, st.sampled_from(["rain-1", "_batch"]))
def test_sensor_decoder_never_crashes_and_every_rejection_has_a_reason(payload, device):
    builder = BatchBuilder(DeviceIndex())
    decoder = SensorDecoder(IngestConfig(max_payload_bytes=4096), builder, {"S1"})
    rejected = decoder.decode(Topic("sensors", "S1", device), payload, now=1.9e9)
    assert all(r.reason in REASONS and r.detail for r in rejected)
    batch = builder.take()
    assert all(math.isfinite(v) for v in batch.value.tolist())  # what is accepted keeps the contract
    assert all(0 <= t <= 1.9e9 + 300 for t in batch.ts.tolist())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_frame_decoder_refuses_anything_that_is_not_an_image(payload, thermal):
    try:
        image = decode(payload, thermal=thermal)
    except FrameError as exc:
        assert exc.reason in {"not_an_image", "too_many_pixels"}
    else:
        assert image.size > 0


yaml_docs = st.one_of(
    st.text(max_size=200),
    st.dictionaries(
        st.sampled_from(["city", "mqtt", "ingest", "detectors", "incidents", "sites", "api", "store", "cameras",
                         "routing", "silences", "bogus"]),
        json_values,
        max_size=4,
    ).map(lambda d: orjson.dumps(d).decode()),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(yaml_docs)
def test_config_loader_accepts_or_explains(text):
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.issues and all(i.message for i in exc.issues)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        JSONISH.map(orjson.dumps),
        st.builds(
            lambda site, rows: orjson.dumps({"site": site, "readings": rows}),
            JSONISH,
            st.lists(st.lists(JSONISH, min_size=0, max_size=5), max_size=4),
        ),
    )
)
def test_kafka_record_decoders_accept_or_refuse_with_a_reason(value):
    """A worker's decoders take any bytes: a record is decoded whole or refused with ``RecordError``."""
    from engine.runners.records import RecordError, decode_findings_record, decode_readings

    builder = BatchBuilder(DeviceIndex())
    try:
        site, n = decode_readings(value, builder)
        assert isinstance(site, str) and n == len(builder)
    except RecordError as exc:
        assert exc.reason == "bad_record" and len(builder) == 0  # nothing of a refused record is kept
    try:
        wm, found = decode_findings_record(value)
        assert isinstance(wm, float) and isinstance(found, list)
    except RecordError as exc:
        assert exc.reason == "bad_record"
