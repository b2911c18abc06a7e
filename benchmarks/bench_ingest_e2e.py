"""End to end over a real broker: Mosquitto on loopback, a load generator in its own process, the local runner.

Three runs, each against a fresh engine:
1. single-reading messages offered at 15,000/s for a fixed time (a bulk publisher of pre-encoded packets,
   ``mqtt_blast.py``: paho itself publishes fewer than 5,000/s per process here): messages/s processed;
2. gateway batches of 100 readings: readings/s processed;
3. an offered load of 65,000 readings/s (the whole fleet at 1 Hz, as gateway batches) for a fixed time,
   in which one reading every 10 ms is out of its gauge's range at a new site, so it opens an incident:
   latency from that reading's publish (its timestamp) to its incident event at the sink, p50/p99, and
   whether every reading published was processed.
The baseline in the same run is the load generator's own publish rate (what the broker accepts).

With ``--against COMMIT[,COMMIT...]`` each other commit's own version of this benchmark runs right after
(a git worktree of it, this interpreter, the same box), and the ratios of the processed rates are recorded.

Prints a table, writes benchmarks/results/ingest_e2e.json and ingest_e2e.png.
Run: .venv/bin/python benchmarks/bench_ingest_e2e.py [--quick] [--against COMMIT[,COMMIT...]]
(needs `mosquitto`; `make test` installs it)
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.brokers import mosquitto_broker  # noqa: E402 (after sys.path)
from benchmarks.mqtt_blast import blast  # noqa: E402
from benchmarks.output import against_commits, results_dir, run_at_commit, write_results  # noqa: E402
from engine.config.models import ApiConfig, IngestConfig, MqttConfig  # noqa: E402
from engine.runners.local import LocalRunner  # noqa: E402
from tests.conftest import Mosquitto, default_config  # noqa: E402

RESULTS = results_dir()  # outside the checkout for --quick: only full runs write results files
console = Console()
SITES = 13_000
GENERATORS = 1  # load generator processes for single-reading messages (each can offer 100,000/s and more)
IN_FLIGHT = 20_000  # messages a generator has published and not yet seen acknowledged, at most


def generate(
    url_port: int, mode: str, total: int, rate: float, done: Any, published_rate: Any, triggers: Any, part: int = 0
) -> None:
    """A load generator (its own process): publishes ``total`` readings, paced at ``rate``/s if given.

    ``part`` numbers the generators of one run: each publishes for its own devices."""
    if mode == "single":  # pre-encoded packets in bulk: paho would be the bottleneck (benchmarks/mqtt_blast.py)

        def single_messages() -> Iterator[tuple[str, bytes]]:
            for i in itertools.count():
                dev = (i * GENERATORS + part) % (SITES * 5)
                topic = f"gw/sensors/S{dev // 5 + 1:05d}/crack-{dev % 5 + 1}"
                yield topic, orjson.dumps({"ts": time.time(), "values": {"crack_mm": 1.0 + (i % 7) * 0.001}})

        published_rate.value = blast("127.0.0.1", url_port, f"loadgen-{os.getpid()}", single_messages(), total, rate)
        done.value = 1
        return
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"loadgen-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    per_msg = 100  # gateway batches (single-reading messages go through blast, above)
    n_msgs = total // per_msg
    t0 = time.perf_counter()
    trigger_every = 0.01
    next_trigger = 0.0
    site_k = 0
    infos = []
    for i in range(n_msgs):
        now = time.time()
        site = i % SITES
        # A site gateway's batch: its 5 devices, 20 one-second readings each, oldest first.
        readings = [
            {"device": f"crack-{d + 1}", "ts": now - (19 - j), "values": {"crack_mm": 1.0 + 0.001 * ((i + j) % 9)}}
            for d in range(5)
            for j in range(20)
        ]
        elapsed = time.perf_counter() - t0
        if rate and elapsed >= next_trigger:  # one out-of-range reading at a new site: an incident event
            next_trigger += trigger_every
            site_k += 1
            topic_site = f"S{SITES - site_k:05d}"
            client.publish(
                f"gw/sensors/{topic_site}/rain-1",
                # 1,000 mm in a report: above the gauge's range (400 mm an hour), a device fault at once. (150 mm,
                # the trigger before the exact rain methods, is a heavy but possible hour now: no fault, no latency.)
                orjson.dumps({"ts": time.time(), "values": {"rain_mm": 1000.0}}),
                qos=1,
            )
        topic = f"gw/sensors/S{site + 1:05d}/_batch"
        payload = orjson.dumps({"readings": readings})
        infos.append(client.publish(topic, payload, qos=1))
        if i >= IN_FLIGHT:  # paho holds at most 65,535 unacknowledged messages (message ids): stay below
            infos[i - IN_FLIGHT].wait_for_publish(60)
        if rate:
            ahead = (i + 1) * per_msg / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
    for info in infos[-2000:]:
        info.wait_for_publish(60)
    published_rate.value = total / (time.perf_counter() - t0)
    triggers.value = site_k
    done.value = 1
    client.loop_stop()
    client.disconnect()


class LatencySink:
    name = "latency"

    def __init__(self) -> None:
        self.latencies: list[float] = []

    def send(self, event: dict[str, Any], delivery_id: int | None = None) -> None:
        if event["hazard"] == "device_fault" and event.get("action") == "fired":
            self.latencies.append(time.time() - event["updated_at"])

    def close(self) -> None:
        pass


def run_phase(broker: Mosquitto, mode: str, total: int, rate: float, client_id: str) -> dict[str, Any]:
    cfg = default_config(
        mqtt=MqttConfig(url=broker.url, client_id=client_id),
        api=ApiConfig(enabled=False),
        sinks=[],
        ingest=IngestConfig(batch_max=10_000, batch_ms=50, max_future_s=300),
        data_dir=tempfile.mkdtemp(prefix="gridwatch-bench-"),
    )
    sink = LatencySink()  # only the offered-load run has triggers; flat out, faults of overlapping windows fire
    runner = LocalRunner(cfg, extra_sinks=[sink] if rate else [], measure_latency=False)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(runner.run(stop)), daemon=True)
    thread.start()
    while runner.client is None or not runner.client.connected.is_set():
        time.sleep(0.05)
    time.sleep(0.5)
    # Single-reading messages: GENERATORS bulk publishers (mqtt_blast.py); gateway batches: one paho client,
    # paced exactly for the offered load.
    n_gen = GENERATORS if mode == "single" else 1
    dones = [mp.Value("i", 0) for _ in range(n_gen)]
    published = [mp.Value("d", 0.0) for _ in range(n_gen)]
    triggers = mp.Value("i", 0)
    gens = [
        mp.Process(target=generate, args=(broker.port, mode, total // n_gen, rate, dones[k], published[k], triggers, k))
        for k in range(n_gen)
    ]
    t0 = time.perf_counter()
    cpu0 = time.process_time()  # this process: the engine's threads (the loop below mostly sleeps)
    for gen in gens:
        gen.start()
    first_at = None
    while True:
        got = runner.pipeline.readings
        if got and first_at is None:
            first_at = time.perf_counter()
        finished = all(d.value for d in dones)
        if any(not g.is_alive() and not d.value for g, d in zip(gens, dones, strict=True)):
            raise RuntimeError(f"a load generator failed ({mode}); its traceback is above")
        if finished and got >= total + triggers.value:
            break
        if finished and time.perf_counter() - t0 > 5 + (total / (rate or 1e9)) * 3 + 60:
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - (first_at or t0)
    engine_cpu_s = time.process_time() - cpu0
    per_message = 1 if mode == "single" else 100
    for gen in gens:
        gen.join(30)
    time.sleep(0.3)
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    processed = runner.pipeline.readings
    sent = total + triggers.value
    lat = np.array(sink.latencies) * 1000.0
    return {
        "mode": mode,
        "offered_rate": rate or None,
        "readings_published": sent,
        "readings_processed": processed,
        "nothing_dropped": processed == sent,
        "rejected": runner.summary.rejected,
        "generators": n_gen,
        "generator_readings_per_s": round(sum(p.value for p in published)),
        "processed_readings_per_s": round(min(processed, total) / max(elapsed, 1e-9)),
        "messages_per_s": round(min(processed, total) / max(elapsed, 1e-9) / per_message),
        "engine_cpu_share": round(engine_cpu_s / max(elapsed, 1e-9), 2),
        "engine_cpu_us_per_message": round(
            1e6 * engine_cpu_s / max(min(processed, total) / (1 if mode == "single" else 100), 1)
        ),
        "incident_events_timed": int(lat.size),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
    }


def main() -> None:
    quick = "--quick" in sys.argv
    seconds = 10 if quick else 60
    with mosquitto_broker(console) as broker:
        phases = []
        for mode, total, rate in (
            ("single", 15_000 * seconds, 15_000.0),
            ("batch100", 500_000 if quick else 2_000_000, 0.0),
            ("batch100", 65_000 * seconds, 65_000.0),
        ):
            gc.collect()  # the engine of the run before is gone: each run starts as a fresh process would
            with console.status(f"{mode} {'at ' + format(rate, ',.0f') + '/s' if rate else 'flat out'}"):
                phases.append(run_phase(broker, mode, total, rate, f"bench-{len(phases)}"))
    # Each commit named runs its own version of this benchmark right after, on the same box: ratios compare.
    against = []
    for commit in against_commits():
        theirs = run_at_commit(commit, "bench_ingest_e2e.py", "ingest_e2e", quick, console.rule)
        keep = ("mode", "offered_rate", "processed_readings_per_s", "messages_per_s", "nothing_dropped",
                "engine_cpu_share", "engine_cpu_us_per_message", "latency_ms_p50", "latency_ms_p99")  # fmt: skip
        their_phases = [{k: ph.get(k) for k in keep} for ph in theirs["phases"]]
        against.append(
            {
                "commit": commit,
                "sha": theirs["sha"],
                "phases": their_phases,
                "ratio_processed": [
                    round(ours["processed_readings_per_s"] / max(th["processed_readings_per_s"] or 1, 1), 3)
                    for ours, th in zip(phases, their_phases, strict=False)
                ],
            }
        )
    write_results("ingest_e2e", {"offered_load_seconds": seconds, "phases": phases, "against": against}, quick)
    table = Table(title="ingest_e2e: Mosquitto on loopback, load generator in its own process")
    cols = ["mode", "offered_rate", "readings_published", "readings_processed", "generator_readings_per_s",
            "processed_readings_per_s", "messages_per_s", "latency_ms_p50", "latency_ms_p99"]  # fmt: skip
    for c in cols:
        table.add_column(c, justify="right")
    for p in phases:
        table.add_row(*(f"{p[c]:,}" if isinstance(p[c], int) else str(p[c]) for c in cols))
    console.print(table)
    for other in against:
        console.print(
            f"at {other['commit']}, just after: processed "
            + ", ".join(f"{ph['processed_readings_per_s']:,}" for ph in other["phases"])
            + f" readings/s (ours / theirs: {', '.join(str(r) for r in other['ratio_processed'])}); "
            f"at 65,000/s offered p50 / p99 {other['phases'][-1]['latency_ms_p50']} / "
            f"{other['phases'][-1]['latency_ms_p99']} ms"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{p['mode']}\n{'offered ' + format(p['offered_rate'], ',.0f') if p['offered_rate'] else 'flat out'}"
              for p in phases]  # fmt: skip
    x = np.arange(len(phases))
    ax.bar(x - 0.2, [p["generator_readings_per_s"] for p in phases], 0.4, label="published (baseline)", color="grey")
    ax.bar(x + 0.2, [p["processed_readings_per_s"] for p in phases], 0.4, label="processed", color="tab:green")
    ax.set_xticks(x, labels)
    ax.set_ylabel("readings/s")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "ingest_e2e.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
