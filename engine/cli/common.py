"""What every ``gridwatch`` command shares: the Typer app, config loading, logging and optional parts."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from engine.config.loader import ConfigError, load_config
from engine.config.models import EngineConfig
from engine.core.allocator import tune_allocator

app = typer.Typer(help="gridwatch: hazard monitoring alert engine.", no_args_is_help=True, add_completion=False)


@app.callback()
def _startup() -> None:
    """gridwatch: hazard monitoring alert engine."""
    tune_allocator()


console = Console(stderr=True)
logger = logging.getLogger("gridwatch")

DEFAULT_CONFIG = Path("config/gridwatch.yaml")
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Config file (YAML).")]


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(message)s", handlers=[RichHandler(console=console, show_path=False)]
    )
    # httpx logs every request's URL at INFO: a webhook's URL carries its key (the sinks log it redacted).
    # Apprise says "Notifying 1 service(s)" and "Sent Email to …" at INFO for every message: the Apprise sink
    # logs what counts (held, summarised, failed) and the audit trail has every message.
    for chatty in ("httpx", "httpcore", "apprise"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))


def load_or_exit(path: Path) -> EngineConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[bold red]config error[/] ({len(exc.issues)} problem{'s' if len(exc.issues) > 1 else ''}):")
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        raise typer.Exit(2) from None


def need_extra(extra: str, module: str, feature: str) -> None:
    """Stop with the install command when an optional part is missing."""
    from engine.extras import MissingExtraError, require

    try:
        require(extra, module, feature)
    except MissingExtraError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def need_store_extra(cfg: EngineConfig) -> None:
    if cfg.store_url().startswith("postgresql"):
        need_extra("postgres", "psycopg", "a PostgreSQL store")


def need_cameras_extra(cfg: EngineConfig) -> None:
    """Camera detectors in the config need OpenCV and (for the model) onnxruntime: the ``cameras`` extra."""
    enabled = [d for d in cfg.cameras.detectors if d.enabled]
    if enabled:
        need_extra("cameras", "cv2", "the camera detectors of the config (cameras.detectors)")
    if any(d.type == "smoke_fire_onnx" for d in enabled):
        need_extra("cameras", "onnxruntime", "the smoke and fire model (smoke_fire_onnx)")
    pulled = [f"{c.site}/{c.id}" for c in cfg.cameras.devices if c.source is not None]
    if pulled:
        need_extra("cameras", "cv2", f"pulling cameras' streams (cameras.devices[].source of {', '.join(pulled[:3])})")


def need_notify_extra(cfg: EngineConfig) -> None:
    """An Apprise sink (SMS, e-mail, chat) in the config needs Apprise: the ``notify`` extra."""
    named = [f"sinks[{i}]" for i, s in enumerate(cfg.sinks) if s.type == "apprise"]
    if named:
        need_extra("notify", "apprise", f"the people-facing sink of the config ({', '.join(named)}: type apprise)")


def check_receivers(cfg: EngineConfig, warn: bool = True) -> None:
    """Every Apprise receiver's URL is one Apprise can use (stop naming the receiver, never the URL), and
    (``warn``) a warning for each receiver that names no part of the config (a running engine logs those)."""
    from engine.config.notify import AppriseSinkConfig
    from engine.dispatch.apprise_sink import build_receivers, receiver_warnings

    for i, s in enumerate(cfg.sinks):
        if isinstance(s, AppriseSinkConfig):
            try:
                build_receivers(s, f"sinks[{i}]")
            except (ValueError, OSError) as exc:
                typer.echo(f"config error: {exc}", err=True)
                raise typer.Exit(2) from None
    for warning in receiver_warnings(cfg) if warn else []:
        print(f"warning: {warning}")


def need_extras_for(cfg: EngineConfig) -> None:
    """The optional parts a config needs to run locally: the embedded broker, a PostgreSQL store, cameras, Apprise."""
    if cfg.mqtt.url == "embedded":
        need_extra("demo", "amqtt", "the embedded MQTT broker (mqtt.url: embedded)")
    need_store_extra(cfg)
    need_cameras_extra(cfg)
    need_notify_extra(cfg)


def install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
