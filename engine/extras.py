"""Optional parts of gridwatch (``pip install 'gridwatch[kafka]'``): a clear stop when one is missing."""

from __future__ import annotations

import importlib.util


class MissingExtraError(RuntimeError):
    """A feature needs an optional part that is not installed."""


def require(extra: str, module: str, feature: str) -> None:
    """Stop with the install command when ``module`` (of the ``extra``) is missing.

    >>> require("kafka", "json", "the scale-out runner")
    >>> require("kafka", "no_such_module_here", "the scale-out runner")
    Traceback (most recent call last):
    ...
    engine.extras.MissingExtraError: the scale-out runner needs the `kafka` extra: pip install 'gridwatch[kafka]'
    """
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f"{feature} needs the `{extra}` extra: pip install 'gridwatch[{extra}]'")
