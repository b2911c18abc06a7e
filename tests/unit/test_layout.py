"""The layering the README's code map promises: ``engine/core`` is the leaf everything builds on."""

from __future__ import annotations

import ast

from tests.conftest import ROOT


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_engine_core_imports_nothing_else_of_the_project():
    ours = ("engine", "detectors", "simulators", "models")
    offending = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "engine" / "core").glob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in ours and not module.startswith("engine.core")
    }
    assert not offending, offending
    assert imported_modules(ROOT / "engine" / "flow" / "pipeline.py") & {"engine.core.batch", "engine.core.findings"}
