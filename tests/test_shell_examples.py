"""The README's and the docs' shell examples work as a user types them, piped.

Each ``bash`` block of the README (after the set-up commands) and of the capability
pages under ``docs/`` runs as one ``bash -euo pipefail`` script in a fresh folder, with
``.venv/bin/`` pointing at this environment, stdout a pipe and ``COLUMNS=40``: output
that a narrow or absent terminal would wrap or break is caught here. Blocks that set
up environments (``python3 -m venv``, ``pip install``, ``mkdocs``) are what CI itself
runs, and the benchmark pages' blocks are benchmarks: both are left out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ("python3 -m venv", "pip install", "mkdocs")
TIMEOUT_S = 600


def _bash_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S)


def _examples() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    examples, seen = [], set()
    for page in pages:
        for index, block in enumerate(_bash_blocks(page)):
            lines = {line.strip() for line in block.splitlines() if line.strip()}
            if any(marker in block for marker in SETUP) or lines <= seen:
                continue  # set-up, or every line already runs in an earlier example
            seen |= lines
            examples.append((f"{page.relative_to(ROOT)}#{index}", block))
    return examples


EXAMPLES = _examples()


def test_the_readme_demo_lines_are_among_the_examples() -> None:
    readme = [block for name, block in EXAMPLES if name.startswith("README.md")]

    assert len(readme) == 1
    assert readme[0].strip().splitlines() == [
        ".venv/bin/fedsys deploy local --clients 8",
        ".venv/bin/fedsys silo local --sites 4 --rtt-ms 100",
        ".venv/bin/fedsys query --demo",
    ]
    assert len(EXAMPLES) >= 8


@pytest.mark.timeout(TIMEOUT_S + 60)
@pytest.mark.parametrize(("name", "block"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_shell_example_runs_piped(name: str, block: str, tmp_path: Path) -> None:
    for shared in ("examples", "fedsys"):
        (tmp_path / shared).symlink_to(ROOT / shared)
    bin_dir = Path(sys.executable).parent
    script = block.replace(".venv/bin/", f"{bin_dir}/")
    env = {**os.environ, "COLUMNS": "40", "PYTHONPATH": str(ROOT)}

    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )

    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stdout + done.stderr
    logged = [line for line in done.stderr.splitlines() if line.startswith('{"ts"')]
    assert not logged, f"{name}: runtime log lines reached the terminal: {logged[:3]}"


def test_the_first_setup_command_runs_its_job_piped(tmp_path: Path) -> None:
    """The README's first command ends by running the embedded default: that part, piped
    (its venv and install are what this environment already is)."""
    first = _bash_blocks(ROOT / "README.md")[0].strip().splitlines()[0]
    job = first.rsplit("&& ", 1)[1]
    assert job == ".venv/bin/fedsys run"
    bin_dir = Path(sys.executable).parent

    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", job.replace(".venv/bin/", f"{bin_dir}/") + " | cat"],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "40", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "runs" / "quickstart" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert "results in runs/quickstart" in done.stdout
