"""Builds the core (detectors, incident tracker, routes) and the sinks from a config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectors.base import Detector, registry
from detectors.fusion import SiteFusion
from engine.config.models import ConsoleSinkConfig, EngineConfig, LogSinkConfig, MqttSinkConfig, WebhookSinkConfig
from engine.config.notify import AppriseSinkConfig
from engine.core.devices import DeviceIndex
from engine.dispatch.routing import Router
from engine.dispatch.sinks import ConsoleSink, LogSink, MqttSink, Sink, SinkSet, WebhookSink
from engine.flow.pipeline import Pipeline
from engine.incidents.tracker import IncidentTracker

if TYPE_CHECKING:
    from engine.store.store import Store


def build_pipeline(cfg: EngineConfig, devices: DeviceIndex | None = None) -> Pipeline:
    devices = devices or DeviceIndex()
    for site in cfg.sites:  # configured devices get the first slots, in config order
        for dev in site.devices:
            slot = devices.slot(site.id, dev.id)
            if dev.expected_interval_s is not None:  # device_health judges silence by it
                devices.set_expected_interval(slot, dev.expected_interval_s)
    router = Router(cfg)
    tracker = IncidentTracker(cfg.incidents, route_of=router.route, plan_of=router.plan)
    detectors = [registry.build(d) for d in cfg.detectors if d.enabled]
    return Pipeline(detectors, tracker, devices, SiteFusion(cfg.fusion))


def cadence_warnings(cfg: EngineConfig, detectors: list[Detector[Any]]) -> list[str]:
    """Devices whose reporting interval (``expected_interval_s``) a detector watching them cannot judge."""
    out = []
    for site in cfg.sites:
        for dev in site.devices:
            if dev.expected_interval_s is None:
                continue
            for det in detectors:
                if not set(det.metrics) & set(dev.metrics):
                    continue
                problem = det.cadence_problem(dev.expected_interval_s)
                if problem:
                    out.append(f"{site.id}/{dev.id} reports every {dev.expected_interval_s:g} s; {det.name}: {problem}")
    return out


def build_sinks(
    cfg: EngineConfig,
    publish: Callable[..., object] | None = None,
    log_path: Path | None = None,
    extra: list[Sink] | None = None,
    store: Store | None = None,
) -> SinkSet:
    """The configured sinks; a people-facing one (Apprise) needs the ``store`` (what each receiver got)."""
    sinks: list[Sink] = []
    for i, s in enumerate(cfg.sinks):
        if isinstance(s, LogSinkConfig):
            sinks.append(LogSink(s, log_path))
        elif isinstance(s, MqttSinkConfig):
            if publish is not None:
                sinks.append(MqttSink(s, publish, cfg.mqtt.topic_prefix))
        elif isinstance(s, ConsoleSinkConfig):
            sinks.append(ConsoleSink(s))
        elif isinstance(s, WebhookSinkConfig):
            sinks.append(WebhookSink(s))
        elif isinstance(s, AppriseSinkConfig) and store is not None:
            from engine.dispatch.apprise_sink import AppriseSink  # the `notify` extra, only when configured

            sinks.append(AppriseSink(s, store, cfg, where=f"sinks[{i}]"))
    sinks.extend(extra or [])
    return SinkSet(sinks)


def describe(cfg: EngineConfig) -> dict[str, Any]:
    return {
        "sites": len(cfg.sites),
        "devices": sum(len(s.devices) for s in cfg.sites),
        "detectors": [d.name for d in cfg.detectors if d.enabled],
        "cameras": len(cfg.cameras.devices),
        "camera_detectors": [d.name for d in cfg.cameras.detectors if d.enabled],
    }
