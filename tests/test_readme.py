"""The README stays true: its set-up commands, API example and config reference."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
from pydantic import BaseModel

from fedsys.aggregation.config import UpdateValidationConfig
from fedsys.config.deploy import DeployConfig
from fedsys.config.schema import (
    ClockConfig,
    DatasetConfig,
    DevicesConfig,
    EvalConfig,
    MetricsConfig,
    ModelConfig,
    RunConfig,
    SimConfig,
    TrainSettings,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_the_two_setup_commands() -> None:
    first = _blocks("bash")[0].strip().splitlines()
    ci = (README.parent / ".ci" / "run").read_text()

    assert len(first) == 2
    assert first[0].endswith(".venv/bin/fedsys run")
    assert first[1].endswith(".venv/bin/python -m pytest")
    assert README.read_text().index("```bash") < README.read_text().index("## ")
    assert first[1] in ci.splitlines()


def test_api_example_runs(capsys) -> None:
    (example,) = _blocks("python")
    assert len(example.strip().splitlines()) <= 16

    exec(compile(example.replace("rounds=30", "rounds=2"), "README", "exec"), {})

    assert "virtual s; final" in capsys.readouterr().out


def _leaf_keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for arg in [field.annotation, *get_args(field.annotation)]:
            for member in get_args(arg) or [arg]:
                if isinstance(member, type) and issubclass(member, BaseModel):
                    keys |= _leaf_keys(member)
    return keys


def test_config_reference_names_every_key() -> None:
    reference = README.read_text().split("## Config reference", 1)[1]

    missing = sorted(
        key for key in _leaf_keys(RunConfig) if not re.search(rf"\b{key}\b", reference)
    )

    assert not missing, f"README config reference lacks {missing}"


VARIANT_SECTIONS = {
    "selector.": "name",
    "strategy.": "name",
    "compression.": "name",
    "round.": "mode",
}
SECTIONS = {
    "dataset.": DatasetConfig,
    "model.": ModelConfig,
    "train.": TrainSettings,
    "devices.": DevicesConfig,
    "clock.": ClockConfig,
    "validation.": UpdateValidationConfig,
    "eval.": EvalConfig,
    "metrics.": MetricsConfig,
    "deploy.": DeployConfig,
    "sim.": SimConfig,
}


def _variants(section: str) -> dict[str, type[BaseModel]]:
    """Variant name -> config model of a section chosen by ``name`` or ``mode``."""
    stack, members = [RunConfig.model_fields[section.rstrip(".")].annotation], []
    while stack:
        node = stack.pop()
        if isinstance(node, type) and issubclass(node, BaseModel):
            members.append(node)
        else:
            stack.extend(get_args(node))
    tag = VARIANT_SECTIONS[section]
    return {m.model_fields[tag].default: m for m in members}


def _literal_values(model: type[BaseModel], seen: set[type] | None = None) -> set[str]:
    """Every allowed literal value anywhere in the schema (values, not keys)."""
    seen = set() if seen is None else seen
    values: set[str] = set()
    if model in seen:
        return values
    seen.add(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            node = stack.pop()
            if get_origin(node) is Literal:
                values |= {str(v) for v in get_args(node)}
            elif isinstance(node, type) and issubclass(node, BaseModel):
                values |= _literal_values(node, seen)
            else:
                stack.extend(get_args(node))
    return values


def _reference_rows() -> list[tuple[str, list[str], str]]:
    """(section, first-column names, third column) of every config reference row."""
    table = README.read_text().split("## Config reference", 1)[1].split("\n## ", 1)[0]
    rows, section = [], ""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith(("`", "**")):
            continue
        if cells[0].startswith("**"):
            section = cells[0].strip("*`")
            continue
        rows.append((section, re.findall(r"`([^`]+)`", cells[0]), "|".join(cells[2:])))
    return rows


def test_every_key_the_config_reference_names_exists() -> None:
    values = _literal_values(RunConfig) | {"true", "false", "null"}
    wrong = []
    for section, names, text in _reference_rows():
        if section in VARIANT_SECTIONS:
            variants = _variants(section)
            claimed = set()
            for token in re.findall(r"`([a-z_][a-z0-9_]*)(?: [^`]*)?`", text):
                if token not in values:
                    claimed.add(token)
            for name in names:
                model = variants.get(name)
                if model is None:
                    wrong.append(f"{section}{name} (no such variant)")
                    continue
                wrong += [f"{section}{name}.{k}" for k in claimed if k not in model.model_fields]
        else:
            model = SECTIONS.get(section, RunConfig)
            wrong += [f"{section}{name}" for name in names if name not in model.model_fields]

    assert not wrong, f"README config reference names keys that do not exist: {sorted(wrong)}"


def test_the_reference_check_catches_a_key_on_the_wrong_variant(monkeypatch) -> None:
    text = README.read_text().replace(
        "| `median` | | `max_updates 256`", "| `median` | | `trim_fraction 0.1`"
    )
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: text)

    with pytest.raises(AssertionError, match=r"strategy\.median\.trim_fraction"):
        test_every_key_the_config_reference_names_exists()
