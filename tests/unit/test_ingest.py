"""Topic parsing, timestamps, duplicate windows and payload decoding, with property tests."""

from __future__ import annotations

import functools
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.models import IngestConfig
from engine.core.batch import BatchBuilder
from engine.core.devices import DeviceIndex
from engine.ingest.decode import SensorDecoder
from engine.ingest.intake import deadletter_message
from engine.ingest.sequence import SeqWindow
from engine.ingest.timestamps import TimestampError, parse_ts
from engine.ingest.topics import Topic, TopicError, parse_topic

NOW = 1_732_345_678.0
segment = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,11}", fullmatch=True)  # ids the contract allows


@given(st.sampled_from(["sensors", "cameras", "thermal", "status"]), segment, segment)
def test_topic_round_trip(kind, site, device):
    assert parse_topic(f"gw/{kind}/{site}/{device}", "gw") == Topic(kind, site, device)


@pytest.mark.parametrize(
    "topic", ["gw/sensors/S1", "gw/sensors//d", "other/sensors/S1/d", "gw/radar/S1/d", "gw/sensors/a/b/c"]
)
def test_bad_topics_are_refused(topic):
    with pytest.raises(TopicError):
        parse_topic(topic, "gw")


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_epoch_and_iso_agree(ts):
    from datetime import UTC, datetime

    iso = datetime.fromtimestamp(ts, UTC).isoformat()
    assert parse_ts(iso) == pytest.approx(parse_ts(ts), abs=1e-6)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing_ts"),
        ("2024-11-23T07:00:00", "bad_ts"),
        ("yesterday", "bad_ts"),
        (True, "bad_ts"),
        (-5, "bad_ts"),
    ],
)
def test_bad_timestamps(value, reason):
    with pytest.raises(TimestampError) as exc:
        parse_ts(value)
    assert exc.value.reason == reason


@given(st.lists(st.integers(0, 40), max_size=200))
def test_seq_window_rejects_exactly_the_repeats(seqs):
    # Within a window larger than the seq range there are no counter restarts: a seq is a duplicate
    # if and only if it was seen before.
    w = SeqWindow(64)
    seen = set()
    for s in seqs:
        assert w.is_duplicate(7, s) == (s in seen)
        seen.add(s)


def test_seq_window_accepts_a_device_restart():
    w = SeqWindow(16)
    for s in range(1000, 1010):
        assert not w.is_duplicate(1, s)
    assert not w.is_duplicate(1, 0)  # counter reset after a reboot
    assert not w.is_duplicate(1, 1)
    assert w.is_duplicate(1, 1)


def make_decoder(**cfg):
    builder = BatchBuilder(DeviceIndex())
    return SensorDecoder(IngestConfig(**cfg), builder, {"S1"}), builder


DEV1 = Topic("sensors", "S1", "dev-1")


def reasons(payload, topic=DEV1, **cfg):
    dec, builder = make_decoder(**cfg)
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return [r.reason for r in dec.decode(topic, raw, NOW)], len(builder)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed_json"),
        ([1, 2], "malformed_reading"),
        ({"values": {"rain_mm": 1}}, "missing_ts"),
        ({"ts": "soon", "values": {"rain_mm": 1}}, "bad_ts"),
        ({"ts": NOW + 3600, "values": {"rain_mm": 1}}, "future_ts"),
        ({"ts": NOW, "values": {}}, "no_values"),
        ({"ts": NOW, "values": {"rainfall": 1}}, "unknown_metric"),
        ({"ts": NOW, "values": {"rain_mm": "1.0"}}, "non_numeric"),
        ({"ts": NOW, "values": {"rain_mm": True}}, "non_numeric"),
        ({"ts": NOW, "values": {"rain_mm": -3}}, "out_of_range"),
        ({"ts": NOW, "values": {"rain_mm": 1e308 * 10}}, "malformed_json"),
        ({"ts": NOW, "seq": "7", "values": {"rain_mm": 1}}, "bad_seq"),
    ],
)
def test_each_rejection_reason(payload, reason):
    if reason == "malformed_json" and not isinstance(payload, bytes):
        payload = b'{"ts": 1732345678, "values": {"rain_mm": 1e999}}'
    got, added = reasons(payload)
    assert got == [reason]
    assert added == 0


def test_a_reading_with_one_bad_value_is_rejected_whole():
    got, added = reasons({"ts": NOW, "values": {"rain_mm": 1.0, "crack_mm": "x"}})
    assert got == ["non_numeric"] and added == 0


def test_oversized_payload_is_refused_before_parsing():
    got, _ = reasons(b"{" + b" " * 1000 + b"}", max_payload_bytes=100)
    assert got == ["too_large"]


def test_duplicate_seq_is_refused():
    dec, builder = make_decoder()
    msg = orjson.dumps({"ts": NOW, "seq": 5, "values": {"rain_mm": 0.2}})
    t = Topic("sensors", "S1", "r1")
    assert dec.decode(t, msg, NOW) == []
    assert [r.reason for r in dec.decode(t, msg, NOW)] == ["duplicate_seq"]
    assert len(builder) == 1


def test_gateway_batch_keeps_good_readings_and_rejects_bad_ones():
    payload = {
        "readings": [
            {"device": "a", "ts": NOW, "values": {"rain_mm": 0.4, "crack_mm": 1.5}},
            {"device": "b", "ts": NOW, "values": {"nope": 1}},
            {"ts": NOW, "values": {"rain_mm": 1}},
            {"device": "c", "ts": "2024-11-23T07:07:58+08:00", "values": {"water_level_m": 2.5}},
        ]
    }
    got, added = reasons(payload, Topic("sensors", "S1", "_batch"))
    assert got == ["unknown_metric", "malformed_reading"]
    assert added == 3


def test_aliases_map_onto_contract_metrics():
    got, added = reasons({"ts": NOW, "values": {"rain": 0.2}}, metric_aliases={"rain": "rain_mm"})
    assert got == [] and added == 1


def test_unknown_site_rejected_only_when_configured():
    assert reasons({"ts": NOW, "values": {"rain_mm": 1}}, Topic("sensors", "S9", "d"))[0] == []
    got, _ = reasons({"ts": NOW, "values": {"rain_mm": 1}}, Topic("sensors", "S9", "d"), reject_unknown_sites=True)
    assert got == ["unknown_site"]


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


reading_like = st.fixed_dictionaries(
    {
        "ts": json_values | st.floats(1e9, 2e9),
        "values": st.dictionaries(st.sampled_from(["rain_mm", "crack_mm", "x"]), json_values),
    },
    optional={"seq": json_values, "device": st.text(max_size=4)},
)
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    reading_like.map(lambda v: json.dumps(v).encode()),
    st.lists(reading_like, max_size=4).map(lambda r: json.dumps({"readings": r}).encode()),
)


@settings(max_examples=300)
@given(payloads)
def test_decoder_never_raises_and_accounts_for_every_message(payload):
    for topic in (Topic("sensors", "S1", "d"), Topic("sensors", "S1", "_batch")):
        dec, builder = make_decoder()
        rejected = dec.decode(topic, payload, NOW)
        assert all(r.reason and r.detail for r in rejected)
        if not topic.is_gateway_batch:
            assert (len(rejected) == 1) != (len(builder) > 0)
        record = orjson.loads(deadletter_message(rejected[0], "gw/x", payload, NOW)) if rejected else None
        assert record is None or record["topic"] == "gw/x"


def test_a_flooding_device_is_refused_before_decoding_and_others_are_unaffected():
    from engine.config.models import EngineConfig
    from engine.ingest.intake import Intake

    cfg = EngineConfig(ingest=IngestConfig(device_max_msgs_per_s=1.0, device_burst=5))
    published: list[tuple[str, bytes]] = []
    intake = Intake(cfg, DeviceIndex(), publish=lambda t, p: published.append((t, p)))
    acked: list[str] = []
    now = 1_700_000_000.0
    for k in range(50):  # 50 messages at once from one device: a flood
        body = orjson.dumps({"ts": now + k, "seq": k, "values": {"rain_mm": 0.1}})
        intake.handle("gw/sensors/S1/rain-1", body, now=now, ack=functools.partial(acked.append, f"flood-{k}"))
    intake.handle("gw/sensors/S2/rain-1", orjson.dumps({"ts": now, "values": {"rain_mm": 0.1}}), now=now)
    batch = intake.take()
    intake.ack_taken()
    devices = [batch.devices.site_of_slot(int(s)) for s in batch.slot]
    assert devices.count("S1") == 5 and devices.count("S2") == 1  # the burst, then nothing; S2 untouched
    assert intake.rejected == 45
    reasons = [orjson.loads(p)["reason"] for t, p in published]
    assert reasons == ["rate_limited"]  # one dead letter a minute per device, not one per message
    assert len(acked) == 50  # refused messages are acknowledged: the broker must not redeliver a flood
