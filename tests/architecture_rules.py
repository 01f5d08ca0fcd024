"""The design's layering rules as a checker over a package's source tree.

:func:`check_package` reads every ``.py`` file under a package root with :mod:`ast`
(nothing is imported), collects every import it makes -- module level, inside
functions, under ``if TYPE_CHECKING:``, ``import x``, ``from x import y``, relative
imports resolved, and ``importlib.import_module("literal")`` -- and returns one
:class:`Violation` per broken rule. ``tests/test_architecture.py`` runs it on ``fedsys``
and on small fake trees that each break one rule.

A *unit* is what sits directly under the package root: a folder (``sim``) or a
top-level module (``models.py`` is ``models``). ``cli.py``, a ``cli/`` package and
``__main__.py`` together are the command, unit ``cli``. The package's own
``__init__.py`` is the unit named after the package.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

COMMAND = "cli"
RUNTIMES = frozenset({"sim", "deploy", "silo"})
ABOVE_RUNTIMES = frozenset({"analytics", "federation", "fidelity", "dashboard"})
BELOW_WIRE = frozenset(
    {
        "core",
        "data",
        "traces",
        "aggregation",
        "selection",
        "metrics",
        "secure",
        "config",
        "parts",
        "models",
    }
)
MAX_LINES = 500
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py")


@dataclass(frozen=True)
class Import:
    """One import: ``source`` (dotted module) imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int


@dataclass(frozen=True)
class Violation:
    """A broken rule, located at ``path:line`` (``path`` relative to the root's parent)."""

    rule: str
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


def module_name(root: Path, file: Path) -> str:
    """Dotted name of ``file`` inside the package at ``root`` (``__init__`` dropped)."""
    parts = [root.name, *file.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    """The top-level unit of a dotted module name (see the module docstring)."""
    parts = module.split(".")
    if len(parts) == 1:
        return parts[0]
    return COMMAND if parts[1] == "__main__" else parts[1]


def _is_module(root: Path, dotted: str) -> bool:
    """Whether ``dotted`` names a module or package inside the tree at ``root``."""
    parts = dotted.split(".")
    if parts[0] != root.name:
        return False
    base = root.joinpath(*parts[1:])
    return len(parts) == 1 or base.with_suffix(".py").is_file() or base.is_dir()


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """Absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imports_in(root: Path, file: Path) -> list[Import]:
    """Every import of the package's own modules made anywhere in ``file``."""
    source = module_name(root, file)
    is_package = file.name == "__init__.py"
    path = file.relative_to(root.parent).as_posix()
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    found: list[Import] = []

    def add(target: str, line: int) -> None:
        if target == root.name or target.startswith(root.name + "."):
            found.append(Import(source, target, path, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(source, is_package, node.level, node.module)
            else:
                base = node.module or ""
            for alias in node.names:
                # ``from pkg import sub`` imports the submodule when there is one.
                candidate = f"{base}.{alias.name}"
                add(candidate if _is_module(root, candidate) else base, node.lineno)
        elif (
            isinstance(node, ast.Call)
            and _is_import_module(node.func)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            add(node.args[0].value, node.lineno)
    return sorted(found, key=lambda imp: imp.line)  # ast.walk visits nested code last


def _is_import_module(func: ast.expr) -> bool:
    """Whether a call's function is ``importlib.import_module`` or a bare ``import_module``."""
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id == "import_module"


def python_files(root: Path) -> list[Path]:
    """The package's ``.py`` files, sorted."""
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def collect_imports(root: Path) -> list[Import]:
    """Every import of the package's own modules, in every file under ``root``."""
    return [imp for file in python_files(root) for imp in _imports_in(root, file)]


def _edge_rule(source: str, target: str) -> tuple[str, str] | None:
    """The first rule an import from unit ``source`` of unit ``target`` breaks, if any.

    Rules are tried in order and an import reports only the first it breaks, so an
    import that several rules forbid (``core`` importing the command) is one violation.
    """
    if source == target:
        return None
    if target == COMMAND:
        return "command", "nothing outside the command imports it"
    if source in RUNTIMES and target in RUNTIMES:
        return "runtime-sideways", "a runtime never imports another runtime"
    if source == "secure" and (target == "wire" or target in RUNTIMES):
        return "secure", "secure has no I/O: it imports neither wire nor a runtime"
    if source in BELOW_WIRE and (target == "wire" or target in RUNTIMES | ABOVE_RUNTIMES):
        return "below-wire", f"{source} sits below wire and the runtimes"
    if source == "wire" and target in RUNTIMES | ABOVE_RUNTIMES:
        return "wire-up", "wire sits below the runtimes and what uses them"
    if source in RUNTIMES and target in ABOVE_RUNTIMES:
        return "runtime-up", f"{target} sits above the runtimes"
    return None


def layer_violations(imports: list[Import]) -> list[Violation]:
    """One violation per import that goes against the layers."""
    found: dict[tuple[str, int, str], Violation] = {}
    for imp in imports:
        broken = _edge_rule(unit_of(imp.source), unit_of(imp.target))
        if broken is None:
            continue
        rule, why = broken
        message = f"{imp.source} imports {imp.target}: {why}"
        found.setdefault(
            (imp.path, imp.line, message), Violation(rule, imp.path, imp.line, message)
        )
    return list(found.values())


def circle_violations(imports: list[Import]) -> list[Violation]:
    """One violation per pair of units that import each other (through any modules)."""
    first: dict[tuple[str, str], Import] = {}
    for imp in imports:
        pair = (unit_of(imp.source), unit_of(imp.target))
        if pair[0] != pair[1]:
            first.setdefault(pair, imp)
    found = []
    for (a, b), there in sorted(first.items()):
        back = first.get((b, a))
        if a < b and back is not None:
            message = (
                f"{a} and {b} import each other: {there.source} imports {there.target}, "
                f"and {back.source} imports {back.target} ({back.path}:{back.line})"
            )
            found.append(Violation("circle", there.path, there.line, message))
    return found


def size_violations(root: Path, max_lines: int = MAX_LINES) -> list[Violation]:
    """One violation per hand-written module longer than ``max_lines`` lines."""
    found = []
    for file in python_files(root):
        if file.name.endswith(GENERATED_SUFFIXES):
            continue
        lines = len(file.read_text(encoding="utf-8").splitlines())
        if lines > max_lines:
            path = file.relative_to(root.parent).as_posix()
            message = f"{module_name(root, file)} has {lines} lines (at most {max_lines})"
            found.append(Violation("size", path, max_lines + 1, message))
    return found


def check_package(root: Path) -> list[Violation]:
    """Every violation of the layering rules in the package at ``root``."""
    imports = collect_imports(root)
    return [*layer_violations(imports), *circle_violations(imports), *size_violations(root)]
