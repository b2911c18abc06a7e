"""``gridwatch demo``: the embedded broker, the engine and a simulated scenario, with a live board."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import orjson
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


async def _hold(runner: LocalRunner, cfg: EngineConfig, console: Console) -> None:
    """Keep the engine (and the operator page) up until Ctrl-C or SIGTERM."""
    import signal

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    page = f"{runner.api_url}/ui/#token={cfg.api.tokens[0].token}" if runner.api_url and cfg.api.tokens else None
    where = f"the engine and its operator page {page}" if page else "the engine"
    console.print(f"The scenario is over; {where} stay up: Ctrl-C to stop.", soft_wrap=True)
    await done.wait()


LEVEL_RANK = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}


class IncidentBoard:
    """The latest event of every incident, rendered as a table, RED first.

    Events come from the engine's steps (``update``) and from its event log (``follow``), which also holds what
    no step caused: grid reports and operator actions (a report's incident was missing from the board).

    >>> b = IncidentBoard()
    >>> b.update([{"incident_id": "a", "seq": 1, "updated_at": 1.0, "level": "blue", "hazard": "rainstorm",
    ...            "site": "S1", "action": "fired", "findings": []}])
    >>> [(e["incident_id"], e["level"]) for e in b.news()]
    [('a', 'blue')]
    >>> b.news()
    []
    """

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self._offset = 0
        self._news: list[dict[str, Any]] = []
        self.logged: dict[tuple[str, str], int] = {}  # events of the log by (hazard, level): reports' too

    def update(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            for e in events:
                cur = self.latest.get(e["incident_id"])
                if cur is None or (e.get("updated_at", 0), e.get("seq", 0)) >= (
                    cur.get("updated_at", 0),
                    cur.get("seq", 0),
                ):
                    self.latest[e["incident_id"]] = e
                    if e.get("action") in ("fired", "raised", "reopened") and (
                        cur is None or cur.get("level") != e["level"]
                    ):
                        self._news.append(e)

    def follow(self, log_path: Path) -> None:
        """Take in the events appended to the engine's event log since the last call."""
        try:
            with log_path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self._offset += end
        events = []
        for line in data[:end].splitlines():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        for e in events:
            key = (e["hazard"], e["level"])
            self.logged[key] = self.logged.get(key, 0) + 1
        self.update(events)

    def news(self) -> list[dict[str, Any]]:
        """Incidents opened or raised since the last call (each level change once)."""
        with self.lock:
            out, self._news = self._news, []
        return out

    def table(self, base_ts: float) -> Table:
        t = Table(title="gridwatch incidents", expand=True)
        for col in ("level", "hazard", "site", "state", "opened (h)", "updated (h)", "findings", "first receiver"):
            t.add_column(col)
        with self.lock:
            rows = sorted(
                self.latest.values(),
                key=lambda e: (e["state"] == "resolved", -LEVEL_RANK.get(e["level"], 0), -e["updated_at"]),
            )
        for e in rows[:20]:
            reported = any(f.get("detector") == "grid_report" for f in e.get("findings", []))
            t.add_row(
                f"[{LEVEL_STYLE[e['level']]}]{e['level'].upper()}[/]",
                e["hazard"] + (" (reported)" if reported else ""),
                e["site"],
                e["state"],
                f"{(e['opened_at'] - base_ts) / 3600:.1f}",
                f"{(e['updated_at'] - base_ts) / 3600:.1f}",
                str(len(e["findings"])),
                (e["route"] or ["-"])[0],
            )
        return t


def announce(console: Console, board: IncidentBoard) -> None:
    """One line in the terminal for each incident opened or raised since the last call."""
    for e in board.news():
        found = {f.get("detector", "") for f in e.get("findings", [])}
        what = "reported" if e["action"] == "fired" and found == {"grid_report"} else e["action"]
        if what != "reported" and found - {"grid_report"}:
            what += f": {', '.join(sorted(d for d in found if d != 'grid_report')[:4])}"
        style = LEVEL_STYLE.get(e["level"], "")
        console.print(f"  [{style}]{e['level'].upper()}[/] {e['hazard']} at {e['site']} ({what})", soft_wrap=True)


# The demo's cameras (config/gridwatch.yaml, site S05): a visible camera that sees smoke rise and then
# flames, and a thermal camera over the same hillside (sun-heated rocks, a walker, then the fire). They
# play after the sensors' storm, live: frames carry their arrival time (MQTT 3.1.1 has no ``ts`` property),
# which is only the scenario's data time once the replayed storm has caught up with the present.
DEMO_CAMERAS = (("cameras", "S05", "cam-1", "fire"), ("thermal", "S05", "ir-1", "thermal-fire"))
CAMERA_FRAMES = 24  # frames per camera, at most one every 2 s


def camera_seconds(duration_s: float) -> float:
    """How long the cameras play after the storm: a quarter of the demo, at least 6 s."""
    return max(6.0, duration_s / 4.0)


def camera_period_s(duration_s: float) -> float:
    """Wall seconds between the demo cameras' frames: enough frames to confirm a fire in a short demo."""
    return min(2.0, max(0.2, camera_seconds(duration_s) / CAMERA_FRAMES))


def play_cameras(pub: MqttClient, cfg: EngineConfig, duration_s: float, halt: threading.Event) -> int:
    """Publish the demo cameras' frames in real time for ``camera_seconds``: the fire starts a third of the
    way in. Thermal frames are float32 °C ``.npy`` (taken as °C whatever the camera's count calibration).
    Returns the frames sent."""
    from simulators.camera import synthetic

    period = camera_period_s(duration_s)
    frames = max(2, int(camera_seconds(duration_s) / period))
    start_s = camera_seconds(duration_s) / 3.0
    feeds = [
        (f"{cfg.mqtt.topic_prefix}/{kind}/{site}/{cam}", synthetic(scene, 1.0 / period, frames, 7, start_s))
        for kind, site, cam, scene in DEMO_CAMERAS
    ]
    sent = 0
    t0 = time.monotonic()
    for k in range(frames):
        wait = t0 + k * period - time.monotonic()
        if wait > 0 and halt.wait(wait):
            break
        if halt.is_set():
            break
        for topic, feed in feeds:
            _t, payload = next(feed)
            pub.publish(topic, payload, qos=0)
            sent += 1
    return sent


# People report too: as the fire starts a resident near S05 reports smoke by position (the nearest site),
# and a grid worker on her round reports fresh cracks at S07, where no sensor has seen anything.
DEMO_REPORTS = (
    ("_nearest", "resident-17", {"category": "smoke", "text": "smoke rising over the hillside", "near": "S05"}),
    ("S07", "grid-worker-4", {"category": "crack", "text": "fresh cracks in the retaining wall, 2-3 mm wide"}),
)


def play_reports(pub: MqttClient, cfg: EngineConfig, which: tuple[int, ...] | None = None) -> int:
    """Publish the demo's grid reports (MQTT ``reports`` topic), or those of them at the indexes ``which``;
    returns how many."""
    where = {s.id: s for s in cfg.sites}
    chosen = [r for k, r in enumerate(DEMO_REPORTS) if which is None or k in which]
    for site, reporter, body in chosen:
        doc: dict[str, object] = {k: v for k, v in body.items() if k != "near"}
        near = where.get(str(body.get("near", "")))
        if near is not None:
            doc.update(lat=near.lat + 0.0004, lon=near.lon - 0.0003)  # some 50 m from the site
        pub.publish(f"{cfg.mqtt.topic_prefix}/reports/{site}/{reporter}", orjson.dumps(doc), qos=0)
    return len(chosen)


async def run_demo(
    cfg: EngineConfig, scenario: Scenario, duration_s: float, out_dir: Path, console: Console, hold: bool = False
) -> tuple[RunSummary, IncidentBoard, LocalRunner]:
    """Play the scenario (then the cameras) through a running engine; with ``hold`` the engine and its
    operator page stay up afterwards until Ctrl-C (SIGINT) or SIGTERM."""
    board = IncidentBoard()
    log_path = out_dir / "incidents.jsonl"
    log_path.unlink(missing_ok=True)
    if cfg.store.url is None:  # a fresh store per demo run, beside its log
        db = out_dir / "gridwatch.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        cfg = cfg.model_copy(update={"store": StoreConfig(url=f"sqlite:///{db}")})
    # The demo cameras send a frame every camera_period_s: let each be analysed.
    period = camera_period_s(duration_s)
    cams = [c.model_copy(update={"min_interval_s": min(c.min_interval_s, period)}) for c in cfg.cameras.devices]
    cfg = cfg.model_copy(update={"cameras": cfg.cameras.model_copy(update={"devices": cams})})
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
    # The embedded broker (amqtt, pure Python) acknowledges a burst of QoS 1 publications slowly and holds
    # delivery back with them (seen: 10,368 readings trickling in over 26 s after a 5 s feed): on loopback
    # the demo's devices publish at QoS 0. The engine's count of readings below still checks every one.
    embedded = cfg.mqtt.url == "embedded"

    def feed() -> None:
        publish_paced(
            rows,
            lambda t, p: pub.publish(t, p, qos=0 if embedded else 1),
            cfg.mqtt.topic_prefix,
            speed=span_s / duration_s,
            stop=halt.is_set,
            progress=lambda n: sent.__setitem__(0, n),
        )

    feeder = threading.Thread(target=feed, name="demo-devices", daemon=True)
    feeder.start()
    cameras = threading.Thread(target=play_cameras, args=(pub, cfg, duration_s, halt), name="demo-cameras", daemon=True)
    progress = Progress(
        TextColumn("simulated devices"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} messages"),
        TimeRemainingColumn(),
    )
    ptask = progress.add_task("feed", total=total)
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            say = live.console.print

            def show() -> None:
                board.follow(log_path)
                announce(live.console, board)
                live.update(Group(board.table(base_ts), progress))

            say(f"[bold]Phase 1 — the storm:[/] {scenario.name}, {scenario.duration_h:g} h of rain and slope sensors "
                f"({len(rows)} readings) replayed in {duration_s:g} s", soft_wrap=True)  # fmt: skip
            while feeder.is_alive():
                progress.update(ptask, completed=sent[0])
                show()
                await asyncio.sleep(0.25)
            progress.update(ptask, completed=sent[0])
            # Let the broker deliver everything still in flight; the engine's own count of readings is the
            # check that matters.
            await asyncio.to_thread(pub.flush, 2.0 if embedded else 30.0)
            deadline = time.monotonic() + 30.0
            while runner.pipeline.readings < len(rows) and time.monotonic() < deadline and not halt.is_set():
                show()
                await asyncio.sleep(0.2)
            await asyncio.sleep(max(0.2, cfg.ingest.batch_ms / 1000 * 4))
            live_cams = ", ".join(
                f"{cam} ({'thermal' if kind == 'thermal' else 'visible'})" for kind, _s, cam, _ in DEMO_CAMERAS
            )
            say(f"[bold]Phase 2 — now, live:[/] the storm has caught up with the present; cameras {live_cams} at "
                f"{DEMO_CAMERAS[0][1]} go live", soft_wrap=True)  # fmt: skip
            cameras.start()  # the storm has caught up with the present: the cameras go live
            say(f"  grid worker {DEMO_REPORTS[1][1]} reports at {DEMO_REPORTS[1][0]}: {DEMO_REPORTS[1][2]['text']}",
                soft_wrap=True)  # fmt: skip
            play_reports(pub, cfg, which=(1,))
            fire_at = time.monotonic() + camera_seconds(duration_s) / 3.0
            smoke_reported = False
            while cameras.is_alive() and not halt.is_set():
                if not smoke_reported and time.monotonic() >= fire_at:
                    say(f"  a fire starts at {DEMO_CAMERAS[0][1]}; resident {DEMO_REPORTS[0][1]} reports: "
                        f"{DEMO_REPORTS[0][2]['text']}", soft_wrap=True)  # fmt: skip
                    play_reports(pub, cfg, which=(0,))
                    smoke_reported = True
                show()
                await asyncio.sleep(0.25)
            if not smoke_reported and not halt.is_set():
                play_reports(pub, cfg, which=(0,))
            await asyncio.sleep(1.0)  # the last frames through the camera stage, and the reports
            show()
            say("[bold]Phase 3 — the scenario is over.[/]", soft_wrap=True)
        if hold and not halt.is_set():
            await _hold(runner, cfg, console)
    finally:
        halt.set()
        await asyncio.to_thread(pub.stop)
        stop.set()
        summary = await task
    return summary, board, runner
