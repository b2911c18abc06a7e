"""The engine's own commands: ``run``, ``bridge``, ``pull-cameras``, ``worker``, ``reload``, ``check-config``, ``bench``
and ``demo``."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from engine.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    app,
    check_receivers,
    console,
    install_stop,
    load_or_exit,
    logger,
    need_cameras_extra,
    need_extra,
    need_extras_for,
    need_notify_extra,
    need_store_extra,
    setup_logging,
)
from engine.config.models import EngineConfig


@app.command()
def run(config: ConfigOpt = DEFAULT_CONFIG, log_level: str = "info") -> None:
    """Run the engine with the local runner until SIGINT/SIGTERM."""
    setup_logging(log_level)
    cfg = load_or_exit(config)
    need_extras_for(cfg)
    check_receivers(cfg, warn=False)
    from engine.runners.local import LocalRunner

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(stop)
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
    setup_logging(log_level)
    cfg = load_or_exit(config)
    need_extra("kafka", "aiokafka", "`gridwatch bridge` (the scale-out runner)")
    from engine.runners.bridge import run_bridge

    done = run_bridge(cfg)
    logger.info("bridge stopped: %d messages forwarded, %d rejected", done.forwarded, done.rejected)


@app.command("pull-cameras")
def pull_cameras(
    config: ConfigOpt = DEFAULT_CONFIG,
    log_level: str = "info",
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics here (the cameras without frames, frames taken).")
    ] = None,
) -> None:
    """Scale-out: pull the cameras that have a `source` (RTSP, HTTP snapshots, ONVIF, video devices) and publish
    their frames to gw/cameras/<site>/<camera>, the capture time in the MQTT v5 user property `ts`, until
    SIGINT/SIGTERM. (`gridwatch run` pulls them itself: run this only for bridges and workers.)"""
    import threading

    setup_logging(log_level)
    cfg = load_or_exit(config)
    if not any(c.source for c in cfg.cameras.devices):
        typer.echo(f"{config}: no camera has a source (cameras.devices[].source): nothing to pull", err=True)
        raise typer.Exit(2)
    if metrics_port is not None and not cfg.api.metrics_public:
        typer.echo(
            f"{config}: api.metrics_public is false, and --metrics-port would serve /metrics without a token: "
            "leave --metrics-port out, or keep that port on a trusted network and set api.metrics_public: true",
            err=True,
        )
        raise typer.Exit(2)
    if cfg.mqtt.url == "embedded":
        typer.echo(f"{config}: mqtt.url is `embedded`: give the broker the bridges read (mqtt://host:port)", err=True)
        raise typer.Exit(2)
    need_extra("cameras", "cv2", "`gridwatch pull-cameras`")
    from engine.config.models import CameraConfig
    from engine.ingest.camera_sources import CameraSources
    from engine.ingest.mqtt_client import MqttClient, broker_address

    client = MqttClient(cfg.mqtt, client_id=f"{cfg.mqtt.client_id}-cameras", clean=True)
    client.start(*broker_address(cfg.mqtt.url))
    prefix = cfg.mqtt.topic_prefix

    def publish(cam: CameraConfig, payload: bytes, ts: float) -> None:
        kind = "thermal" if cam.kind == "thermal" else "cameras"
        # QoS 0: a frame lost while the broker is away is replaced by the next one; queued ones would only be late
        client.publish(f"{prefix}/{kind}/{cam.site}/{cam.id}", payload, qos=0, user_properties={"ts": f"{ts:.3f}"})

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sources = CameraSources(cfg, publish)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from engine import metrics

        start_http_server(metrics_port, cfg.api.host, registry=metrics.REGISTRY)
    sources.start()
    stop.wait()
    sources.stop()
    client.stop()
    taken = sum(s.health.frames for s in sources.sources)
    logger.info("pull-cameras stopped: %d frames published from %d cameras", taken, len(sources.sources))


@app.command()
def worker(config: ConfigOpt = DEFAULT_CONFIG, log_level: str = "info") -> None:
    """Scale-out: a Faust worker on Kafka (detectors, incidents, dispatch) until SIGINT/SIGTERM."""
    setup_logging(log_level)
    cfg = load_or_exit(config)
    need_extra("kafka", "faust", "`gridwatch worker` (the scale-out runner)")
    need_store_extra(cfg)
    need_cameras_extra(cfg)
    need_notify_extra(cfg)
    check_receivers(cfg, warn=False)
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
        api = load_or_exit(config).api
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


BENCH_DIR_ENV = "GRIDWATCH_BENCHMARKS"


def benchmark_folders(cwd: Path | None = None) -> list[Path]:
    """Where ``bench`` looks for ``bench_*.py``, in order: ``$GRIDWATCH_BENCHMARKS``, then ``benchmarks/`` beside
    the installed ``engine`` package (a checkout, or an editable install), then ``benchmarks/`` in the working
    directory or the first of its parents that has one. The scripts ship with the source, not the wheel.

    >>> benchmark_folders(Path("/"))[-1]
    PosixPath('/benchmarks')
    """
    import os

    import engine

    found = [Path(os.environ[BENCH_DIR_ENV])] if os.environ.get(BENCH_DIR_ENV) else []
    found.append(Path(engine.__file__).resolve().parents[1] / "benchmarks")
    here = (cwd or Path.cwd()).resolve()
    found.extend(folder / "benchmarks" for folder in (here, *here.parents))
    return list(dict.fromkeys(found))


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option(help="Smaller fleets: a quick check that the benchmarks run; writes no results files.")
    ] = False,
    only: Annotated[str | None, typer.Option(help="Run only this benchmark (e.g. detect_sensors).")] = None,
    against: Annotated[
        str | None,
        typer.Option(
            help="Git commits (comma-separated) whose own benchmark to run side by side in the same run (benchmarks "
            "that support it: detect_sensors, ingest_e2e); the ratios are printed and recorded."
        ),
    ] = None,
) -> None:
    """Run the benchmarks in benchmarks/ (tables on screen; a full run records its figures in benchmarks/results/).

    The folder is found from any working directory: $GRIDWATCH_BENCHMARKS, the checkout's benchmarks/, or
    benchmarks/ in this directory or a parent. No benchmark found, or none named by --only, is an error
    (exit 2). A benchmark that fails does not stop the others: the run ends with those that failed, and the
    first one's exit status."""
    import subprocess

    candidates = benchmark_folders()
    folder = next((f for f in candidates if any(f.glob("bench_*.py"))), None)
    if folder is None:
        console.print(
            "[red]no benchmarks found[/] (bench_*.py) in: "
            + ", ".join(str(f) for f in candidates[:3])
            + ", …\nThe benchmarks come with the source checkout, not the installed package: run `gridwatch "
            f"bench` inside a checkout of gridwatch, or set {BENCH_DIR_ENV} to its benchmarks/ folder."
        )
        raise typer.Exit(2)
    scripts = sorted(folder.glob("bench_*.py"))
    known = [p.stem.removeprefix("bench_") for p in scripts]
    if only is not None:
        scripts = [p for p in scripts if p.stem == f"bench_{only.removeprefix('bench_').removesuffix('.py')}"]
        if not scripts:
            console.print(f"[red]no benchmark {only!r} in {folder}[/]; there are: {', '.join(known)}")
            raise typer.Exit(2)
    failed: list[tuple[str, int]] = []  # each one runs even when one before it failed (a broker not installed)
    for script in scripts:
        console.rule(f"{script.stem.removeprefix('bench_')} ({script})")
        args = [sys.executable, str(script), *(["--quick"] if quick else [])]
        if against is not None:
            if "--against" in script.read_text():
                args += ["--against", against]
            else:
                console.print(f"[yellow]{script.stem} has no --against: runs this checkout only[/]")
        # From the checkout's root: scripts read config/ and models/ beside benchmarks/.
        done = subprocess.run(args, cwd=folder.parent, check=False)  # noqa: S603 (the project's own benchmarks)
        if done.returncode != 0:
            console.print(f"[red]{script.name} failed (exit {done.returncode})[/]")
            failed.append((script.stem.removeprefix("bench_"), done.returncode))
    if failed:
        names = ", ".join(f"{name} (exit {code})" for name, code in failed)
        console.print(f"[red]{len(failed)} of {len(scripts)} benchmarks failed: {names}[/]")
        raise typer.Exit(failed[0][1])


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
    cfg = load_or_exit(file)
    need_cameras_extra(cfg)
    need_notify_extra(cfg)
    check_receivers(cfg)
    from engine.flow.cameras import CameraStage
    from engine.runners.assembly import build_pipeline, cadence_warnings, describe

    pipeline = build_pipeline(cfg)  # detectors construct: catches what only their constructors check (a model file, …)
    stage = CameraStage(cfg)
    for warning in cadence_warnings(cfg, pipeline.detectors):
        print(f"warning: {warning}")
    if not stage and any(c.source for c in cfg.cameras.devices):
        print("warning: cameras.devices have a source but cameras.detectors is empty: `gridwatch run` does not pull "
              "them (`gridwatch pull-cameras` publishes them to MQTT)")  # fmt: skip
    d = describe(cfg)
    print(
        f"ok: {file}: {d['sites']} sites, {d['devices']} devices, detectors: {', '.join(d['detectors']) or 'none'}; "
        f"{d['cameras']} cameras, camera detectors: {', '.join(d['camera_detectors']) or 'none'}"
    )


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
    setup_logging("warning")
    from engine.config.models import ApiConfig
    from engine.runners.demo import run_demo
    from simulators.scenario import load_scenario

    cfg = load_or_exit(config)
    need_extra("demo", "amqtt", "`gridwatch demo` (its embedded MQTT broker)")
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
            # the demo's own API (any free port, its own token), with the config's basemap: the map keeps the city
            "api": ApiConfig(enabled=True, port=0, tokens=[demo_token], basemap=cfg.api.basemap),
            # a simulated storm must not reach anyone's phone: no people-facing (Apprise) sink
            "sinks": [s for s in cfg.sinks if s.type != "apprise"],
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
    board.follow(out / "incidents.jsonl")  # the event log holds every event, those of reports and actions too
    counted = board.logged or summary.by_hazard_level
    for (hz, lv), n in sorted(counted.items()):
        t.add_row(hz, lv, str(n))
    out_console = Console()
    out_console.print(t)
    incidents = {e["incident_id"]: e for e in board.latest.values()}
    out_console.print(
        f"{summary.readings} readings processed, {summary.rejected} rejected, {len(incidents)} incidents "
        f"({sum(counted.values())} events).\nEvent log: {out / 'incidents.jsonl'}; this run's data: {run_dir}\n"
        f"Metrics were served at {runner.api_url}/metrics while the demo ran; `gridwatch run` serves them "
        f"at the configured api.port."
    )
