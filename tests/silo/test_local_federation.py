"""The README's cross-silo demo line, run as a user runs it (with a smaller job for CI)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_silo_demo_runs_both_modes_to_the_same_result(tmp_path):
    demo = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)[1].splitlines()
    line = next(row for row in demo if "silo local" in row)
    arguments = shlex.split(line)[1:]  # drop ".venv/bin/fedsys"
    assert arguments == ["silo", "local", "--sites", "4", "--rtt-ms", "100"]
    done = subprocess.run(
        [sys.executable, "-m", "fedsys", *arguments, "--parts", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [row for row in done.stdout.splitlines() if row.startswith(("│ baseline", "│ sol"))]
    assert len(rows) == 2
    digests = {row.split("│")[-2].strip() for row in rows}
    assert len(digests) == 1  # Sol and baseline agree on the result
    assert re.search(r"^speedup: \d+\.\d+$", done.stdout, flags=re.M)
