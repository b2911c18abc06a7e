"""The ``gridwatch`` command line: one Typer app, its commands in the modules beside this one.

- ``common``: the app, config loading, logging and the optional-parts check every command shares;
- ``engine_commands``: run, bridge, pull-cameras, worker, reload, check-config, bench, demo;
- ``tools``: simulate, replay, tune, score, camera;
- ``incidents``: the incidents client (list, show, ack, assign, resolve, dispatch).
"""

from __future__ import annotations

from engine.cli import engine_commands, incidents, tools  # noqa: F401 (each module registers its commands)
from engine.cli.common import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    app()
