"""Sinks: where incident events go (JSON Lines log, MQTT alerts topic, console)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import orjson
from rich.console import Console

from engine import metrics
from engine.config.models import ConsoleSinkConfig, LogSinkConfig, MqttSinkConfig
from engine.ingest.topics import alert_topic

logger = logging.getLogger(__name__)

LEVEL_STYLE = {"blue": "bold blue", "yellow": "bold yellow", "orange": "bold dark_orange", "red": "bold red"}


class Sink(Protocol):
    name: str

    def send(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class LogSink:
    """Appends each event as one JSON line, flushed at once so a crash loses nothing already sent."""

    name = "log"

    def __init__(self, cfg: LogSinkConfig, path: Path | None = None) -> None:
        self.path = path or Path(cfg.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab")

    def send(self, event: dict[str, Any]) -> None:
        self._fh.write(orjson.dumps(event) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class MqttSink:
    """Publishes each event to ``<prefix>/alerts/<site>/<hazard>``."""

    name = "mqtt"

    def __init__(self, cfg: MqttSinkConfig, publish: Any, prefix: str) -> None:
        self.cfg = cfg
        self._publish = publish
        self.prefix = prefix

    def send(self, event: dict[str, Any]) -> None:
        topic = alert_topic(self.prefix, event["site"], event["hazard"])
        self._publish(topic, orjson.dumps(event), retain=self.cfg.retain)

    def close(self) -> None:
        pass


class ConsoleSink:
    """Prints one coloured line per event."""

    name = "console"

    def __init__(self, _cfg: ConsoleSinkConfig, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def send(self, event: dict[str, Any]) -> None:
        style = LEVEL_STYLE.get(event["level"], "")
        self.console.print(
            f"[{style}]{event['level'].upper():6}[/] {event['state']:9} {event['hazard']:12} site={event['site']} "
            f"findings={len(event['findings'])} id={event['incident_id']}"
        )

    def close(self) -> None:
        pass


class SinkSet:
    """Hands every event to every sink; one sink failing does not stop the others."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def send(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            metrics.INCIDENT_EVENTS.labels(event["hazard"], event["level"], event["state"]).inc()
            for sink in self.sinks:
                try:
                    sink.send(event)
                except Exception:
                    metrics.SINK_ERRORS.labels(sink.name).inc()
                    logger.exception("sink %s failed on incident %s", sink.name, event["incident_id"])

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
