"""``gridwatch demo``: the embedded broker, the engine and a simulated scenario, with a live board."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engine.config.models import EngineConfig, StoreConfig
from engine.dispatch.sinks import LEVEL_STYLE
from engine.ingest.mqtt_client import MqttClient, broker_address
from engine.runners.local import LocalRunner, RunSummary
from simulators.publish import messages, publish_paced
from simulators.scenario import Scenario


class IncidentBoard:
    """The latest event of every incident, rendered as a table."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def update(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            for e in events:
                self.latest[e["incident_id"]] = e

    def table(self, base_ts: float) -> Table:
        t = Table(title="gridwatch incidents", expand=True)
        for col in ("level", "hazard", "site", "state", "opened (h)", "updated (h)", "findings", "first receiver"):
            t.add_column(col)
        with self.lock:
            rows = sorted(self.latest.values(), key=lambda e: (e["state"] == "resolved", e["opened_at"]))
        for e in rows[-20:]:
            t.add_row(
                f"[{LEVEL_STYLE[e['level']]}]{e['level'].upper()}[/]",
                e["hazard"],
                e["site"],
                e["state"],
                f"{(e['opened_at'] - base_ts) / 3600:.1f}",
                f"{(e['updated_at'] - base_ts) / 3600:.1f}",
                str(len(e["findings"])),
                (e["route"] or ["-"])[0],
            )
        return t


async def run_demo(
    cfg: EngineConfig, scenario: Scenario, duration_s: float, out_dir: Path, console: Console
) -> tuple[RunSummary, IncidentBoard, LocalRunner]:
    board = IncidentBoard()
    log_path = out_dir / "incidents.jsonl"
    log_path.unlink(missing_ok=True)
    if cfg.store.url is None:  # a fresh store per demo run, beside its log
        db = out_dir / "gridwatch.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        cfg = cfg.model_copy(update={"store": StoreConfig(url=f"sqlite:///{db}")})
    runner = LocalRunner(cfg, log_path=log_path, on_events=board.update, measure_latency=False)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    ready = asyncio.create_task(runner.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # start-up failed: raise its error
    assert runner.broker_port is not None
    if runner.api_url and cfg.api.tokens:
        console.print(
            f"Operator page while the demo runs: {runner.api_url}/ui/#token={cfg.api.tokens[0].token}", soft_wrap=True
        )
    span_s = scenario.duration_h * 3600
    base_ts = time.time() - span_s
    rows = scenario.readings(base_ts)
    total = sum(1 for _ in messages(rows, cfg.mqtt.topic_prefix))
    protocol = "3.1.1" if cfg.mqtt.url == "embedded" else cfg.mqtt.protocol
    pub = MqttClient(cfg.mqtt, client_id="gridwatch-demo-devices", protocol=protocol, clean=True, track=True)
    await asyncio.to_thread(
        pub.start, "127.0.0.1" if cfg.mqtt.url == "embedded" else broker_address(cfg.mqtt.url)[0], runner.broker_port
    )
    halt = threading.Event()
    sent = [0]

    def feed() -> None:
        publish_paced(
            rows,
            lambda t, p: pub.publish(t, p, qos=1),
            cfg.mqtt.topic_prefix,
            speed=span_s / duration_s,
            stop=halt.is_set,
            progress=lambda n: sent.__setitem__(0, n),
        )

    feeder = threading.Thread(target=feed, name="demo-devices", daemon=True)
    feeder.start()
    progress = Progress(
        TextColumn("simulated devices"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} messages"),
        TimeRemainingColumn(),
    )
    ptask = progress.add_task("feed", total=total)
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while feeder.is_alive():
                progress.update(ptask, completed=sent[0])
                live.update(Group(board.table(base_ts), progress))
                await asyncio.sleep(0.25)
            progress.update(ptask, completed=sent[0])
            # Let the broker deliver everything still in flight before stopping the engine.
            await asyncio.to_thread(pub.flush, 30.0)
            deadline = time.monotonic() + 30.0
            while runner.pipeline.readings < len(rows) and time.monotonic() < deadline and not halt.is_set():
                live.update(Group(board.table(base_ts), progress))
                await asyncio.sleep(0.2)
            await asyncio.sleep(max(0.2, cfg.ingest.batch_ms / 1000 * 4))
            live.update(Group(board.table(base_ts), progress))
    finally:
        halt.set()
        await asyncio.to_thread(pub.stop)
        stop.set()
        summary = await task
    return summary, board, runner
