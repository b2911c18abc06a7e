"""``gridwatch incidents``: list, show and act on incidents through a running engine's API."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
import typer
from rich.console import Console
from rich.table import Table

from engine.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    app,
    load_or_exit,
)

incidents_app = typer.Typer(help="List, show and act on incidents through a running engine's API.")
app.add_typer(incidents_app, name="incidents")
TokenOpt = Annotated[
    str | None,
    typer.Option(envvar="GRIDWATCH_TOKEN", help="API token (api.tokens in the config); or set GRIDWATCH_TOKEN."),
]
UrlOpt = Annotated[str | None, typer.Option(help="The engine's API (default: from the config's api section).")]
stdout = Console(soft_wrap=True)  # what the incidents commands answer
LEVEL_COLOUR = {"blue": "blue", "yellow": "yellow", "orange": "dark_orange", "red": "red"}


def _connect(config: Path, url: str | None, token: str | None, zone: bool = True) -> tuple[Any, tzinfo]:
    """The API client and (with ``zone``) the city's time zone, from one read of the config (UTC without a
    config file when ``url`` is given; without ``url`` the config must load, as it names the API)."""
    from engine.api.client import IncidentsClient

    cfg = load_or_exit(config) if url is None or (zone and config.exists()) else None
    if url is None:
        assert cfg is not None
        url = f"http://{cfg.api.host}:{cfg.api.port}"
    return IncidentsClient(url, token), ZoneInfo(cfg.timezone) if cfg is not None else UTC


def _api_call(fn: Any) -> Any:
    from engine.api.client import ApiError

    try:
        return fn()
    except ApiError as exc:
        stdout.print(f"[red]{exc}[/]")
        raise typer.Exit(1 if exc.status in (0, 404, 409) else 2) from None


def _when(ts: float | None, zone: tzinfo = UTC) -> str:
    """``2026-12-01 23:05 UTC+8``: the time in the city's zone, with its offset."""
    if not ts:
        return "-"
    at = datetime.fromtimestamp(ts, zone)
    offset = at.utcoffset() or timedelta(0)
    hours, rest = divmod(int(offset.total_seconds()), 3600)
    label = "UTC" if not offset else f"UTC{hours:+d}" + (f":{rest // 60:02d}" if rest else "")
    return f"{at:%Y-%m-%d %H:%M} {label}"


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
    client, zone = _connect(config, url, token)
    rows = _api_call(lambda: client.list(state=state, hazard=hazard, site=site, level=level, limit=limit))
    if as_json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table("id", "level", "state", "hazard", "site", "opened", "tier", "acknowledged by", "assigned to")
    for r in rows:
        colour = LEVEL_COLOUR.get(r["level"], "")
        table.add_row(
            r["incident_id"], f"[{colour}]{r['level']}[/]", r["state"], r["hazard"], r["site"],
            _when(r["opened_at"], zone),
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
    client, zone = _connect(config, url, token)
    inc = _api_call(lambda: client.show(incident_id))
    if as_json:
        sys.stdout.write(orjson.dumps(inc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    colour = LEVEL_COLOUR.get(inc["level"], "")
    stdout.print(
        f"[bold]{inc['incident_id']}[/] [{colour}]{inc['level'].upper()}[/] {inc['hazard']} at {inc['site']} - "
        f"{inc['state']}, opened {_when(inc['opened_at'], zone)}, confidence {inc['confidence']}, "
        f"tier {inc.get('tier')}"
    )
    if inc.get("plan"):
        plan = inc["plan"]
        stdout.print(f"Plan: [bold]{plan.get('title')}[/] ({plan.get('role')})")
        for k, step in enumerate(plan.get("steps", []), 1):
            stdout.print(f"  {k}. {step}")
    findings = Table("detector", "device", "time", "level", "score", title="Findings")
    for f in inc["findings"]:
        findings.add_row(f["detector"], f["device"], _when(f["ts"], zone), f["level"], f"{f['score']:.3g}")
    stdout.print(findings)
    audit = Table("time", "actor", "action", "receivers", "note", title="Audit trail")
    for a in inc["audit"]:
        d = a["detail"]
        note = d.get("comment") or (f"silenced by {d['silenced_by']}" if d.get("silenced_by") else "")
        note = note or (f"inhibited by {d['inhibited_by']}" if d.get("inhibited_by") else "")
        note = note or d.get("note") or ""  # a people-facing sink's delivery: sent, held, failed
        audit.add_row(_when(a["at"], zone), a["actor"], a["action"], ", ".join(d.get("receivers") or []), note)
    stdout.print(audit)


def _act(incident_id: str, action: str, body: dict[str, Any], config: Path, url: str | None, token: str | None) -> None:
    client, _zone = _connect(config, url, token, zone=False)
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
