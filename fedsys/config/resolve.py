"""A run's config as a command names it: a file (or the embedded default) plus overrides.

Every runtime and the command resolve configs the same way through these, so ``--set``
means one thing whether it reaches the simulator, a deployment or fidelity.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any, TextIO

import yaml

from fedsys.config.loader import (
    ConfigError,
    apply_overrides,
    load_config,
    load_config_text,
    parse_config,
    parse_yaml,
)
from fedsys.config.schema import RunConfig

DEFAULT_CONFIG = "quickstart.yaml"
"""The embedded default run, shipped in :mod:`fedsys.examples`."""


def default_config_text() -> str:
    """The embedded quickstart config, as shipped inside the package."""
    return resources.files("fedsys.examples").joinpath(DEFAULT_CONFIG).read_text()


STDIN = "-"
"""The config path that means: read YAML from standard input (``fedsys config | fedsys run -``)."""


def resolve_config(
    path: str | None, overrides: dict[str, Any], stdin: TextIO | None = None
) -> RunConfig:
    """Load ``path`` (or the embedded default) with ``overrides`` applied.

    ``-`` reads YAML from ``stdin`` (default: the process's standard input) through
    the same strict loader as a file.

    Raises
    ------
    ConfigError
        If the config cannot be read or parsed, or a key or value is invalid.
    """
    if path == STDIN:
        try:
            text = (stdin or sys.stdin).read()
        except UnicodeDecodeError:
            raise ConfigError("the config on stdin is not UTF-8 text") from None
        return load_config_text(text, "stdin", overrides)
    if path:
        return load_config(path, overrides)
    raw = parse_yaml(default_config_text())
    return parse_config(apply_overrides(raw, overrides))


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a dotted-key mapping; each value parsed as YAML.

    Raises
    ------
    ConfigError
        If a pair has no ``=`` or its value is not valid YAML.
    """
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} must look like KEY=VALUE")
        try:
            overrides[key.strip()] = parse_yaml(value)
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"override {pair!r}: {detail}") from None
    return overrides
