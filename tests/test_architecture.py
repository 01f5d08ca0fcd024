"""fedsys keeps its layers: the rules checked on the real tree, and the checker on fake ones.

Layers, lowest first: ``core`` <- ``data``, ``traces``, ``aggregation``, ``selection``,
``secure``, ``metrics`` <- ``config``, ``parts`` <- ``wire`` <- the runtimes ``sim``,
``deploy``, ``silo`` <- ``analytics``, ``fidelity``, ``dashboard`` <- the command ``cli``.
The checker lives in ``tests/architecture_rules.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture_rules import Violation, check_package, collect_imports

FEDSYS = Path(__file__).resolve().parents[1] / "fedsys"


def test_fedsys_keeps_its_layers() -> None:
    violations = check_package(FEDSYS)
    assert not violations, f"{len(violations)} layering violations:\n" + "\n".join(
        str(v) for v in violations
    )


# A small tree that keeps every rule: each runtime and upper layer imports only below it.
CLEAN = {
    "__init__.py": "from fedsys.core.types import Weights\n",
    "__main__.py": "from fedsys.cli import main\n",
    "cli.py": (
        "from fedsys import sim, deploy, silo\n"
        "from fedsys.analytics import query\n"
        "from fedsys.fidelity import compare\n"
        "from fedsys.dashboard import app\n"
    ),
    "models.py": "from fedsys.core.types import Weights\n",
    "core/__init__.py": "",
    "core/types.py": "Weights = list\n",
    "data/__init__.py": "from .partition import split\n",
    "data/partition.py": "from ..core import types\n\ndef split():\n    pass\n",
    "traces/__init__.py": "import fedsys.core.types\n",
    "aggregation/__init__.py": "from fedsys.core.types import Weights\n",
    "selection/__init__.py": "from fedsys.core import types\n",
    "metrics/__init__.py": "from fedsys.core import types\n",
    "metrics/records.py": "from typing import TYPE_CHECKING\n",
    "secure/__init__.py": "from fedsys.core import types\n",
    "secure/masking.py": "import numpy\n",
    "config/__init__.py": "from fedsys.selection import Selector\n",
    "parts/__init__.py": "from fedsys import models\nfrom fedsys.data import split\n",
    "wire/__init__.py": "from fedsys.core import types\n",
    "wire/transport.py": "import grpc\n",
    "sim/__init__.py": "from fedsys.parts import build\n",
    "sim/engine.py": "from fedsys.selection import Selector\n",
    "sim/rounds/__init__.py": "",
    "sim/rounds/sync.py": "from ..engine import run\n",
    "deploy/server.py": "from fedsys.wire import transport\nfrom fedsys.aggregation import x\n",
    "silo/__init__.py": "from fedsys.wire.transport import serve\n",
    "silo/engine.py": "from .cli import parse\n",
    "silo/cli.py": "import argparse\n",
    "analytics/__init__.py": "from fedsys.silo import engine\nfrom fedsys.analytics.cli import q\n",
    "analytics/cli.py": "import argparse\n",
    "fidelity/compare.py": "from fedsys.sim import engine\nfrom fedsys.deploy import server\n",
    "dashboard/app.py": "from fedsys.metrics import records\n",
}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "fedsys"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _module(name: str) -> str:
    parts = ["fedsys", *name.removesuffix(".py").split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_a_clean_tree_reports_nothing(tmp_path: Path) -> None:
    assert check_package(_tree(tmp_path, CLEAN)) == []


def test_a_command_package_is_the_command_too(tmp_path: Path) -> None:
    files = {k: v for k, v in CLEAN.items() if k != "cli.py"}
    files["cli/__init__.py"] = "from fedsys.cli.run import main\n"
    files["cli/run.py"] = "from fedsys import sim\nfrom ..fidelity import compare\n"
    assert check_package(_tree(tmp_path, files)) == []
    files["traces/load.py"] = "def load():\n    from ..cli.run import main\n"
    (violation,) = check_package(_tree(tmp_path, files))
    assert (violation.rule, violation.path, violation.line) == (
        "command",
        "fedsys/traces/load.py",
        2,
    )


TYPE_CHECKING_IMPORT = (
    "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from fedsys.silo import engine\n"
)

# (rule, file, its text, the line the violation names): each breaks exactly one rule.
BROKEN = {
    "command from a lower layer": ("command", "traces/load.py", "from fedsys.cli import main\n", 1),
    "command as a submodule name": (
        "command",
        "data/x.py",
        "import os\nfrom fedsys import cli\n",
        2,
    ),
    "command from the package root": ("command", "__init__.py", "import fedsys.cli\n", 1),
    "runtime sideways, in a function": (
        "runtime-sideways",
        "deploy/build.py",
        "def build():\n    from fedsys.sim import engine\n",
        2,
    ),
    "runtime sideways, relative": (
        "runtime-sideways",
        "sim/rounds/deadline.py",
        "from ...deploy import server\n",
        1,
    ),
    "runtime sideways, import_module": (
        "runtime-sideways",
        "silo/tasks.py",
        "import importlib\n\nimportlib.import_module('fedsys.sim.engine')\n",
        3,
    ),
    "lower layer, under TYPE_CHECKING": ("below-wire", "metrics/plots.py", TYPE_CHECKING_IMPORT, 4),
    "lower layer imports wire": (
        "below-wire",
        "models.py",
        "from fedsys.wire import transport\n",
        1,
    ),
    "lower layer imports above runtimes": (
        "below-wire",
        "parts/fleet.py",
        "from fedsys.analytics import query\n",
        1,
    ),
    "config imports a runtime": (
        "below-wire",
        "config/loader.py",
        "import fedsys.deploy.server\n",
        1,
    ),
    "wire imports a runtime": ("wire-up", "wire/chunks.py", "from fedsys.sim.engine import x\n", 1),
    "wire imports fidelity": ("wire-up", "wire/chunks.py", "from ..fidelity import compare\n", 1),
    "secure imports wire": (
        "secure",
        "secure/masking.py",
        "from fedsys.wire import transport\n",
        1,
    ),
    "secure imports a runtime": (
        "secure",
        "secure/plan.py",
        "def f():\n    import fedsys.sim\n",
        2,
    ),
    "runtime imports analytics": (
        "runtime-up",
        "deploy/stats.py",
        "from fedsys.analytics import query\n",
        1,
    ),
    "runtime imports dashboard": ("runtime-up", "sim/plots.py", "import fedsys.dashboard.app\n", 1),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_tree_breaking_one_rule_reports_that_rule(tmp_path: Path, case: str) -> None:
    rule, name, text, line = BROKEN[case]
    violations = check_package(_tree(tmp_path, {**CLEAN, name: text}))
    assert [(v.rule, v.path, v.line) for v in violations] == [(rule, f"fedsys/{name}", line)]
    assert f"{_module(name)} imports" in violations[0].message


def test_two_folders_importing_each_other_is_one_circle(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "data/fleet.py": "import os\nfrom fedsys.traces import load\n",
        "traces/load.py": "def load():\n    from fedsys.data import partition\n",
    }
    violations = check_package(_tree(tmp_path, files))
    assert [(v.rule, v.path, v.line) for v in violations] == [("circle", "fedsys/data/fleet.py", 2)]
    assert "fedsys/traces/load.py:2" in violations[0].message


def test_a_module_over_500_lines_is_too_long(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "sim/long.py": "x = 1\n" * 501,
        "sim/just_fits.py": "x = 1\n" * 500,
        "wire/big_pb2.py": "x = 1\n" * 900,
        "wire/big_pb2_grpc.py": "x = 1\n" * 900,
    }
    violations = check_package(_tree(tmp_path, files))
    assert violations == [
        Violation("size", "fedsys/sim/long.py", 501, "fedsys.sim.long has 501 lines (at most 500)")
    ]


def test_every_kind_of_import_is_read(tmp_path: Path) -> None:
    files = {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/a.py": "",
        "core/sub/__init__.py": "from . import b\nfrom .. import a\nfrom ..a import f\n",
        "core/sub/b.py": (
            "import fedsys.core.a as a, json\n"
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from fedsys.core import a\n"
            "def f():\n"
            "    import fedsys\n"
            "    from fedsys.core.a import g\n"
        ),
    }
    imports = collect_imports(_tree(tmp_path, files))
    assert sorted((i.source, i.target, i.line) for i in imports) == [
        ("fedsys.core.sub", "fedsys.core.a", 2),
        ("fedsys.core.sub", "fedsys.core.a", 3),
        ("fedsys.core.sub", "fedsys.core.sub.b", 1),
        ("fedsys.core.sub.b", "fedsys", 6),
        ("fedsys.core.sub.b", "fedsys.core.a", 1),
        ("fedsys.core.sub.b", "fedsys.core.a", 4),
        ("fedsys.core.sub.b", "fedsys.core.a", 7),
    ]
