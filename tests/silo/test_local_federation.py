"""The README's cross-silo demo line, run as a user runs it (with a shorter job for CI)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _demo_arguments() -> list[str]:
    demo = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)[1].splitlines()
    line = next(row for row in demo if "silo local" in row)
    return shlex.split(line)[1:]  # drop ".venv/bin/fedsys"


def _run(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsys", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "160"},
    )


def test_readme_silo_demo_starts_a_standing_federation_and_runs_a_query_and_training(tmp_path):
    arguments = _demo_arguments()
    assert arguments == ["silo", "local", "--sites", "4", "--rtt-ms", "100"]

    done = _run([*arguments, "--rounds", "3"], tmp_path)

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert re.search(r"coordinator at 127\.0\.0\.1:\d+", out)
    assert "fedsys query --coordinator 127.0.0.1:" in out
    assert re.search(r"^5 rows in [\d.]+ s", out, flags=re.M)  # one row per diagnosis
    assert len(re.findall(r"round \d/3 on 4 sites", out)) == 3
    assert re.search(r"^final accuracy: 0\.\d+$", out, flags=re.M)
    assert done.stderr == ""


def test_silo_local_with_a_job_runs_both_modes_to_the_same_result(tmp_path):
    done = _run(["silo", "local", "--sites", "4", "--rtt-ms", "100", "--job", "histogram",
                 "--parts", "3"], tmp_path)

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [row for row in done.stdout.splitlines() if row.startswith(("│ baseline", "│ sol"))]
    assert len(rows) == 2
    digests = {row.split("│")[-2].strip() for row in rows}
    assert len(digests) == 1  # Sol and baseline agree on the result
    assert re.search(r"^speedup: \d+\.\d+$", done.stdout, flags=re.M)
