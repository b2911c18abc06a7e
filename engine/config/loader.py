"""Load a YAML config: ``${ENV_VAR}`` substitution, validation, and errors that name file, line and field.

The YAML is read strictly: a key given twice, an alias (``*name``: what a "billion laughs" file expands
without end) and an empty file are errors. ``${ENV_VAR}`` is substituted into the parsed values, never into
the YAML text, so a variable's value stays one value (it cannot add keys, tokens or list items).
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from engine.config.models import EngineConfig, current_detector_types

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file."""

    file: str
    line: int | None
    field: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.field or '(top level)'}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class ConfigError(Exception):
    """A config that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def substitute_env(text: str, file: str, env: typing.Mapping[str, str] | None = None) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}``; a missing variable without default is an error.

    >>> substitute_env("port: ${P:-1883}", "x.yaml", {})
    'port: 1883'
    """
    env = os.environ if env is None else env
    issues: list[ConfigIssue] = []
    out_lines = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.lstrip().startswith("#"):
            out_lines.append(line)
            continue

        def repl(m: re.Match[str], lineno: int = lineno) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            issues.append(
                ConfigIssue(
                    file,
                    lineno,
                    "",
                    f"environment variable {name} is not set",
                    f"export {name}=… or write ${{{name}:-default}}",
                )
            )
            return ""

        out_lines.append(_ENV.sub(repl, line))
    if issues:
        raise ConfigError(issues)
    return "".join(out_lines)


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and aliases."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a config: write the value out", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"the key {key!r} is given twice (first on line {seen[key].line + 1}): keep one",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _substitute_values(data: Any, file: str, lines: dict[tuple[Any, ...], int]) -> Any:
    """``${NAME}`` / ``${NAME:-default}`` in every string value of the parsed config (see ``substitute_env``);
    every missing variable is reported, with its line and field."""
    issues: list[ConfigIssue] = []

    def walk(value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            try:
                return substitute_env(value, file)
            except ConfigError as exc:
                field = ".".join(str(p) for p in path)
                issues.extend(ConfigIssue(i.file, _line_of(lines, path), field, i.message, i.hint) for i in exc.issues)
        return value

    out = walk(data, ())
    if issues:
        raise ConfigError(issues)
    return out


def _line_of(lines: dict[tuple[Any, ...], int], path: tuple[Any, ...]) -> int | None:
    """The line of ``path`` in the file, or of the nearest key above it that has one."""
    return next((lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines), None)


def _line_map(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Line number (1-based) of every key and item in a composed YAML tree."""
    lines: dict[tuple[Any, ...], int] = {}
    if node is None:
        return lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            lines.update(_line_map(value, sub))
            lines[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, (*path, i)))
    return lines


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc`` (for did-you-mean on unknown keys)."""
    model: Any = EngineConfig
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            fld = model.model_fields.get(str(part))
            if fld is None:
                return None
            model = _unwrap(fld.annotation)
        else:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated or (origin in (list, tuple) and args):
            annotation = args[0]
        elif origin is dict and args:
            annotation = args[1]
        elif args and type(None) in args:
            annotation = next(a for a in args if a is not type(None))
        else:
            return annotation


def _hint(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        if model is not None:
            allowed = list(model.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            mean = f"did you mean {close[0]!r}? " if close else ""
            return f"{mean}allowed here: {', '.join(allowed)}"
        return "remove this key"
    if kind == "missing":
        return "add this field"
    if kind == "union_tag_invalid":
        from detectors.base import registry

        tag = str((err.get("ctx") or {}).get("tag", ""))
        close = difflib.get_close_matches(tag, registry.known(), n=1)
        mean = f"did you mean {close[0]!r}? " if close else ""
        return f"{mean}known types: {', '.join(registry.known())}"
    if kind.endswith("_parsing") or kind.endswith("_type"):
        return f"expected {kind.split('_')[0]}"
    return ""


def _display_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # Discriminated unions add the tag ('threshold', a sink's 'apprise') as a loc element; it is not a key in the file.
    from detectors.base import registry
    from engine.config.models import SinkConfig

    sinks = typing.get_args(typing.get_args(SinkConfig)[0])
    known = set(registry.known()) | {m.model_fields["type"].default for m in sinks}
    out = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and part in known and i > 0 and isinstance(loc[i - 1], int):
            continue
        out.append(part)
    return tuple(out)


def _field_path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_config(text: str, file: str, base_dir: Path | None = None) -> EngineConfig:
    """Validate config text; raises ``ConfigError`` listing every problem."""
    try:
        loader = StrictLoader(text)  # a SafeLoader: plain data only
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            [
                ConfigIssue(
                    file,
                    mark.line + 1 if mark else None,
                    "",
                    f"not valid YAML: {getattr(exc, 'problem', exc)}",
                    "check indentation and quoting on that line",
                )
            ]
        ) from None
    if data is None:
        raise ConfigError(
            [
                ConfigIssue(
                    file, None, "", "the config is empty", "start from config/gridwatch.yaml; `{}` for all defaults"
                )
            ]
        )
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(file, 1, "", "the config must be a mapping", "start with keys like `mqtt:`")])
    lines = _line_map(node)
    data = _substitute_values(data, file, lines)
    try:
        current_detector_types()  # detectors registered after the config models were built count too
        return EngineConfig.model_validate(data, context={"base_dir": base_dir or Path(file).parent})
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = _display_loc(tuple(err["loc"]))
            line = _line_of(lines, loc)
            msg = err["msg"].removeprefix("Value error, ")
            issues.append(ConfigIssue(file, line, _field_path(loc), msg, _hint(dict(err), loc)))
        raise ConfigError(issues) from None


def load_config(path: str | Path) -> EngineConfig:
    """Load and validate a config file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"; _ = p.write_text("mqtt: {prot: 5}\\n")
    >>> try: load_config(p)
    ... except ConfigError as e: print(e.issues[0].field, "|", e.issues[0].hint.split("?")[0])
    mqtt.prot | did you mean 'protocol'
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(str(p), None, "", f"cannot read the file: {exc.strerror}", "check the path")]
        ) from None
    return parse_config(text, str(p), p.parent)
