"""LoRaWAN uplinks through one engine: ChirpStack v4 and The Things Stack v3 JSON on a real Mosquitto.

1,000 devices (half on ChirpStack, half on The Things Stack, their uplinks shaped as the two servers'
documentation shows them: tests/data/lorawan/) send uplinks that a load generator in its own process publishes
(``mqtt_blast.py``: pre-encoded QoS 1 packets) on the network servers' topics; the local runner takes them
through its two network-server subscriptions. One uplink in ten is bad, in eight ways (not JSON, no decoded
payload, an unknown device, a value out of range, a time in the future, a text where a number belongs, no
field that maps to a metric, a topic naming another device), and each must come out as a dead letter on
``gw/deadletter/<reason>`` (a subscriber counts them). Two runs, each against a fresh engine:
1. the target: 1,000 uplinks/s offered for a fixed time;
2. flat out (the generator publishes as fast as the broker takes them): the capacity.
Figures: uplinks/s taken from the first to the last, readings processed against those expected, dead
letters received against bad uplinks sent (by reason), the engine's CPU per uplink, and how long the engine
needed after the last publish to have taken everything (drain). The baseline in the same run is the load
generator's own publish rate.

Prints a table, writes benchmarks/results/lorawan.json.
Run: .venv/bin/python benchmarks/bench_lorawan.py [--quick]   (needs `mosquitto`; `make test` installs it)
"""

from __future__ import annotations

import asyncio
import copy
import gc
import itertools
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.brokers import mosquitto_broker  # noqa: E402 (after sys.path)
from benchmarks.mqtt_blast import blast  # noqa: E402
from benchmarks.output import write_results  # noqa: E402
from engine.config.models import (  # noqa: E402
    ApiConfig,
    IngestConfig,
    LorawanConfig,
    LorawanDevice,
    LorawanNetwork,
    LorawanProfile,
    MqttConfig,
    SiteConfig,
)
from engine.ingest.mqtt_client import MqttClient, broker_address  # noqa: E402
from engine.runners.local import LocalRunner  # noqa: E402
from tests.conftest import Mosquitto, default_config  # noqa: E402

console = Console(width=200)  # the table is wide; a log keeps it whole
DATA = ROOT / "tests" / "data" / "lorawan"
DEVICES = 1000
SITES = 100
BAD_EVERY = 10  # one uplink in ten is bad
BAD_KINDS = ("malformed_json", "no_decoded_payload", "unknown_device", "out_of_range", "future_ts", "non_numeric",
             "unmapped_fields", "topic_mismatch")  # fmt: skip
CS_APP = "17c82e96-be03-4f38-aef3-f83d48582d97"


def dev_eui(k: int) -> str:
    return f"70b3d57ed0{k:06x}"


def lorawan_config() -> LorawanConfig:
    return LorawanConfig(
        networks=[LorawanNetwork(name="chirpstack", kind="chirpstack"), LorawanNetwork(name="tts", kind="tts")],
        profiles=[
            LorawanProfile(name="crack-meter", fields={"crack": "crack_mm", "temp": "temp_c", "bat": "battery_pct"}),
            LorawanProfile(name="level-gauge", fields={"level": "water_level_cm"}),
        ],
        devices=[
            LorawanDevice(dev_eui=dev_eui(k), site=f"L{k % SITES:03d}", id=None if k % 2 else f"crack-{k}")
            for k in range(DEVICES)
        ],
    )


def uplinks(part: int) -> Iterator[tuple[str, bytes]]:
    """(topic, payload) of the uplinks, devices in turn, one in ``BAD_EVERY`` bad (cycling through the kinds);
    the network's time is the time of publishing. Even devices are ChirpStack crack meters, odd ones The Things
    Stack level gauges."""
    cs = orjson.loads((DATA / "chirpstack_v4_up.json").read_bytes())
    tts = orjson.loads((DATA / "tts_v3_up.json").read_bytes())
    tts["uplink_message"]["version_ids"]["model_id"] = "level-gauge"
    fcnt = [0] * DEVICES
    for i in itertools.count():
        k = (i + part) % DEVICES
        fcnt[k] += 1
        now = datetime.fromtimestamp(time.time(), UTC).isoformat()
        bad = BAD_KINDS[(i // BAD_EVERY) % len(BAD_KINDS)] if i % BAD_EVERY == BAD_EVERY - 1 else None
        eui = dev_eui(k)
        if k % 2 == 0:
            doc = copy.deepcopy(cs)
            doc["deviceInfo"].update(devEui=eui, deviceProfileName="crack-meter", deviceName=f"crack {k}")
            doc.update(time=now, fCnt=fcnt[k], object={"crack": 1.0 + (i % 50) * 0.01, "temp": 18.5, "bat": 90})
            topic = f"application/{CS_APP}/device/{eui}/event/up"
            decoded = doc["object"]
        else:
            doc = copy.deepcopy(tts)
            doc["end_device_ids"].update(device_id=f"level-{k}", dev_eui=eui.upper())
            doc["uplink_message"].update(received_at=now, f_cnt=fcnt[k], decoded_payload={"level": 120.0 + i % 7})
            topic = f"v3/gridwatch-city@city/devices/level-{k}/up"
            decoded = doc["uplink_message"]["decoded_payload"]
        if bad == "malformed_json":
            yield topic, orjson.dumps(doc)[:-9]
            continue
        if bad == "no_decoded_payload":
            (doc.pop("object") if k % 2 == 0 else doc["uplink_message"].pop("decoded_payload"))
        elif bad == "unknown_device":
            other = f"ffff{eui[4:]}"
            if k % 2 == 0:
                doc["deviceInfo"]["devEui"] = other
                topic = f"application/{CS_APP}/device/{other}/event/up"
            else:
                doc["end_device_ids"]["dev_eui"] = other
        elif bad == "out_of_range":
            decoded[next(iter(decoded))] = 1e9
        elif bad == "future_ts":
            future = datetime.fromtimestamp(time.time() + 86400, UTC).isoformat()
            doc["time" if k % 2 == 0 else "received_at"] = future
            if k % 2:
                doc["uplink_message"]["received_at"] = future
        elif bad == "non_numeric":
            decoded[next(iter(decoded))] = "E02"
        elif bad == "unmapped_fields":
            decoded.clear()
            decoded["counts"] = 17
        elif bad == "topic_mismatch":
            topic = topic.replace(eui, dev_eui((k + 2) % DEVICES)) if k % 2 == 0 else topic.replace(f"-{k}/", "-x/")
        yield topic, orjson.dumps(doc)


def generate(port: int, total: int, rate: float, done: Any, published_rate: Any) -> None:
    """The load generator (its own process)."""
    published_rate.value = blast("127.0.0.1", port, f"lorawan-loadgen-{os.getpid()}", uplinks(0), total, rate)
    done.value = 1


def expected(total: int) -> tuple[int, int, Counter[str]]:
    """Good uplinks, readings they hold (crack meters: crack, temp, battery, RSSI, SNR; gauges: level, RSSI,
    SNR) and the bad uplinks by reason, for the first ``total`` uplinks."""
    good = readings = 0
    bad: Counter[str] = Counter()
    for i in range(total):
        if i % BAD_EVERY == BAD_EVERY - 1:
            bad[BAD_KINDS[(i // BAD_EVERY) % len(BAD_KINDS)]] += 1
        else:
            good += 1
            readings += 5 if i % DEVICES % 2 == 0 else 3
    return good, readings, bad


def run_phase(broker: Mosquitto, total: int, rate: float, name: str) -> dict[str, Any]:
    sites = [SiteConfig(id=f"L{s:03d}", lat=30.0 + s * 0.001, lon=120.0, grid=f"g{s % 10}", town="t1", district="d1")
             for s in range(SITES)]  # fmt: skip
    cfg = default_config(
        mqtt=MqttConfig(url=broker.url, client_id=f"bench-{name}"),
        api=ApiConfig(enabled=False),
        sinks=[],
        sites=sites,
        ingest=IngestConfig(batch_max=10_000, batch_ms=50),
        data_dir=tempfile.mkdtemp(prefix="gridwatch-bench-lorawan-"),
        lorawan=lorawan_config(),
    )
    deadletters: Counter[str] = Counter()
    listener = MqttClient(
        MqttConfig(url=broker.url),
        on_message=lambda topic, _p, _props: deadletters.update([topic.rsplit("/", 1)[1]]),
        subscriptions=["gw/deadletter/#"],
        client_id=f"bench-deadletters-{name}",
        clean=True,
    )
    listener.start(*broker_address(broker.url))
    runner = LocalRunner(cfg, measure_latency=False)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(runner.run(stop)), daemon=True)
    thread.start()
    while len(runner.network_sources) < 2 or not all(s.connected for s in runner.network_sources):
        time.sleep(0.05)
    time.sleep(0.5)
    good, readings_expected, bad = expected(total)
    done, published = mp.Value("i", 0), mp.Value("d", 0.0)
    gen = mp.Process(target=generate, args=(broker.port, total, rate, done, published))
    t0 = time.perf_counter()
    cpu0 = time.process_time()  # this process: the engine's threads (the loop below mostly sleeps)
    gen.start()
    first_at = last_at = None
    published_at = None
    seen = 0
    while True:
        taken = sum(s.taken + s.refused for s in runner.network_sources)
        if taken and first_at is None:
            first_at = time.perf_counter()
        if taken > seen:
            seen, last_at = taken, time.perf_counter()
        if done.value and published_at is None:
            published_at = time.perf_counter()
        if not gen.is_alive() and not done.value:
            raise RuntimeError("the load generator failed; its traceback is above")
        if (
            taken >= total
            and runner.pipeline.readings >= readings_expected
            and sum(deadletters.values()) >= sum(bad.values())
        ):
            break
        if published_at is not None and time.perf_counter() - published_at > 60:
            break  # something was lost: the figures say what
        time.sleep(0.01)
    engine_cpu_s = time.process_time() - cpu0
    elapsed = (last_at or time.perf_counter()) - (first_at or t0)
    drain_s = max(0.0, (last_at or 0.0) - (published_at or 0.0))
    gen.join(30)
    time.sleep(0.3)
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    listener.stop()
    handled = sum(s.taken + s.refused for s in runner.network_sources)
    rate_taken = handled / max(elapsed, 1e-9)
    all_bad = dict(deadletters) == dict(bad)
    return {
        "run": name,
        "offered_uplinks_per_s": rate or None,
        "uplinks_published": total,
        "good_uplinks": good,
        "bad_uplinks": sum(bad.values()),
        "generator_uplinks_per_s": round(published.value),
        "uplinks_taken_per_s": round(rate_taken),
        "readings_expected": readings_expected,
        "readings_processed": runner.pipeline.readings,
        "deadletters_received": sum(deadletters.values()),
        "deadletters_by_reason": dict(sorted(deadletters.items())),
        "bad_by_reason": dict(sorted(bad.items())),
        "every_bad_uplink_deadlettered": all_bad,
        "nothing_lost": runner.pipeline.readings == readings_expected and handled == total,
        "engine_cpu_share": round(engine_cpu_s / max(elapsed, 1e-9), 2),
        "engine_cpu_us_per_uplink": round(1e6 * engine_cpu_s / max(handled, 1)),
        "drain_s": round(drain_s, 2),
        "target_met": bool(rate_taken >= 1000 * 0.98 and all_bad and runner.pipeline.readings == readings_expected),
    }


def main() -> None:
    quick = "--quick" in sys.argv
    seconds = 5 if quick else 60
    runs = [("1000/s", 1000 * seconds, 1000.0), ("flat out", 5_000 if quick else 60_000, 0.0)]
    with mosquitto_broker(console) as broker:
        phases = []
        for name, total, rate in runs:
            gc.collect()
            with console.status(f"{name}: {total:,} uplinks"):
                phases.append(run_phase(broker, total, rate, name.replace("/", "-").replace(" ", "-")))
    write_results("lorawan", {"offered_seconds": seconds, "devices": DEVICES, "bad_every": BAD_EVERY,
                              "phases": phases}, quick)  # fmt: skip
    table = Table(title="lorawan: ChirpStack + The Things Stack uplinks over Mosquitto into one engine")
    cols = {"run": "run", "offered_uplinks_per_s": "offered/s", "generator_uplinks_per_s": "published/s",
            "uplinks_taken_per_s": "taken/s", "readings_expected": "readings expected",
            "readings_processed": "processed", "bad_uplinks": "bad uplinks", "deadletters_received": "dead letters",
            "every_bad_uplink_deadlettered": "all bad dead-lettered", "engine_cpu_us_per_uplink": "CPU us/uplink",
            "drain_s": "drain s", "target_met": "1,000/s met"}  # fmt: skip
    for label in cols.values():
        table.add_column(label, justify="right")
    for p in phases:
        table.add_row(*(f"{p[c]:,}" if isinstance(p[c], int) and not isinstance(p[c], bool) else str(p[c])
                        for c in cols))  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
