"""The ``fedsys`` command line, run in a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fedsys.traces import generate_fleet, save_fleet


def _fedsys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsys.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_run_with_overrides_writes_rounds_summary_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _fedsys(
        "run", "--quiet", "--output-dir", str(out), "--set", "rounds=4", "--set", "eval.every=2"
    )

    assert proc.returncode == 0, proc.stderr
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round_idx"] for r in rounds] == [0, 1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 4
    assert "time_to_target_s" in summary
    assert (out / "accuracy_vs_time.png").stat().st_size > 0
    assert "time to 85% accuracy" in proc.stdout


def test_config_file_with_wrong_key_fails_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("rounds: 3\ndataset:\n  nam: digits\n")

    proc = _fedsys("run", str(config), "--quiet")

    assert proc.returncode == 2
    assert "dataset.nam" in proc.stderr


def test_traces_show_and_convert_round_trip(tmp_path: Path) -> None:
    csv = save_fleet(generate_fleet(50, seed=1), tmp_path / "fleet.csv")
    pickles = tmp_path / "fedscale"

    shown = _fedsys("traces", "show", str(csv), "--plot", str(tmp_path / "h.png"))
    converted = _fedsys("traces", "convert", str(csv), str(pickles))

    assert shown.returncode == 0, shown.stderr
    assert "50" in shown.stdout
    assert (tmp_path / "h.png").exists()
    assert converted.returncode == 0, converted.stderr
    back = _fedsys("traces", "show", str(pickles), "--plot", str(tmp_path / "h2.png"))
    assert back.returncode == 0, back.stderr
