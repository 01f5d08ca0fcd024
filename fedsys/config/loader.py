"""Load a run configuration from YAML/TOML and turn validation errors into plain sentences."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from fedsys.config.schema import RunConfig


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message names every bad key."""


class StrictYamlLoader(yaml.SafeLoader):
    """YAML without duplicate keys, anchors or aliases.

    A duplicate key silently keeps the last value in plain YAML, hiding a typo; a
    config needs no anchors or aliases, and expanding aliases is a memory bomb
    ("billion laughs"), so both are refused.
    """

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "anchors and aliases (&name, *name) are not allowed in a fedsys file",
                event.start_mark,
            )
        return super().compose_node(parent, index)  # type: ignore[no-any-return]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """Parse YAML with :class:`StrictYamlLoader`.

    Raises
    ------
    yaml.YAMLError
        On a syntax error, a duplicate key, an anchor or an alias.
    """
    return yaml.load(text, Loader=StrictYamlLoader)  # a SafeLoader: builds plain values only


MAX_FILE_BYTES = 4 * 1024 * 1024
"""Largest YAML/TOML file read (a run config or a ``sites.yaml`` is a few kilobytes)."""


def read_text_file(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a file a user or a peer named, at most ``max_bytes`` long.

    Raises
    ------
    ConfigError
        One line naming ``what`` and the file: missing, a folder, too large, unreadable
        or not UTF-8.
    """
    file = Path(path)
    if not file.is_file():
        state = "is a folder, not a file" if file.is_dir() else "not found"
        raise ConfigError(f"{what} {file} {state}")
    try:
        with open(file, "rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {file}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{what} {file} is larger than {max_bytes // 1024} KiB: refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {file} is not UTF-8 text") from None


def load_yaml_file(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """A YAML file a user or a peer named, read with :class:`StrictYamlLoader`.

    No anchors or aliases (an alias bomb is refused before anything is expanded), no
    duplicate keys, at most ``max_bytes``.

    Raises
    ------
    ConfigError
        One line naming ``what``, the file and the problem.
    """
    text = read_text_file(path, what, max_bytes)
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {what} {path}: {parse_problem(exc)}") from None


def parse_problem(exc: Exception) -> str:
    """A YAML or TOML error on one line, without PyYAML's ``in "<unicode string>"``."""
    return " ".join(str(exc).replace(' in "<unicode string>",', " at").split())


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read, merge ``overrides`` (dotted keys) into, and validate a config file.

    Raises
    ------
    ConfigError
        If the file is missing, unparsable, or any key or value is invalid.
    """
    file = Path(path)
    text = read_text_file(file, "config file")
    return load_config_text(text, str(file), overrides, toml=file.suffix == ".toml")


def load_config_text(
    text: str, source: str, overrides: dict[str, Any] | None = None, toml: bool = False
) -> RunConfig:
    """Parse (strict YAML, or TOML), merge ``overrides`` into, and validate config text.

    ``source`` names where the text came from in error messages (a path, ``stdin``).

    Raises
    ------
    ConfigError
        If the text is unparsable, or any key or value is invalid.
    """
    try:
        raw = tomllib.loads(text) if toml else parse_yaml(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot parse {source}: {parse_problem(exc)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values")
    return parse_config(apply_overrides(raw, overrides or {}))


def parse_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a plain mapping as a :class:`RunConfig`, with readable errors."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, RunConfig)) from None


VARIANT_KEYS = frozenset(
    {
        "round.mode",
        "strategy.name",
        "selector.name",
        "compression.name",
        "dataset.partition.kind",
        "sim.backend",
    }
)
"""Dotted keys that pick the variant of a section (its discriminator)."""


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``"dataset.num_clients"``) in a copy of ``raw``.

    Overriding a variant key to a new value (``round.mode=async``) starts that section
    afresh, so settings of the old variant (``round.overcommit``) do not leak into the
    new one; variant keys are applied first, so ``round.mode=async
    round.buffer_size=20`` works in any order.
    """
    merged: dict[str, Any] = _deep_copy(raw)
    ordered = sorted(overrides.items(), key=lambda item: item[0] not in VARIANT_KEYS)
    for dotted, value in ordered:
        node = merged
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
            node = child
        if dotted in VARIANT_KEYS and node.get(leaf, value) != value:
            node.clear()
        node[leaf] = value
    return merged


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: the dotted key, what is wrong, and what is allowed.

    A single problem gives a single line.
    """
    lines = [f"invalid configuration ({exc.error_count()} problem(s)):"]
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        if error["type"] == "extra_forbidden":
            keys, model = _walk(root, location[:-1])
            key = ".".join([*keys, location[-1]])
            allowed = sorted(model.model_fields) if model is not None else []
            hint = f" (allowed keys: {', '.join(allowed)})" if allowed else ""
            lines.append(f"  {key}: unknown key{hint}")
        else:
            keys, _ = _walk(root, location)
            key = ".".join(keys) or "<root>"
            if error["type"] == "value_error":  # our own validators name key and value
                message = str(error["msg"]).removeprefix("Value error, ")
                lines.append(f"  {message}" if key == "<root>" else f"  {key}: {message}")
            else:
                lines.append(f"  {key}: {error['msg']} (got {_short(error.get('input'))})")
    if len(lines) == 2:  # one problem: one line
        return f"invalid configuration: {lines[1].strip()}"
    return "\n".join(lines)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _walk(root: type[BaseModel], location: list[str]) -> tuple[list[str], type[BaseModel] | None]:
    """Follow a pydantic error location, hiding the discriminator tags pydantic inserts."""
    keys: list[str] = []
    node: Any = root
    for part in location:
        model = node if _is_model(node) else None
        if model is not None and part in model.model_fields:
            keys.append(part)
            node = model.model_fields[part].annotation
            continue
        tagged = [m for m in _union_members(node) if part in _literal_values(m)]
        if tagged:
            node = tagged[0]
            continue
        keys.append(part)
        node = None
    if not _is_model(node):
        members = _union_members(node)
        node = members[0] if len(members) == 1 else None
    return keys, node


def _is_model(node: Any) -> bool:
    return isinstance(node, type) and issubclass(node, BaseModel)


def _union_members(annotation: Any) -> list[type[BaseModel]]:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if _is_model(annotation):
        return [annotation]
    return [arg for arg in get_args(annotation) if _is_model(arg)]


def _literal_values(model: type[BaseModel]) -> set[str]:
    values: set[str] = set()
    for field in model.model_fields.values():
        if get_origin(field.annotation) is Literal:
            values.update(str(v) for v in get_args(field.annotation))
    return values
