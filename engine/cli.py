"""The ``gridwatch`` command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import Progress
from rich.table import Table

from engine.config.loader import ConfigError, load_config
from engine.config.models import EngineConfig
from engine.core.allocator import tune_allocator
from engine.core.findings import Finding

app = typer.Typer(help="gridwatch: hazard monitoring alert engine.", no_args_is_help=True, add_completion=False)


@app.callback()
def _startup() -> None:
    """gridwatch: hazard monitoring alert engine."""
    tune_allocator()


console = Console(stderr=True)
logger = logging.getLogger("gridwatch")

DEFAULT_CONFIG = Path("config/gridwatch.yaml")
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Config file (YAML).")]


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(message)s", handlers=[RichHandler(console=console, show_path=False)]
    )


def _load(path: Path) -> EngineConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[bold red]config error[/] ({len(exc.issues)} problem{'s' if len(exc.issues) > 1 else ''}):")
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        raise typer.Exit(2) from None


def _need(extra: str, module: str, feature: str) -> None:
    """Stop with the install command when an optional part is missing."""
    from engine.extras import MissingExtraError, require

    try:
        require(extra, module, feature)
    except MissingExtraError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _need_store(cfg: EngineConfig) -> None:
    if cfg.store_url().startswith("postgresql"):
        _need("postgres", "psycopg", "a PostgreSQL store")


def _need_for(cfg: EngineConfig) -> None:
    """The optional parts a config needs to run locally: the embedded broker, a PostgreSQL store."""
    if cfg.mqtt.url == "embedded":
        _need("demo", "amqtt", "the embedded MQTT broker (mqtt.url: embedded)")
    _need_store(cfg)


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


@app.command()
def run(config: ConfigOpt = DEFAULT_CONFIG, log_level: str = "info") -> None:
    """Run the engine with the local runner until SIGINT/SIGTERM."""
    _logging(log_level)
    cfg = _load(config)
    _need_for(cfg)
    from engine.runners.local import LocalRunner

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        runner = LocalRunner(cfg, config_path=config)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(runner.reload()))
        summary = await runner.run(stop)
        logger.info(
            "stopped: %d readings, %d rejected, %d incident events", summary.readings, summary.rejected, summary.events
        )

    from engine.ingest.embedded_broker import PortInUseError

    try:
        asyncio.run(main())
    except PortInUseError as exc:
        typer.echo(f"cannot start: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def bridge(config: ConfigOpt = DEFAULT_CONFIG, log_level: str = "info") -> None:
    """Scale-out: forward MQTT (a shared subscription) to Kafka, keyed by site, until SIGINT/SIGTERM."""
    _logging(log_level)
    cfg = _load(config)
    _need("kafka", "aiokafka", "`gridwatch bridge` (the scale-out runner)")
    from engine.runners.bridge import run_bridge

    done = run_bridge(cfg)
    logger.info("bridge stopped: %d messages forwarded, %d rejected", done.forwarded, done.rejected)


@app.command()
def worker(config: ConfigOpt = DEFAULT_CONFIG, log_level: str = "info") -> None:
    """Scale-out: a Faust worker on Kafka (detectors, incidents, dispatch) until SIGINT/SIGTERM."""
    _logging(log_level)
    cfg = _load(config)
    _need("kafka", "faust", "`gridwatch worker` (the scale-out runner)")
    _need_store(cfg)
    import faust

    from engine.runners.faust_app import GridwatchWorker
    from engine.runners.records import ensure_topics

    asyncio.run(ensure_topics(cfg.kafka))
    gw = GridwatchWorker(cfg)
    faust.Worker(
        gw.app, loglevel=log_level.upper(), redirect_stdouts=False, override_logging=False
    ).execute_from_commandline()


@app.command()
def reload(
    config: ConfigOpt = DEFAULT_CONFIG,
    url: Annotated[str | None, typer.Option(help="The engine's API (default: from the config's api section).")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="GRIDWATCH_TOKEN", help="An operator token (api.tokens); or GRIDWATCH_TOKEN.")
    ] = None,
) -> None:
    """Make a running engine re-read its config file (as SIGHUP does) and print what changed."""
    import httpx

    if url is None:
        api = _load(config).api
        url = f"http://{api.host}:{api.port}"
    if not url.startswith(("http://", "https://")):
        console.print(f"[red]--url {url!r}: give http://host:port[/]")
        raise typer.Exit(2)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        res = httpx.post(f"{url}/-/reload", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        console.print(f"[red]no engine answering at {url}: {exc}[/]")
        raise typer.Exit(1) from None
    body = res.json()
    if res.status_code in (401, 403, 429):
        hint = "give an operator token: --token or GRIDWATCH_TOKEN"
        console.print(f"[red]{res.status_code}: {body.get('detail')}[/] ({hint})")
        raise typer.Exit(2)
    if not body.get("ok"):
        console.print("[red]refused, the engine keeps its running config:[/]")
        console.print(str(body.get("error")), markup=False, highlight=False)
        raise typer.Exit(2)
    # Plain text: a change names list items in brackets (detectors[gnss-velocity]), not rich markup.
    console.print("\n".join(body["changes"]) or "no changes", markup=False, highlight=False)
    if body["needs_restart"]:
        console.print(f"[yellow]needs a restart to take effect: {', '.join(body['needs_restart'])}[/]")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="Smaller fleets: a quick check that the benchmarks run.")] = False,
    only: Annotated[str | None, typer.Option(help="Run only this benchmark (e.g. detect_sensors).")] = None,
) -> None:
    """Run the benchmarks in benchmarks/ (tables on screen, figures in benchmarks/results/)."""
    import subprocess

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    scripts = sorted(folder.glob("bench_*.py"))
    known = [p.stem.removeprefix("bench_") for p in scripts]
    if only is not None:
        scripts = [p for p in scripts if p.stem == f"bench_{only}"]
        if not scripts:
            console.print(f"[red]no benchmark {only!r}; there are: {', '.join(known) or 'none'}[/]")
            raise typer.Exit(2)
    for script in scripts:
        console.rule(script.stem.removeprefix("bench_"))
        args = [sys.executable, str(script), *(["--quick"] if quick else [])]
        done = subprocess.run(args, check=False)  # noqa: S603 (the project's own benchmark scripts)
        if done.returncode != 0:
            raise typer.Exit(done.returncode)


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="Config file to check.")] = DEFAULT_CONFIG,
    schema: Annotated[bool, typer.Option(help="Print the config's JSON Schema instead.")] = False,
    reference: Annotated[bool, typer.Option(help="Print the Markdown config reference instead.")] = False,
) -> None:
    """Validate a config: prints `ok` or every error with file, line, field and a hint."""
    from engine.config import reference as ref

    if schema:
        sys.stdout.write(ref.json_schema())
        return
    if reference:
        sys.stdout.write(ref.markdown_reference())
        return
    cfg = _load(file)
    from engine.core.cameras import CameraStage
    from engine.runners.assembly import build_pipeline, cadence_warnings, describe

    pipeline = build_pipeline(cfg)  # detectors construct: catches what only their constructors check (a model file, …)
    CameraStage(cfg)
    for warning in cadence_warnings(cfg, pipeline.detectors):
        print(f"warning: {warning}")
    d = describe(cfg)
    print(
        f"ok: {file}: {d['sites']} sites, {d['devices']} devices, detectors: {', '.join(d['detectors']) or 'none'}; "
        f"{d['cameras']} cameras, camera detectors: {', '.join(d['camera_detectors']) or 'none'}"
    )


@app.command()
def simulate(
    scenario: Annotated[
        str, typer.Option(help="Scenario name (simulators/scenarios) or YAML path.")
    ] = "storm-over-slope",
    out: Annotated[Path | None, typer.Option(help="Write a replay file (.csv or .jsonl) and <out>.truth.csv.")] = None,
    broker: Annotated[str | None, typer.Option(help="Publish to this broker (mqtt://host:port) instead.")] = None,
    speed: Annotated[
        float, typer.Option(help="Data seconds per wall second when publishing; 0 = as fast as possible.")
    ] = 0,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    start: Annotated[
        float | None, typer.Option(help="Epoch seconds of the scenario start (default: so it ends now).")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Topic prefix.")] = "gw",
) -> None:
    """Generate a scenario's readings (and ground truth) to a replay file or a broker."""
    from simulators.scenario import ScenarioError, load_scenario

    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if seed is not None:
        sc = sc.model_copy(update={"seed": seed})
    base = start if start is not None else float(int(time.time() - sc.duration_h * 3600))
    rows = sc.readings(base)
    if out is None and broker is None:
        console.print("[red]give --out FILE or --broker URL[/]")
        raise typer.Exit(2)
    if out is not None:
        from engine.ingest.replay_file import write_rows

        n = write_rows(out, rows)
        truth = out.with_suffix(".truth.csv")
        from engine.evaluation import write_truth

        write_truth(truth, sc.truth(base))
        console.print(f"wrote {n} readings to {out} and the ground truth to {truth}")
    if broker is not None:
        _publish_rows(rows, broker, prefix, speed or None)


def _publish_rows(rows: list[Any], broker: str, prefix: str, speed: float | None) -> None:
    from engine.config.models import MqttConfig
    from engine.ingest.mqtt_client import MqttClient, broker_address
    from simulators.publish import messages, publish_paced

    total = sum(1 for _ in messages(rows, prefix))
    client = MqttClient(MqttConfig(url=broker), client_id=f"gridwatch-sim-{time.time_ns()}", clean=True, track=True)
    client.start(*broker_address(broker))
    with Progress(console=console) as progress:
        task = progress.add_task("publishing", total=total)
        n = publish_paced(
            rows,
            lambda t, p: client.publish(t, p, qos=1),
            prefix,
            speed,
            progress=lambda k: progress.update(task, completed=k),
        )
    if not client.flush():
        console.print("[yellow]the broker did not acknowledge every message in time[/]")
    client.stop()
    console.print(f"published {n} messages to {broker}")


@app.command()
def replay(
    file: Annotated[
        Path,
        typer.Argument(
            help="Replay file (.csv or .jsonl: ts,site,device,metric,value), or a camera recording: an image folder "
            "(one camera, or <site>/<camera>/ sub-folders) or a video file, replayed offline (always direct)."
        ),
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
    direct: Annotated[bool, typer.Option(help="Feed the core directly instead of publishing to the broker.")] = False,
    out: Annotated[
        Path | None, typer.Option(help="With --direct: write the incident events here (JSON Lines).")
    ] = None,
    speed: Annotated[float, typer.Option(help="N times real time; 0 = as fast as possible.")] = 0,
    batch: Annotated[int, typer.Option(help="Readings per batch with --direct (default: ingest.batch_max).")] = 0,
    broker: Annotated[str | None, typer.Option(help="Without --direct: broker URL (default: the config's).")] = None,
    findings: Annotated[
        Path | None, typer.Option(help="With --direct: write every detector finding here (JSON Lines).")
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="With --direct: score against this ground truth (default: <file>.truth.csv if present)."),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="With --truth: write the score as JSON here.")] = None,
    site: Annotated[str, typer.Option(help="Camera recording: the site of a one-camera folder or video.")] = "S01",
    camera_id: Annotated[str, typer.Option("--camera", help="Camera recording: the camera id.")] = "cam-1",
    times: Annotated[
        str | None,
        typer.Option(help="Camera recording: frame times from file names: epoch_ms, epoch_offset, epoch or a regex."),
    ] = None,
    times_csv: Annotated[Path | None, typer.Option(help="Camera recording: frame times from a CSV file,ts.")] = None,
    start: Annotated[
        str | None, typer.Option(help="Camera recording: capture time of the first frame (epoch or ISO-8601).")
    ] = None,
    interval: Annotated[float | None, typer.Option(help="Camera recording: seconds between frames.")] = None,
    thermal: Annotated[bool, typer.Option(help="Camera recording: the frames are thermal.")] = False,
) -> None:
    """Replay a recorded or simulated feed through the core (--direct) or into the broker."""
    from engine.ingest.replay_file import ReplayFileError, read_rows

    cfg = _load(config)
    if file.is_dir() or file.suffix.lower() in {".mp4", ".avi", ".mkv", ".mov"}:
        from engine.ingest.camera_recording import FrameTimes
        from engine.ingest.timestamps import parse_ts_text

        try:
            frame_times = FrameTimes(times, times_csv, parse_ts_text(start) if start else None, interval)
        except (OSError, ValueError) as exc:  # RecordingError, TimestampError
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        _replay_camera(cfg, file, site, camera_id, frame_times, thermal, out, findings)
        return
    try:
        rows = list(read_rows(file))
    except (OSError, ReplayFileError) as exc:
        console.print(f"[red]cannot read replay file: {exc}[/]")
        raise typer.Exit(2) from None
    if not direct:
        url = broker or cfg.mqtt.url
        if url == "embedded":
            url = f"mqtt://{cfg.mqtt.embedded_host}:{cfg.mqtt.embedded_port}"
        _publish_rows(rows, url, cfg.mqtt.topic_prefix, speed or None)
        return
    from engine.ingest.replay_file import batches
    from engine.runners.assembly import build_pipeline

    pipeline = build_pipeline(cfg)
    events: list[dict[str, Any]] = []
    found: list[Finding] = []
    size = batch or cfg.ingest.batch_max
    t0 = time.perf_counter()
    data_t0: float | None = None
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=len(rows))
        for b in batches(rows, pipeline.devices, size):
            if speed and len(b):
                data_t0 = float(b.ts[0]) if data_t0 is None else data_t0
                lag = (float(b.ts[-1]) - data_t0) / speed - (time.perf_counter() - t0)
                if lag > 0:
                    time.sleep(lag)
            events.extend(pipeline.step(b, found))
            progress.advance(task, len(b))
    elapsed = time.perf_counter() - t0
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    if findings is not None:
        findings.parent.mkdir(parents=True, exist_ok=True)
        findings.write_bytes(b"".join(orjson.dumps({"site": f.site, "hazard": f.hazard, **f.to_event()}) + b"\n"
                                      for f in found))  # fmt: skip
    console.print(
        f"replayed {len(rows)} readings in {elapsed:.2f} s ({len(rows) / max(elapsed, 1e-9):,.0f}/s): "
        f"{len(found)} findings, {len(events)} incident events" + (f" -> {out}" if out else "")
    )
    sibling = file.with_suffix(".truth.csv")
    truth = truth if truth is not None else (sibling if sibling.exists() else None)
    if truth is not None:
        from engine.evaluation import read_truth, score

        result = score(read_truth(truth), events, found)
        _print_score(result)
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


def _replay_camera(
    cfg: EngineConfig, path: Path, site: str, camera: str, frame_times: Any, thermal: bool,
    out: Path | None, findings: Path | None,
) -> None:  # fmt: skip
    """``replay`` of a camera recording: offline, through the camera stage, events like ``replay --direct``."""
    from engine.ingest.camera_recording import RecordingError, recorded_frames
    from engine.runners.camera_replay import replay_cameras

    if not cfg.cameras.detectors:
        console.print(f"[red]the config has no camera detectors (cameras.detectors): nothing would look at {path}[/]")
        raise typer.Exit(2)
    try:
        frames = recorded_frames(path, site, camera, frame_times)
    except (OSError, RecordingError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    t0 = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"replaying {len(frames)} frames", total=len(frames))
        result = replay_cameras(cfg, frames, thermal, on_batch=lambda n: progress.advance(task, n))
    elapsed = time.perf_counter() - t0
    for name, rows in ((out, result.events), (findings, result.findings)):
        if name is not None:
            name.parent.mkdir(parents=True, exist_ok=True)
            lines = [orjson.dumps(r if isinstance(r, dict) else {"site": r.site, "hazard": r.hazard, **r.to_event()})
                     for r in rows]  # fmt: skip
            name.write_bytes(b"".join(line + b"\n" for line in lines))
    cameras = len({(f.site, f.camera) for f in frames})
    console.print(
        f"replayed {result.frames} frames of {cameras} camera(s) in {elapsed:.2f} s: {len(result.findings)} "
        f"findings, {len(result.events)} incident events" + (f" -> {out}" if out else "")
    )
    if result.undecodable:
        console.print(f"[yellow]{len(result.undecodable)} frame(s) could not be decoded and were skipped:[/]")
        for source, reason in result.undecodable:
            console.print(f"  {source}: {reason}")


def _print_score(result: dict[str, Any]) -> None:
    if result["landslides"]:
        t = Table(title="Landslides: lead time before failure (h) and failure-time forecast error (h)")
        cols = ["site", "max_level", "blue_lead_h", "yellow_lead_h", "orange_lead_h", "red_lead_h",
                "first_forecast_lead_h", "forecast_error_at_red_h", "forecast_error_last_h"]  # fmt: skip
        for c in cols:
            t.add_column(c)
        for row in result["landslides"]:
            t.add_row(*(str(row.get(c, "-")) for c in cols))
        console.print(t)
    alarms = ", ".join(f"{a['site']} ({a['max_level']})" for a in result["false_alarms"]) or "none"
    console.print(f"landslide incidents at sites without a landslide: {alarms}")
    if result["faults"]:
        t = Table(title="Injected faults reported as device_fault")
        for c in ("site", "device", "kind", "found", "delay_min"):
            t.add_column(c)
        for row in result["faults"]:
            t.add_row(*(str(row.get(c, "-")) for c in ("site", "device", "kind", "found", "delay_min")))
        console.print(t)
    console.print(f"device_fault findings not matching an injected fault: {result['unexpected_faults']}")


@app.command()
def tune(
    data: Annotated[
        list[Path],
        typer.Option(help="Replay file (.csv or .jsonl), or an image folder for a camera detector; repeatable."),
    ],
    truth: Annotated[
        list[Path],
        typer.Option(
            help="Ground truth CSV, one per --data: events (site, hazard, start, end, as `simulate` writes), or "
            "per-frame labels (frame, fire, smoke) for a camera detector."
        ),
    ],
    detector: Annotated[str, typer.Option(help="Id of the detector to tune (its `id`, or its type).")],
    sweep: Annotated[
        list[str], typer.Option(help="PARAM=START:STOP:STEP over a field of the detector's config; repeatable.")
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
    out: Annotated[Path, typer.Option(help="Folder for tune.csv, tune.png and suggested.yaml.")] = Path("var/tune"),
    level: Annotated[
        str | None,
        typer.Option(help="Level the scores are judged at (default yellow); for a camera detector the class (fire)."),
    ] = None,
    max_false_alarms: Annotated[
        str | None, typer.Option(help="Constraint for the suggestion, e.g. 2/site-year.")
    ] = None,
    min_recall: Annotated[float | None, typer.Option(help="Constraint for the suggestion, e.g. 0.9.")] = None,
    max_false_alarm_rate: Annotated[
        float | None,
        typer.Option(help="Camera detector: at most this share of frames without the class may alarm, e.g. 0.05."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Parallel processes (default: one per core).")] = 0,
) -> None:
    """What would other thresholds have done? Sweep a detector's config against data with known events."""
    _need("tune", "matplotlib", "`gridwatch tune` (its plots)")
    from engine.core.levels import LEVEL_NAMES
    from engine.plots import sweep_plot
    from engine.tuning import (
        Constraint,
        Sweep,
        TuneError,
        best_point,
        find_camera_detector,
        find_detector,
        tune_frames,
        yaml_patch,
    )
    from engine.tuning import tune as run_tune

    cfg = _load(config)
    camera_cfg = find_camera_detector(cfg, detector)
    if camera_cfg is not None:
        from detectors.vision.base import frame_registry

        classes = frame_registry.get(camera_cfg.type).classes
        level = level or classes[0]
        if level not in classes:
            console.print(f"[red]--level {level!r}: {detector} scores the classes {', '.join(classes)}[/]")
            raise typer.Exit(2)
        if max_false_alarms:
            console.print(
                "[red]--max-false-alarms is per site-year of sensor data; for frames use --max-false-alarm-rate[/]"
            )
            raise typer.Exit(2)
    else:
        level = level or "yellow"
        if max_false_alarm_rate is not None:
            console.print("[red]--max-false-alarm-rate is per frame, for a camera detector[/]")
            raise typer.Exit(2)
        if level not in LEVEL_NAMES:
            console.print(f"[red]--level {level!r}: use one of {', '.join(LEVEL_NAMES)}[/]")
            raise typer.Exit(2)
    try:
        sweeps = [Sweep.parse(s) for s in sweep]
        constraint = Constraint(
            Constraint.parse_rate(max_false_alarms) if max_false_alarms else None, min_recall, max_false_alarm_rate
        )
        det_cfg = camera_cfg or find_detector(cfg, detector)
        n_points = 1
        for s in sweeps:
            n_points *= len(s.values)
        runner = tune_frames if camera_cfg is not None else run_tune
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"scoring {n_points + 1} configs", total=n_points + 1)
            current, points = runner(cfg, data, truth, detector, sweeps, workers, lambda: progress.advance(task))
    except (TuneError, OSError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    best = best_point(points, level, constraint)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["precision", "recall", "f1", "false_alarms_per_site_month", "lead_h_median", "lead_h_p10"]
    if camera_cfg is not None:
        cols = ["precision", "recall", "f1", "false_alarm_rate"]
    names = " + ".join(d.name for d in data)
    table = Table(title=f"{detector} at level {level} on {names}")
    for name in [*(s.path for s in sweeps), "hits", "misses", "false_alarms", *cols]:
        table.add_column(name, justify="right")
    rows_csv = []
    for p in [current, *points]:
        tag = "current" if p is current else ("suggested" if p is best else "")
        vals = ["current" if p is current else f"{p.values[s.path]:g}" for s in sweeps]
        if not p.scores:
            table.add_row(*vals, f"[dim]invalid: {p.error}[/]", *[""] * (len(cols) + 1))
            rows_csv.append({**{s.path: p.values[s.path] for s in sweeps}, "error": p.error})
            continue
        sc = p.scores[level]
        style = "bold green" if tag == "suggested" else ("bold red" if tag == "current" else "")
        table.add_row(
            *vals, *(f"{sc[c]:g}" for c in ("hits", "misses", "false_alarms")), *(f"{sc[c]:.3g}" for c in cols),
            style=style,
        )  # fmt: skip
        for lv, scores in p.scores.items():
            rows_csv.append({**{s.path: p.values[s.path] for s in sweeps}, "point": tag, "level": lv, **scores})
    console.print(table)
    if camera_cfg is not None and best is not None and len(data) > 1:
        cams = Table(title=f"the suggested point per camera (folder), class {level}")
        for name in ("camera", "hits", "misses", "false_alarms", *cols):
            cams.add_column(name, justify="right")
        for key, sc in sorted(best.scores.items()):
            if key.startswith(f"{level}@"):
                cams.add_row(key.partition("@")[2], *(f"{sc[c]:g}" for c in ("hits", "misses", "false_alarms")),
                             *(f"{sc[c]:.3g}" for c in cols))  # fmt: skip
        console.print(cams)
    import csv

    fields = [s.path for s in sweeps] + ["point", "level", "error", "alarms", "hits", "misses", "false_alarms"]
    fields += [c for c in ("precision", "recall", "f1", "false_alarms_per_site_month", "lead_h_median", "lead_h_p10",
                           "false_alarm_rate") if c in cols or camera_cfg is None]  # fmt: skip
    with (out / "tune.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows_csv)
    png = sweep_plot(out / "tune.png", points, current, best, level, f"{detector} on {names}", frames=bool(camera_cfg))
    console.print(f"wrote {out / 'tune.csv'} and {png}")
    if best is None:
        console.print("[yellow]no sweep point meets the constraint; loosen it or widen the sweep[/]")
        return
    patch = yaml_patch(det_cfg, best, camera=camera_cfg is not None)
    (out / "suggested.yaml").write_text(patch, encoding="utf-8")
    console.print(f"suggested (best F1 at {level} within the constraint) -> {out / 'suggested.yaml'}:\n{patch}")


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="Wall-clock seconds the simulated scenario takes.")] = 60.0,
    config: ConfigOpt = DEFAULT_CONFIG,
    scenario: Annotated[str, typer.Option(help="Scenario to play.")] = "storm-over-slope",
    out: Annotated[Path, typer.Option(help="Where the event log goes.")] = Path("var/demo"),
    hold: Annotated[
        bool | None,
        typer.Option(
            help="Keep the engine and its operator page up after the scenario until Ctrl-C (default: in a terminal)."
        ),
    ] = None,
) -> None:
    """Embedded broker + engine + a simulated rainstorm over a slope that starts to fail, then a smoke camera and
    a thermal camera seeing a fire, with a live board and the operator page."""
    _logging("warning")
    from engine.config.models import ApiConfig
    from engine.runners.demo import run_demo
    from simulators.scenario import load_scenario

    cfg = _load(config)
    _need("demo", "amqtt", "`gridwatch demo` (its embedded MQTT broker)")
    sc = load_scenario(scenario)
    import secrets

    mqtt = cfg.mqtt.model_copy(update={"embedded_port": 0, "client_id": f"gridwatch-demo-{time.time_ns()}"})
    # A fresh data dir each run: the last run's checkpoint and store would carry its devices' state into
    # this one (a second demo showed 24 false device faults) and restart incident numbering under old ids.
    run_dir = out / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir = run_dir.with_name(f"{run_dir.name}-{time.time_ns() % 1_000_000:06d}")
    cfg = cfg.model_copy(update={"data_dir": str(run_dir)})
    demo_token = {"name": "demo-operator", "token": secrets.token_urlsafe(24), "role": "operator"}
    cfg = cfg.model_copy(
        update={
            "mqtt": mqtt,
            "api": ApiConfig(enabled=True, port=0, tokens=[demo_token]),
            "sites": [
                *cfg.sites,
                *[s for s in EngineConfig.model_validate({"sites": sc.sites_config()}).sites if cfg.site(s.id) is None],
            ],
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    keep = sys.stdin.isatty() if hold is None else hold
    summary, board, runner = asyncio.run(run_demo(cfg, sc, duration, out, Console(), hold=keep))
    t = Table(title="demo summary")
    for col in ("hazard", "level", "incident events"):
        t.add_column(col)
    for (hz, lv), n in sorted(summary.by_hazard_level.items()):
        t.add_row(hz, lv, str(n))
    out_console = Console()
    out_console.print(t)
    incidents = {e["incident_id"]: e for e in board.latest.values()}
    out_console.print(
        f"{summary.readings} readings processed, {summary.rejected} rejected, {len(incidents)} incidents "
        f"({summary.events} events).\nEvent log: {out / 'incidents.jsonl'}; this run's data: {run_dir}\n"
        f"Metrics were served at {runner.api_url}/metrics while the demo ran; `gridwatch run` serves them "
        f"at the configured api.port."
    )


@app.command()
def score(
    paths: Annotated[list[Path], typer.Argument(help="Images, image folders, TIFFs or video files.")],
    detector: Annotated[str, typer.Option(help="A camera detector id from the config, or a type name.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of CSV.")] = False,
    thermal: Annotated[bool, typer.Option(help="Frames are thermal (16-bit TIFF or .npy).")] = False,
    units: Annotated[
        str | None, typer.Option(help="Thermal: celsius (calibrated) or counts (raw, judged against the scene).")
    ] = None,
    gain: Annotated[float, typer.Option(help="Thermal calibration: temp_c = gain * raw + offset.")] = 1.0,
    offset: float = 0.0,
) -> None:
    """What one camera detector thinks of each frame, by the one alarm rule: source, class, score, the alarm
    threshold, alarm (1/0), level and region. Each frame alone (no confirmation, no scene memory).
    Files that do not decode are listed at the end; the others are scored."""
    import csv

    from detectors.vision.base import FrameBatch, frame_registry
    from engine.ingest.frames import FrameError, read_frames

    cfg = _load(config) if config.exists() else EngineConfig()
    spec = next((d for d in cfg.cameras.detectors if d.name == detector), None)
    try:
        cls = frame_registry.get(spec.type if spec else detector)
    except KeyError as exc:
        configured = ", ".join(d.name for d in cfg.cameras.detectors) or "none"
        console.print(f"[red]{exc}[/] (configured camera detectors: {configured})")
        raise typer.Exit(2) from None
    det_cfg = spec or cls.config_class.model_validate({"type": detector})
    if units is not None:
        if "units" not in type(det_cfg).model_fields or units not in ("celsius", "counts"):
            console.print(f"[red]--units {units}: only a thermal detector takes --units celsius or counts[/]")
            raise typer.Exit(2)
        det_cfg = det_cfg.model_copy(update={"units": units})
    det = cls(det_cfg)
    state = det.new_state()
    writer = None if as_json else csv.writer(sys.stdout)
    if writer is not None:
        writer.writerow(["source", "class", "score", "threshold", "alarm", "level", "region"])
    failed: list[tuple[Path, FrameError]] = []
    frames = read_frames(
        paths, thermal=thermal or det.modality == "thermal", gain=gain, offset=offset,
        on_error=lambda p, e: failed.append((p, e)),
    )  # fmt: skip
    for frame in frames:
        for obs in det.observe(FrameBatch([frame]), state):
            for label, value in obs.scores.items():
                region = [[round(v, 4) for v in box] for box in obs.regions.get(label, [])]
                level = det.level_of(label, value)
                threshold = det.frame_threshold(label)
                if writer is not None:
                    writer.writerow([frame.source, label, f"{value:.4f}", f"{threshold:.4f}", int(bool(level)),
                                     level.label if level else "", orjson.dumps(region).decode()])  # fmt: skip
                else:
                    row = {"source": frame.source, "class": label, "score": value, "threshold": threshold,
                           "alarm": bool(level), "level": level.label if level else None, "region": region}  # fmt: skip
                    sys.stdout.write(orjson.dumps(row).decode() + "\n")
    if failed:
        console.print(f"[yellow]{len(failed)} file(s) could not be decoded and were skipped:[/]")
        for path, err in failed:
            console.print(f"  {path}: {err}")


@app.command()
def camera(
    source: Annotated[
        str,
        typer.Argument(
            help="A scene (fire, smoke, distant-smoke, fog, clouds, sunset, red-vehicle, headlights, haze, ridge, "
            "red-interior, lights, thermal-fire), a video file or an image folder."
        ),
    ],
    site: str = "S01",
    camera_id: Annotated[str, typer.Option("--camera", help="Camera id in the topic.")] = "cam-1",
    fps: Annotated[float, typer.Option(help="Synthetic scene: frames per second (and the scene's time step).")] = 2.0,
    frames: Annotated[int, typer.Option(help="Frames of a synthetic scene.")] = 120,
    seed: int = 0,
    start_s: Annotated[float, typer.Option(help="When the fire or smoke starts in a synthetic scene.")] = 5.0,
    broker: Annotated[str | None, typer.Option(help="Publish to this broker (mqtt://host:port).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the frames as an image folder instead.")] = None,
    prefix: str = "gw",
    realtime: Annotated[
        bool, typer.Option(help="Pace publishing at the frames' own spacing (else as fast as the broker takes).")
    ] = True,
    times: Annotated[
        str | None, typer.Option(help="Recording: frame times from file names (epoch_ms, epoch_offset, epoch, regex).")
    ] = None,
    times_csv: Annotated[Path | None, typer.Option(help="Recording: frame times from a CSV file,ts.")] = None,
    interval: Annotated[float | None, typer.Option(help="Recording: seconds between frames.")] = None,
    wait_s: Annotated[float, typer.Option(help="After publishing, how long to watch for dead letters.")] = 3.0,
) -> None:
    """A camera feed: a synthetic scene or a recording, published over MQTT or written out.

    Frames keep their spacing (a scene's 1/fps, a recording's own capture times). Published as fast as the
    broker takes them (``--no-realtime``), the timeline is shifted so that the last frame is stamped now: the
    engine refuses frames stamped in the future. Any frame the engine dead-letters is reported, and the
    command fails: nothing is dropped silently.
    """
    from engine.ingest.camera_recording import FrameTimes, RecordingError, frame_bytes, recorded_frames
    from simulators.camera import SCENES, synthetic, write_folder

    thermal = source == "thermal-fire"
    feed: list[tuple[float, bytes]] | Any
    if source in SCENES:
        feed = synthetic(source, fps, frames, seed, start_s)
        span = (frames - 1) / fps
    elif Path(source).exists():
        try:
            rec = recorded_frames(Path(source), site, camera_id, FrameTimes(times, times_csv, 0.0, interval))
        except (OSError, RecordingError) as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        first = rec[0].ts if rec else 0.0
        feed = ((f.ts - first, data) for f, data in frame_bytes(rec) if data is not None)
        span = rec[-1].ts - first if rec else 0.0
        frames = len(rec)
    else:
        console.print(f"[red]{source!r} is neither a scene ({', '.join(SCENES)}) nor a file or folder[/]")
        raise typer.Exit(2)
    start = time.time() if realtime else time.time() - span
    if out is not None:
        n = write_folder(feed, out / site / camera_id, start, thermal)
        console.print(f"wrote {n} frames to {out / site / camera_id}")
        return
    if broker is None:
        console.print("[red]give --broker mqtt://host:port to publish, or --out DIR to write the frames[/]")
        raise typer.Exit(2)
    from engine.config.models import MqttConfig
    from engine.ingest.mqtt_client import MqttClient, broker_address

    topic = f"{prefix}/{'thermal' if thermal else 'cameras'}/{site}/{camera_id}"
    rejected: list[dict[str, Any]] = []

    def dead_letter(_topic: str, payload: bytes, _props: dict[str, str]) -> None:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict) and doc.get("topic") == topic:
            rejected.append(doc)

    cfg = MqttConfig(url=broker)
    watcher = MqttClient(
        cfg, dead_letter, [f"{prefix}/deadletter/#"], client_id=f"gw-cam-dl-{time.time_ns()}", clean=True
    )
    watcher.start(*broker_address(broker))
    client = MqttClient(cfg, client_id=f"gridwatch-camera-{time.time_ns()}", clean=True, track=True)
    client.start(*broker_address(broker))
    n = 0
    with Progress(console=console) as progress:
        task = progress.add_task(f"publishing {source} to {topic}", total=frames)
        for t, payload in feed:
            if realtime:
                time.sleep(max(0.0, start + t - time.time()))
            client.publish(topic, payload, qos=1, user_properties={"ts": f"{start + t:.3f}"})
            n += 1
            progress.update(task, completed=n)
    client.flush()
    client.stop()
    time.sleep(wait_s)
    watcher.stop()
    console.print(f"published {n} frames to {topic}")
    if rejected:
        reasons: dict[str, int] = {}
        for doc in rejected:
            reasons[str(doc.get("reason"))] = reasons.get(str(doc.get("reason")), 0) + 1
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
        console.print(f"[red]{len(rejected)} of {n} frames were dead-lettered by the engine ({listed}); e.g. "
                      f"{rejected[0].get('detail')}[/]")  # fmt: skip
        raise typer.Exit(1)


incidents_app = typer.Typer(help="List, show and act on incidents through a running engine's API.")
app.add_typer(incidents_app, name="incidents")
TokenOpt = Annotated[
    str | None,
    typer.Option(envvar="GRIDWATCH_TOKEN", help="API token (api.tokens in the config); or set GRIDWATCH_TOKEN."),
]
UrlOpt = Annotated[str | None, typer.Option(help="The engine's API (default: from the config's api section).")]
stdout = Console(soft_wrap=True)  # what the incidents commands answer
LEVEL_COLOUR = {"blue": "blue", "yellow": "yellow", "orange": "dark_orange", "red": "red"}


def _client(config: Path, url: str | None, token: str | None) -> Any:
    from engine.api.client import IncidentsClient

    if url is None:
        api = _load(config).api
        url = f"http://{api.host}:{api.port}"
    return IncidentsClient(url, token)


def _api_call(fn: Any) -> Any:
    from engine.api.client import ApiError

    try:
        return fn()
    except ApiError as exc:
        stdout.print(f"[red]{exc}[/]")
        raise typer.Exit(1 if exc.status in (0, 404, 409) else 2) from None


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


@incidents_app.command("list")
def incidents_list(
    config: ConfigOpt = DEFAULT_CONFIG,
    url: UrlOpt = None,
    token: TokenOpt = None,
    state: Annotated[str | None, typer.Option(help="open, pending, firing, acknowledged or resolved.")] = None,
    hazard: str | None = None,
    site: str | None = None,
    level: str | None = None,
    limit: int = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Incidents, newest first."""
    client = _client(config, url, token)
    rows = _api_call(lambda: client.list(state=state, hazard=hazard, site=site, level=level, limit=limit))
    if as_json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table("id", "level", "state", "hazard", "site", "opened", "tier", "acknowledged by", "assigned to")
    for r in rows:
        colour = LEVEL_COLOUR.get(r["level"], "")
        table.add_row(
            r["incident_id"], f"[{colour}]{r['level']}[/]", r["state"], r["hazard"], r["site"], _when(r["opened_at"]),
            r.get("tier") or "-", r.get("acknowledged_by") or "-", r.get("assigned_to") or "-",
        )  # fmt: skip
    stdout.print(table)


@incidents_app.command("show")
def incidents_show(
    incident_id: str,
    config: ConfigOpt = DEFAULT_CONFIG,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One incident with its findings, plan and audit trail."""
    client = _client(config, url, token)
    inc = _api_call(lambda: client.show(incident_id))
    if as_json:
        sys.stdout.write(orjson.dumps(inc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    colour = LEVEL_COLOUR.get(inc["level"], "")
    stdout.print(
        f"[bold]{inc['incident_id']}[/] [{colour}]{inc['level'].upper()}[/] {inc['hazard']} at {inc['site']} - "
        f"{inc['state']}, opened {_when(inc['opened_at'])}, confidence {inc['confidence']}, tier {inc.get('tier')}"
    )
    if inc.get("plan"):
        plan = inc["plan"]
        stdout.print(f"Plan: [bold]{plan.get('title')}[/] ({plan.get('role')})")
        for k, step in enumerate(plan.get("steps", []), 1):
            stdout.print(f"  {k}. {step}")
    findings = Table("detector", "device", "time", "level", "score", title="Findings")
    for f in inc["findings"]:
        findings.add_row(f["detector"], f["device"], _when(f["ts"]), f["level"], f"{f['score']:.3g}")
    stdout.print(findings)
    audit = Table("time", "actor", "action", "receivers", "note", title="Audit trail")
    for a in inc["audit"]:
        d = a["detail"]
        note = d.get("comment") or (f"silenced by {d['silenced_by']}" if d.get("silenced_by") else "")
        note = note or (f"inhibited by {d['inhibited_by']}" if d.get("inhibited_by") else "")
        audit.add_row(_when(a["at"]), a["actor"], a["action"], ", ".join(d.get("receivers") or []), note)
    stdout.print(audit)


def _act(incident_id: str, action: str, body: dict[str, Any], config: Path, url: str | None, token: str | None) -> None:
    client = _client(config, url, token)
    result = _api_call(lambda: client.act(incident_id, action, body))
    for e in result["events"]:
        to = ", ".join(e.get("receivers") or []) or "nobody"
        muted = "" if e.get("notified", True) else " (muted: not sent)"
        stdout.print(f"{e['incident_id']} {e['action']}: {e['level']} {e['state']} -> {to}{muted}")
    if not result["events"]:
        stdout.print(f"{incident_id}: nothing changed")


@incidents_app.command("ack")
def incidents_ack(
    incident_id: str, comment: str = "", config: ConfigOpt = DEFAULT_CONFIG, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Acknowledge a firing incident (escalation stops)."""
    _act(incident_id, "ack", {"comment": comment}, config, url, token)


@incidents_app.command("assign")
def incidents_assign(
    incident_id: str, to: str, config: ConfigOpt = DEFAULT_CONFIG, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Assign an open incident to a person or team."""
    _act(incident_id, "assign", {"to": to}, config, url, token)


@incidents_app.command("resolve")
def incidents_resolve(
    incident_id: str, comment: str = "", config: ConfigOpt = DEFAULT_CONFIG, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Resolve an open incident by hand."""
    _act(incident_id, "resolve", {"comment": comment}, config, url, token)


@incidents_app.command("dispatch")
def incidents_dispatch(
    incident_id: str, config: ConfigOpt = DEFAULT_CONFIG, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """One-key dispatch: send the incident and its response plan to every receiver of the plan."""
    _act(incident_id, "dispatch", {}, config, url, token)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
