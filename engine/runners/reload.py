"""Applying a changed config to a running engine (SIGHUP, ``gridwatch reload``) without a restart.

The new file is validated first; an invalid one is refused and the running config stays. Detectors keep
their per-device state wherever their state layout did not change (a threshold moved, say), so a reload
does not forget 72 hours of rain. Open incidents stay open. What cannot change live (the broker, the API,
ingest and sinks) is reported as needing a restart.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from detectors.base import Detector, DeviceState, registry
from engine.config.loader import ConfigError, load_config
from engine.config.models import EngineConfig
from engine.dispatch.routing import Router
from engine.flow.pipeline import Pipeline

logger = logging.getLogger(__name__)

LIVE_SECTIONS = frozenset(
    {
        "detectors", "incidents", "plans", "sites", "sites_file", "devices_file", "city", "fusion", "routing",
        "silences", "inhibit",
    }
)  # fmt: skip


@dataclass
class ReloadResult:
    """What a reload did: ``ok`` false means the new file was refused and nothing changed."""

    ok: bool
    changes: list[str] = field(default_factory=list)
    kept_state: list[str] = field(default_factory=list)
    reset_state: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


SECRET_FIELDS = frozenset({"password", "secret", "token", "tls_key_file"})
# URL schemes whose secrets sit only in the user part (or nowhere): any other URL (an Apprise sink's receiver:
# tgram://, mailto://, json://…) is masked whole.
PLAIN_SCHEMES = frozenset({
    "http", "https", "mqtt", "mqtts", "tcp", "ws", "wss", "kafka", "rtsp", "rtsps", "onvif", "sqlite",
    "postgresql", "postgresql+psycopg", "postgres",
})  # fmt: skip


def masked(key: str, value: Any) -> Any:
    """A config value as a reload may log, return and print it: secrets masked, webhook URLs without keys,
    Apprise URLs whole.

    >>> masked("token", "s3cr3t-0123456789"), masked("url", "https://h.example/hook/K3Y?sig=1"), masked("port", 80)
    ('•••', 'https://h.example/…', 80)
    >>> masked("api", {"tokens": [{"name": "ops", "token": "s3cr3t-0123456789"}]})
    {'tokens': [{'name': 'ops', 'token': '•••'}]}
    >>> masked("url", "tgram://123456789:AAHdqTcv/12315544/"), masked("url", "mqtt://broker.example:1883")
    ('tgram://•••', 'mqtt://broker.example:1883')
    """
    if isinstance(value, dict):
        return {k: masked(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(key, v) for v in value]
    if key in SECRET_FIELDS and value is not None:
        return "•••"
    if key == "url" and isinstance(value, str) and value.startswith(("http://", "https://")):
        from engine.dispatch.sinks import redact_url

        return redact_url(value)
    scheme = value.split("://", 1)[0].lower() if isinstance(value, str) and "://" in value else None
    if key == "url" and scheme is not None and scheme not in PLAIN_SCHEMES:  # an Apprise URL: keys anywhere in it
        return f"{scheme}://•••"
    if key.endswith("url") and isinstance(value, str) and scheme is not None and "?" in value:
        value = _query_masked(value)  # a camera's rtsp://cam/live?user=admin&pwd=…, a store's ?password=…
    if key.endswith("url") and isinstance(value, str) and "@" in value:
        return _without_password(value)
    return value


def _query_masked(url: str) -> str:
    """A URL's query values masked (cameras take their user and password there too).

    >>> _query_masked("rtsp://10.0.0.5:554/live?channel=1&pwd=s3cr3t&x")
    'rtsp://10.0.0.5:554/live?channel=•••&pwd=•••&x'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "•••"
    query = "&".join(f"{kv.split('=', 1)[0]}=•••" if "=" in kv else kv for kv in parts.query.split("&"))
    return urlunsplit(parts._replace(query=query))


def _without_password(url: str) -> str:
    """A URL's password masked (a store's or a broker's URL).

    >>> _without_password("postgresql+psycopg://gridwatch:s3cr3t@db.example:5432/gw")
    'postgresql+psycopg://gridwatch:•••@db.example:5432/gw'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:•••@{host}"))


def _name(old: Any, new: Any, index: int) -> str:
    """How a list item is named in a diff: its ``id`` (or ``name``, ``type``) when it has one, else its index."""
    for item in (new, old):
        if isinstance(item, dict):
            for key in ("id", "name", "type"):
                if item.get(key):
                    return str(item[key])
    return str(index)


def config_diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Every leaf that differs, as ``path: old -> new``, secrets masked (``masked``).

    >>> config_diff({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 2, "c": [1, 2]}})
    ['a.b: 1 -> 2']
    >>> config_diff({"mqtt": {"password": "old-pass"}}, {"mqtt": {"password": "new-pass"}})
    ["mqtt.password: '•••' -> '•••'"]
    >>> old, new = [{"id": "rain-total", "bin_s": 3600}], [{"id": "rain-total", "bin_s": 600}]
    >>> config_diff({"detectors": old}, {"detectors": new})
    ['detectors[rain-total].bin_s: 3600 -> 600']
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub}: added {masked(str(key), new[key])!r}")
            elif key not in new:
                out.append(f"{sub}: removed")
            else:
                out.extend(config_diff(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in config_diff(a, b, f"{path}[{_name(a, b, i)}]")
        ]
    key = path.rsplit(".", 1)[-1]
    return [] if old == new else [f"{path}: {masked(key, old)!r} -> {masked(key, new)!r}"]


# Config fields that tune a detector's decisions without changing what its state means: changing only these
# keeps its state on reload. Anything else (metrics, rules, windows, bin_s, …) can give the same arrays
# another meaning (a reordered metric list, a rain window of other bins), so the state starts afresh.
TUNING_FIELDS = frozenset({
    "id", "enabled", "hazard", "levels", "velocity_levels", "angle_levels", "rise_per_h", "clear",
    "clear_rise_per_h", "clear_fraction", "silence_factor", "min_silence_s", "stuck_count", "flood_factor",
    "accept_after", "max_lag_s", "confirm_k", "confirm_n", "min_overlap", "max_region_frac",
    "large_region_factor", "clear_score", "thresholds", "min_rise", "angle_min_velocity_per_day",
})  # fmt: skip


def _tuning(field: str) -> bool:
    return field in TUNING_FIELDS or field.endswith("_levels") or field.startswith(("min_", "max_"))


def state_meaning(config: Any) -> dict[str, Any]:
    """What a detector's state means: its config without the tuning fields (levels, thresholds, min_/max_
    knobs, confirmation), which change decisions but not what the state arrays hold."""
    dumped: dict[str, Any] = config.model_dump(mode="json")
    return {k: v for k, v in dumped.items() if not _tuning(k)}


def _layout(det: Detector[Any]) -> dict[str, tuple[str, str, tuple[int, ...], bool]]:
    return {n: (str(s.dtype), repr(s.fill), s.shape, s.per_device) for n, s in det.state_spec().items()}


def apply_config(pipeline: Pipeline, old: EngineConfig, new: EngineConfig) -> ReloadResult:
    """Swap detectors, incident policy and routes of a running pipeline to ``new`` (between batches)."""
    result = ReloadResult(ok=True)
    old_json, new_json = old.model_dump(mode="json"), new.model_dump(mode="json")
    result.changes = config_diff(old_json, new_json)
    result.needs_restart = sorted({re.split(r"[.:\[]", c, maxsplit=1)[0] for c in result.changes} - LIVE_SECTIONS)
    by_name = {d.name: (d, s) for d, s in zip(pipeline.detectors, pipeline.states, strict=True)}
    detectors: list[Detector[Any]] = []
    states: list[DeviceState] = []
    for cfg in new.detectors:
        if not cfg.enabled:
            continue
        det = registry.build(cfg)
        previous = by_name.get(det.name)
        if (
            previous is not None
            and type(previous[0]) is type(det)
            and _layout(previous[0]) == _layout(det)
            and state_meaning(previous[0].config) == state_meaning(det.config)
        ):
            states.append(previous[1])
            result.kept_state.append(det.name)
        else:
            states.append(det.new_state())
            if previous is not None:
                result.reset_state.append(det.name)
        detectors.append(det)
    pipeline.replace_detectors(detectors, states)
    for site in new.sites:
        for dev in site.devices:
            pipeline.devices.slot(site.id, dev.id)
    router = Router(new)
    tracker = pipeline.tracker
    tracker.set_policy(new.incidents)
    tracker.set_routes(router.route, router.plan)
    if new.fusion != old.fusion:
        pipeline.fusion.rules = list(new.fusion)
    return result


def reload_from(pipeline: Pipeline, running: EngineConfig, path: Path) -> tuple[EngineConfig, ReloadResult]:
    """Validate ``path`` and apply it; on any error keep ``running`` and say why."""
    try:
        new = load_config(path)
    except ConfigError as exc:
        logger.error("reload refused, keeping the running config: %s", exc)
        return running, ReloadResult(ok=False, error=str(exc))
    except OSError as exc:
        logger.error("reload refused, cannot read %s: %s", path, exc)
        return running, ReloadResult(ok=False, error=f"cannot read {path}: {exc}")
    result = apply_config(pipeline, running, new)
    if result.changes:
        logger.info("config reloaded from %s: %s", path, "; ".join(result.changes))
    else:
        logger.info("config reloaded from %s: no changes", path)
    if result.reset_state:
        logger.warning("detectors whose state layout changed start afresh: %s", ", ".join(result.reset_state))
    if result.needs_restart:
        logger.warning("changes to %s take effect only after a restart", ", ".join(result.needs_restart))
    return new, result
