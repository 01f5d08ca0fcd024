"""The README stays true: its set-up commands, API example and config reference."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from pydantic import BaseModel

from fedsys.config.schema import RunConfig

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
