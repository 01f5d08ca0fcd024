"""The documentation site stays true: the generated references cover every config key
and command option, each with its description, the pages' Python examples run, and
``mkdocs build --strict`` succeeds."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest
from pydantic import BaseModel, Field

from fedsys.cli import _parser
from fedsys.config.schema import RunConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"




def _generator(name: str) -> ModuleType:
    """A reference generator from ``docs/hooks`` (beside the MkDocs hook, not in fedsys)."""
    spec = importlib.util.spec_from_file_location(
        f"docs_hooks_{name}", DOCS / "hooks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _config_keys(
    model: type[BaseModel], prefix: str = "", skip: str | None = None
) -> list[tuple[str, str, str]]:
    """(dotted key, model that declares it, description) of every key, all variants.

    A variant section's ``name``/``kind``/``mode`` key is described by the section's
    field; a plain section by its model's docstring.
    """
    keys = []
    for name, field in model.model_fields.items():
        if name == skip:
            continue
        key, where = prefix + name, model.__name__
        models = _models(field.annotation)
        if not models:
            keys.append((key, where, field.description or ""))
        elif isinstance(field.discriminator, str):
            keys.append((f"{key}.{field.discriminator}", where, field.description or ""))
            for variant in models:
                keys += _config_keys(variant, key + ".", field.discriminator)
        else:
            keys.append((key, where, inspect.getdoc(models[0]) or ""))
            keys += _config_keys(models[0], key + ".")
    return keys


def test_every_config_key_has_a_description() -> None:
    missing = {key for key, _, text in _config_keys(RunConfig) if not text.strip()}

    assert not missing, (
        f"config keys without a description (add Field(description=...)): "
        f"{sorted(missing)}"
    )


def test_the_description_check_finds_an_undescribed_key() -> None:
    class Probe(BaseModel):
        described: int = Field(0, description="has one")
        bare: int = 0

    found = [key for key, _, text in _config_keys(Probe) if not text]

    assert found == ["bare"]


def test_the_config_reference_lists_every_key_with_its_description() -> None:
    page = _generator("config_reference").config_reference_markdown()
    flat = " ".join(page.split())

    absent = [key for key, _, _ in _config_keys(RunConfig) if f"`{key}`" not in page]
    undescribed = [
        f"{key} ({where})"
        for key, where, text in _config_keys(RunConfig)
        if " ".join(text.split()).replace("|", "\\|") not in flat
    ]

    assert not absent, f"config reference lacks {absent}"
    assert not undescribed, f"config reference lacks the description of {undescribed}"


def test_the_config_reference_names_every_variant() -> None:
    page = _generator("config_reference").config_reference_markdown()
    strategy = RunConfig.model_fields["strategy"]

    tags = [model.model_fields["name"].default for model in _models(strategy.annotation)]

    assert len(tags) >= 12
    assert all(f"`strategy.name: {tag}`" in page for tag in tags)
    assert "`round.mode: deadline`" in page and "`dataset.partition.kind: quantity`" in page


def _parser_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append(((*path, name), helps.get(name, ""), sub))
                found += _parser_commands(sub, (*path, name))
    return found


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._SubParsersAction, argparse._HelpAction)
    return [action for action in parser._actions if not isinstance(action, skip)]


def test_every_command_and_option_has_help() -> None:
    root = _parser()
    commands = [((), "the command itself", root), *_parser_commands(root)]

    bare = [" ".join(path) for path, text, _ in commands if not text.strip()]
    bare += [
        f"{' '.join(('fedsys', *path))} {'/'.join(action.option_strings) or action.dest}"
        for path, _, parser in commands
        for action in _arguments(parser)
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]

    assert not bare, f"commands or options without help: {bare}"


def test_the_command_reference_lists_every_command_and_option() -> None:
    page = _generator("command_reference").command_reference_markdown()
    commands = _parser_commands(_parser())

    absent = [" ".join(path) for path, _, _ in commands if f"`fedsys {' '.join(path)}`" not in page]
    for path, _, parser in commands:
        part = page.split(f"`fedsys {' '.join(path)}`", 1)[-1]
        for action in _arguments(parser):
            name = action.option_strings[0] if action.option_strings else action.metavar
            if f"`{name or action.dest}" not in part:
                absent.append(f"{' '.join(path)} {name or action.dest}")

    assert len(commands) >= 15
    assert not absent, f"command reference lacks {absent}"


def test_the_landing_page_opens_with_the_readme_setup_commands() -> None:
    def first_bash(text: str) -> str:
        return re.findall(r"```bash\n(.*?)```", text, flags=re.S)[0]

    readme = (ROOT / "README.md").read_text()

    assert first_bash((DOCS / "index.md").read_text()) == first_bash(readme)


# Modules of backends.py (its workload, and the side that runs in Flower's venv), and
# selection_tta.py's adapter of the original Oort.
BENCHMARK_MODULES = {"backends_workload", "flower_side", "oort_original"}


def test_every_benchmark_has_a_page_in_the_site() -> None:
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - BENCHMARK_MODULES
    site = (ROOT / "mkdocs.yml").read_text()

    missing = sorted(s for s in scripts if not (DOCS / "benchmarks" / f"{s}.md").exists())
    unlisted = sorted(s for s in scripts if f"benchmarks/{s}.md" not in site)

    assert not missing and not unlisted, f"no page: {missing}; not in the nav: {unlisted}"


def _python_examples() -> list[tuple[str, int, str]]:
    """The pages' complete programs: ```python blocks (a ```py block is a fragment)."""
    examples = []
    for page in sorted(DOCS.glob("*.md")):
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
        examples += [(page.name, i, block) for i, block in enumerate(blocks)]
    return examples


EXAMPLES = _python_examples()


@pytest.mark.parametrize(
    ("page", "index", "code"), EXAMPLES, ids=[f"{page}#{i}" for page, i, _ in EXAMPLES]
)
def test_python_example_runs(page: str, index: int, code: str, capsys) -> None:
    shortened = code.replace("rounds=30", "rounds=2")  # the simulate page's run, for CI

    exec(compile(shortened, f"docs/{page}#{index}", "exec"), {})

    assert capsys.readouterr().out.strip() or "print(" not in code


def test_the_simulate_page_has_the_api_example() -> None:
    examples = [code for page, _, code in EXAMPLES if page == "simulate.md"]

    assert any("Simulator(" in code and "rounds=30" in code for code in examples)


def test_mkdocs_build_strict_succeeds(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]' (also in '.[dev]')")
    # The hook imports fedsys: this checkout's, whichever copy the environment installed.
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}

    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    config = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
    commands = (tmp_path / "site" / "reference" / "commands" / "index.html").read_text()
    assert "dataset.num_clients" in config and "strategy.name: dp_fedavg" in config
    assert "fedsys deploy local" in commands
