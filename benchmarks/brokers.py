"""The benchmarks' own Mosquitto, started as the tests start theirs (tests/conftest.py), in a folder of its own."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from tests.conftest import Mosquitto, _mosquitto_binary


@contextmanager
def mosquitto_broker(console: Console) -> Iterator[Mosquitto]:
    """A running Mosquitto on a free port, stopped at the end; exit 2 with the fix where it is not installed."""
    binary = _mosquitto_binary()
    if binary is None:
        console.print("[red]mosquitto is not installed: run `make test` once (it installs Debian's package)[/]")
        raise SystemExit(2)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(binary, Path(tmp))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
