"""Tools around the engine: ``simulate``, ``replay``, ``tune``, ``score`` and ``camera``."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import Progress
from rich.table import Table

from engine.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    app,
    console,
    load_or_exit,
    need_extra,
)
from engine.config.models import EngineConfig


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


BROKER_WAIT_S = 5.0  # how long a publishing command waits for its broker before it gives up


def _broker_url(broker: str) -> str:
    """``broker`` if it is an MQTT URL, else the command ends with a usage error (exit 2)."""
    if not broker.startswith(("mqtt://", "mqtts://")):
        console.print(f"[red]--broker {broker!r} is not an MQTT URL: give mqtt://host:port[/]", soft_wrap=True)
        raise typer.Exit(2)
    return broker


def _connected(client: Any, broker: str, what: str) -> None:
    """Start ``client`` on ``broker``, or end the command with one line that says why (exit 1): a dead broker
    must not look like a successful run."""
    from engine.ingest.mqtt_client import broker_address

    host, port = broker_address(broker)
    try:
        client.start(host, port, wait_s=0)  # waited for here: the one line below says it, not a log warning too
    except OSError as exc:  # a host name that does not resolve
        console.print(f"[red]cannot reach the MQTT broker {broker} to publish {what}: {exc}[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    if not client.connected.wait(BROKER_WAIT_S):
        client.stop()
        console.print(f"[red]cannot reach the MQTT broker {broker} to publish {what}: no connection within "
                      f"{BROKER_WAIT_S:.0f} s (is it running, and is the address right?); nothing was published[/]",
                      soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)


def _broker_lost(client: Any, broker: str, sent: int, what: str) -> None:
    """The broker went away while publishing: one line, exit 1."""
    client.stop()
    console.print(f"[red]lost the MQTT broker {broker} after {sent} {what}; the rest were not published[/]",
                  soft_wrap=True)  # fmt: skip
    raise typer.Exit(1)


def _publish_rows(rows: list[Any], broker: str, prefix: str, speed: float | None) -> None:
    from engine.config.models import MqttConfig
    from engine.ingest.mqtt_client import MqttClient
    from simulators.publish import messages, publish_paced

    total = sum(1 for _ in messages(rows, prefix))
    client = MqttClient(
        MqttConfig(url=_broker_url(broker)), client_id=f"gridwatch-sim-{time.time_ns()}", clean=True, track=True
    )
    _connected(client, broker, "the readings")
    sent = [0]

    def publish(topic: str, payload: bytes) -> None:
        if not client.connected.is_set():
            raise ConnectionError(topic)
        client.publish(topic, payload, qos=1)
        sent[0] += 1

    try:
        with Progress(console=console) as progress:
            task = progress.add_task("publishing", total=total)
            n = publish_paced(rows, publish, prefix, speed, progress=lambda k: progress.update(task, completed=k))
    except (ConnectionError, OSError, RuntimeError):
        _broker_lost(client, broker, sent[0], "messages")
    if not client.flush():
        client.stop()
        console.print(f"[red]the broker {broker} did not acknowledge every message in time; some may be lost[/]")
        raise typer.Exit(1)
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
    site: Annotated[
        str | None,
        typer.Option(
            help="Camera recording: the site of a one-camera folder or video (default: 'replay', said first)."
        ),
    ] = None,
    camera_id: Annotated[
        str | None,
        typer.Option("--camera", help="Camera recording: the camera id (default: the folder's or video's name)."),
    ] = None,
    times: Annotated[
        str | None,
        typer.Option(
            help="Camera recording: frame times from file names: epoch_ms, capture_ignition (alias figlib: "
            "<capture epoch>_<seconds from ignition>), start_offset (<start epoch>_<offset>), epoch_offset (either, "
            "told apart by the names), epoch or a regex."
        ),
    ] = None,
    times_csv: Annotated[Path | None, typer.Option(help="Camera recording: frame times from a CSV file,ts.")] = None,
    start: Annotated[
        str | None, typer.Option(help="Camera recording: capture time of the first frame (epoch or ISO-8601).")
    ] = None,
    interval: Annotated[float | None, typer.Option(help="Camera recording: seconds between frames.")] = None,
    thermal: Annotated[bool, typer.Option(help="Camera recording: the frames are thermal.")] = False,
    verdicts: Annotated[
        Path | None,
        typer.Option(
            help="Camera recording: operators' verdicts applied at their times (CSV or JSON Lines: ts, camera, "
            "verdict false_alarm/fire/smoke, optional region 'x y w h' as fractions); the cameras learn from them."
        ),
    ] = None,
) -> None:
    """Replay a recorded or simulated feed through the core (--direct) or into the broker."""
    from engine.ingest.replay_file import ReplayFileError, read_rows

    cfg = load_or_exit(config)
    if file.is_dir() or file.suffix.lower() in {".mp4", ".avi", ".mkv", ".mov"}:
        from engine.ingest.camera_recording import FrameTimes
        from engine.ingest.timestamps import parse_ts_text

        try:
            frame_times = FrameTimes(times, times_csv, parse_ts_text(start) if start else None, interval)
        except (OSError, ValueError) as exc:  # RecordingError, TimestampError
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        _replay_camera(cfg, file, site, camera_id, frame_times, thermal, out, findings, verdicts)
        return
    if verdicts is not None:
        console.print("[red]--verdicts: only a camera recording (an image folder or a video) takes verdicts[/]")
        raise typer.Exit(2)
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
    from engine.runners.replay import replay_readings

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=len(rows))
        done = replay_readings(cfg, rows, batch or None, speed or None, lambda n: progress.advance(task, n))
    events, found, elapsed = done.events, done.findings, done.seconds
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
    cfg: EngineConfig, path: Path, site: str | None, camera: str | None, frame_times: Any, thermal: bool,
    out: Path | None, findings: Path | None, verdicts_file: Path | None = None,
) -> None:  # fmt: skip
    """``replay`` of a camera recording: offline, through the camera stage, events like ``replay --direct``.

    The first line says which site and camera the frames are filed under (what was given, the sub-folders,
    or what was assumed), and, where the names say it, the convention of the frame times and the ignition."""
    from engine.ingest.camera_recording import RecordingError, cameras_in, recorded_frames
    from engine.runners.camera_replay import replay_cameras

    if not cfg.cameras.detectors:
        console.print(f"[red]the config has no camera detectors (cameras.detectors): nothing would look at {path}[/]")
        raise typer.Exit(2)
    assumed = site is None or camera is None
    site = site or "replay"
    camera = camera or (path.stem if path.is_file() else path.resolve().name)
    from engine.ingest.verdict_file import VerdictFileError, read_verdicts

    try:
        found_cameras = cameras_in(path, site, camera)
        frames = recorded_frames(path, site, camera, frame_times)
        verdicts = read_verdicts(verdicts_file, site) if verdicts_file is not None else None
    except (OSError, RecordingError, VerdictFileError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    typer.echo(_replay_camera_header(cfg, path, found_cameras, assumed, frame_times))
    t0 = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"replaying {len(frames)} frames", total=len(frames))
        result = replay_cameras(cfg, frames, thermal, on_batch=lambda n: progress.advance(task, n), verdicts=verdicts)
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
    ignition = frame_times.ignition if frame_times is not None else None
    if ignition is not None:
        firing = [e for e in result.events if e.get("state") == "firing"]
        first = min((e["opened_at"] for e in firing), default=None)
        before = len({e["incident_id"] for e in firing if e["opened_at"] < ignition})
        when = f"{(first - ignition) / 60:+.1f} min from ignition" if first is not None else "none"
        console.print(f"first incident: {when}; incidents opened before ignition: {before}")
    for v in result.verdicts:
        when = datetime.fromtimestamp(v["at"], UTC).isoformat(timespec="seconds") if "at" in v else "?"
        what = f"learned: head v{v.get('version')}" if v.get("learned") else f"not learned: {v.get('reason')}"
        console.print(f"verdict {v.get('verdict')} on {v.get('camera')} at {when}: {what}")
    if result.undecodable:
        console.print(f"[yellow]{len(result.undecodable)} frame(s) could not be decoded and were skipped:[/]")
        for source, reason in result.undecodable:
            console.print(f"  {source}: {reason}")


def _replay_camera_header(
    cfg: EngineConfig, path: Path, cameras: list[tuple[str, str, Path]], assumed: bool, frame_times: Any
) -> str:
    """The first line of a camera replay: where the frames are filed, and how their times were read."""
    from datetime import UTC, datetime

    named = ", ".join(f"site {s!r} camera {c!r}" for s, c, _ in cameras[:4]) + (
        f" and {len(cameras) - 4} more" if len(cameras) > 4 else ""
    )
    if len(cameras) == 1 and cameras[0][2] == path and assumed:
        line = f"{path}: filed under {named} (assumed: give --site and --camera to file it under a configured camera)"
    elif len(cameras) == 1 and cameras[0][2] == path:
        line = f"{path}: filed under {named}"
    else:
        line = f"{path}: {len(cameras)} camera(s) from its <site>/<camera>/ sub-folders: {named}"
    configured = {(c.site, c.id) for c in cfg.cameras.devices}
    unknown = [f"{s}/{c}" for s, c, _ in cameras if (s, c) not in configured]
    if unknown and configured:
        line += f"; not in the config's cameras.devices (defaults apply): {', '.join(unknown[:4])}"
    convention = getattr(frame_times, "convention", "")
    if convention == "capture_ignition":
        line += "; times: <capture epoch>_<seconds from ignition> (FIgLib)"
    elif convention == "start_offset":
        line += "; times: <start epoch>_<offset from the start>"
    elif convention:
        line += f"; times: {convention}"
    ignition = getattr(frame_times, "ignition", None)
    if ignition is not None:
        line += f", ignition at {datetime.fromtimestamp(ignition, UTC).isoformat(timespec='seconds')}"
    return line


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


HEAD_OPTION = typer.Option(
    help="A camera's learned head: its folder data_dir/camera_heads/<site>/<camera> (or heads.json there); the "
    "current version unless --head-version."
)
HEAD_VERSION_OPTION = typer.Option(help="With --head: the version to use (0: the shipped head).")


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
    head: Annotated[Path | None, HEAD_OPTION] = None,
    head_version: Annotated[int | None, HEAD_VERSION_OPTION] = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Write the suggestion into the config file (comments kept, the old file as <file>.bak); "
            "`gridwatch reload` then applies it to a running engine.",
        ),
    ] = False,
) -> None:
    """What would other thresholds have done? Sweep a detector's config against data with known events."""
    need_extra("tune", "matplotlib", "`gridwatch tune` (its plots)")
    from engine.core.levels import LEVEL_NAMES
    from engine.tuning import (
        Constraint,
        Sweep,
        TuneError,
        best_point,
        find_camera_detector,
        find_detector,
        tune_frames,
    )
    from engine.tuning import tune as run_tune

    cfg = load_or_exit(config)
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
        if head is not None and camera_cfg is None:
            raise TuneError("--head: a learned head belongs to a camera detector (smoke_fire_onnx)")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"scoring {n_points + 1} configs", total=n_points + 1)
            done = lambda: progress.advance(task)  # noqa: E731
            if camera_cfg is not None:
                current, points = tune_frames(cfg, data, truth, detector, sweeps, workers, done, head, head_version)
            else:
                current, points = run_tune(cfg, data, truth, detector, sweeps, workers, done)
    except (TuneError, OSError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    from engine.tune_report import write_report

    names = " + ".join(d.name for d in data)
    best = best_point(points, level, constraint)
    camera = camera_cfg is not None
    per_camera = camera and len(data) > 1
    write_report(console, out, detector, names, level, sweeps, current, points, best, det_cfg, camera, per_camera)
    if apply and best is not None:
        from engine.config.patch import PatchError, apply_detector_settings
        from engine.tuning import suggested_changes

        changes = suggested_changes(det_cfg, best)
        if not changes:
            typer.echo(f"the suggestion is the current config: {config} unchanged")
            return
        try:
            diff = apply_detector_settings(config, det_cfg.name, changes, camera=camera)
        except PatchError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        typer.echo(diff)
        typer.echo(
            f"applied to {config} (the old file: {config.name}.bak); `gridwatch reload` applies it to a running engine"
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
    head: Annotated[Path | None, HEAD_OPTION] = None,
    head_version: Annotated[int | None, HEAD_VERSION_OPTION] = None,
) -> None:
    """What one camera detector thinks of each frame, by the one alarm rule: source, class, score, the alarm
    threshold, alarm (1/0), level and region. Each frame alone (no confirmation, no scene memory).
    Files that do not decode are listed at the end; the others are scored. With --head: a camera's
    learned head (what its operators' verdicts taught it) instead of the shipped one."""
    import csv

    from detectors.vision.base import FrameBatch, frame_registry
    from engine.ingest.frames import FrameError, read_frames

    cfg = load_or_exit(config) if config.exists() else EngineConfig()
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
    if head is not None:
        from engine.flow.camera_learning import use_head_file

        try:
            use_head_file(det, head, head_version)
        except ValueError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
    state = det.new_state()
    writer = None if as_json else csv.writer(sys.stdout)
    if writer is not None:
        writer.writerow(["source", "class", "score", "threshold", "alarm", "level", "region"])
    failed: list[tuple[Path, FrameError]] = []
    frames = read_frames(
        paths, thermal=thermal or det.modality == "thermal", gain=gain, offset=offset,
        on_error=lambda p, e: failed.append((p, e)),
    )  # fmt: skip
    is_thermal = thermal or det.modality == "thermal"
    for frame in frames:
        if is_thermal and Path(frame.source).is_file():  # raw counts are counts, as the engine's intake says
            from engine.config.models import CameraConfig
            from engine.ingest.thermal_units import frame_units

            cam = CameraConfig(site="score", id="score", kind="thermal", gain=gain, offset=offset)
            frame.units = frame_units(Path(frame.source).read_bytes()[:65536], cam)[0]
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
                           "alarm": bool(level), "level": level.label if level else None, "region": region,
                           **alarm_region(obs, label, bool(level))}  # fmt: skip
                    sys.stdout.write(orjson.dumps(row).decode() + "\n")
    if failed:
        console.print(f"[yellow]{len(failed)} file(s) could not be decoded and were skipped:[/]")
        for path, err in failed:
            console.print(f"  {path}: {err}")


def alarm_region(obs: Any, label: str, alarm: bool) -> dict[str, Any]:
    """Where the alarm is (``score --json``): the box around the evidence of ``label`` as fractions of the frame
    (``alarm_region``: x, y, w, h) and in pixels (``alarm_region_px``), its tiles and cells (``alarm_cells``:
    one box each, fractions), and any detector detail; nulls where the frame does not alarm."""
    from detectors.vision.base import union_box

    boxes = obs.detail.get("alarm_cells", {}).get(label) or obs.regions.get(label, [])
    box = union_box(boxes) if alarm else None
    h, w = obs.frame.image.shape[:2]
    return {
        "alarm_region": [round(v, 4) for v in box] if box else None,
        "alarm_region_px": [round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)]
        if box
        else None,
        "alarm_cells": [[round(v, 4) for v in b] for b in boxes] if box else [],
        "detail": {k: v for k, v in obs.detail.items() if k != "alarm_cells"},
    }


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
    from engine.ingest.mqtt_client import MqttClient

    topic = f"{prefix}/{'thermal' if thermal else 'cameras'}/{site}/{camera_id}"
    rejected: list[dict[str, Any]] = []

    def dead_letter(_topic: str, payload: bytes, _props: dict[str, str]) -> None:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict) and doc.get("topic") == topic:
            rejected.append(doc)

    cfg = MqttConfig(url=_broker_url(broker))
    watcher = MqttClient(
        cfg, dead_letter, [f"{prefix}/deadletter/#"], client_id=f"gw-cam-dl-{time.time_ns()}", clean=True
    )
    _connected(watcher, broker, "frames")
    client = MqttClient(cfg, client_id=f"gridwatch-camera-{time.time_ns()}", clean=True, track=True)
    _connected(client, broker, "frames")
    n = 0
    try:
        with Progress(console=console) as progress:
            task = progress.add_task(f"publishing {source} to {topic}", total=frames)
            for t, payload in feed:
                if realtime:
                    time.sleep(max(0.0, start + t - time.time()))
                if not client.connected.is_set():
                    raise ConnectionError(topic)
                client.publish(topic, payload, qos=1, user_properties={"ts": f"{start + t:.3f}"})
                n += 1
                progress.update(task, completed=n)
    except (ConnectionError, OSError, RuntimeError):
        watcher.stop()
        _broker_lost(client, broker, n, "frames")
    if not client.flush():
        client.stop()
        watcher.stop()
        console.print(f"[red]the broker {broker} did not acknowledge all {n} frames in time; some may be lost[/]")
        raise typer.Exit(1)
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
