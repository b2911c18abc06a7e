"""Apply a detector's suggested settings to a config file in place, keeping its comments and layout.

``gridwatch tune --apply`` writes its suggestion into the detector's entry (found by ``id``, or by ``type``
where the entry has no id) with ruamel.yaml's round trip, so the operator's comments, order and quoting
stay. The result must load (``load_config``) before it replaces the file; the file it replaces is kept
beside it as ``<name>.bak``, and the change is returned as a unified diff.
"""

from __future__ import annotations

import difflib
import io
from pathlib import Path
from typing import Any


class PatchError(ValueError):
    """The suggestion cannot be applied (no such detector in the file, or the result does not load)."""


def _merge(node: Any, changes: dict[str, Any]) -> None:
    """Set ``changes`` into the mapping ``node``; nested mappings merge key by key (their comments stay)."""
    for key, value in changes.items():
        current = node.get(key)
        if isinstance(value, dict) and hasattr(current, "items"):
            _merge(current, value)
        else:
            node[key] = value


def apply_detector_settings(path: Path, detector_id: str, changes: dict[str, Any], camera: bool = False) -> str:
    """Write ``changes`` into the detector ``detector_id`` of the config file ``path``; returns the diff.

    Raises ``PatchError`` when the file has no such detector in ``detectors`` (``cameras.detectors`` for a
    camera detector) or when the changed file would not load; the file is then left as it was.
    """
    from ruamel.yaml import YAML

    from engine.config.loader import ConfigError, load_config

    yaml = YAML()  # round trip: comments, order and quoting stay
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the shipped config's layout: "  - type: ..." under a key
    yaml.width = 4096  # never fold a long line
    before = path.read_text(encoding="utf-8")
    doc = yaml.load(before)
    section = (doc.get("cameras") or {}).get("detectors") if camera else doc.get("detectors")
    where = "cameras.detectors" if camera else "detectors"
    entries = [e for e in section or [] if hasattr(e, "get")]
    entry = next((e for e in entries if e.get("id") == detector_id), None)
    if entry is None:
        entry = next((e for e in entries if e.get("id") is None and e.get("type") == detector_id), None)
    if entry is None:
        raise PatchError(f"{path}: no detector with id {detector_id!r} under {where}; apply the suggestion by hand")
    _merge(entry, changes)
    out = io.StringIO()
    yaml.dump(doc, out)
    after = out.getvalue()
    backup = path.with_name(path.name + ".bak")
    backup.write_text(before, encoding="utf-8")
    path.write_text(after, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        path.write_text(before, encoding="utf-8")
        backup.unlink()
        raise PatchError(f"{path}: the suggestion would not load, left as it was:\n{exc}") from None
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), str(backup.name), str(path.name)
        )
    )
