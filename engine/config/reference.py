"""The config's JSON Schema and its Markdown reference, both generated from the pydantic models."""

from __future__ import annotations

import typing
from typing import Any

import orjson
from pydantic import BaseModel

from engine.config.models import EngineConfig


def json_schema() -> str:
    return (
        orjson.dumps(EngineConfig.model_json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        + "\n"
    )


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if typing.get_origin(annotation) is None else None
    return text or str(annotation).replace("typing.", "")


def markdown_reference() -> str:
    """Every section and field with its type, default and description."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models by `make schema` (`gridwatch check-config --reference`); do not edit.",
        "The JSON Schema is `config/schema.json`.",
        "`${ENV_VAR}` and `${ENV_VAR:-default}` are substituted before parsing.",
        "",
    ]
    seen: set[type[BaseModel]] = set()
    queue: list[tuple[str, type[BaseModel]]] = [("(top level)", EngineConfig)]
    while queue:
        path, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        lines += [
            f"## `{path}` — {model.__name__}",
            "",
            doc,
            "",
            "| field | type | default | description |",
            "|---|---|---|---|",
        ]
        for name, fld in model.model_fields.items():
            default = (
                "required" if fld.is_required() else ("…" if fld.default_factory is not None else f"`{fld.default!r}`")
            )
            desc = (fld.description or "").replace("|", "\\|")
            typ = _type_name(fld.annotation).replace("|", "\\|")
            lines.append(f"| `{name}` | {typ[:60]} | {default} | {desc} |")
            for sub in _models_in(fld.annotation):
                queue.append((f"{path}.{name}" if path != "(top level)" else name, sub))
        lines.append("")
    return "\n".join(lines)
