"""The silo view over a real ``fedsys silo local`` job, and the fidelity overlay."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedsys.fidelity.compare import compare
from fedsys.fidelity.report import write_json
from fedsys.metrics.run_folder import SILO_FILE, read_rounds
from tests.dashboard.conftest import Page


def test_silo_view_shows_each_sites_tasks_and_each_jobs_binding(
    tmp_path: Path, start_dashboard: Any, page: Page
) -> None:
    out = tmp_path / "silo"
    cmd = [sys.executable, "-m", "fedsys", "silo", "local", "--sites", "2", "--rtt-ms", "20"]
    cmd += ["--job", "histogram", "--parts", "6", "--insecure", "--output-dir", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in (out / SILO_FILE).read_text().splitlines()]
    jobs = {r["job"]: r for r in rows if r["kind"] == "job"}
    assert jobs["baseline"]["binding"] == "late" and jobs["sol"]["binding"] == "early"
    for name, job in jobs.items():  # every accepted output was logged once
        assert sum(r["kind"] == "task" and r["job"] == name for r in rows) == job["tasks"] == 12

    url = start_dashboard(out)
    page.open(f"{url}#/run/silo", "silo")

    bindings = page.page.eval_on_selector_all(
        "#silo-jobs tr[data-job]", "rows => rows.map(r => [r.dataset.job, r.cells[1].textContent])"
    )
    assert bindings == [["baseline", "late"], ["sol", "early"]]
    labels = page.page.evaluate("window.fedsysCharts.silo_tasks.series.map(s => s.label)")[1:]
    data = page.page.evaluate("window.fedsysCharts.silo_tasks.data.map(s => Array.from(s))")
    per_site = Counter(r["site"] for r in rows if r["kind"] == "task" and r["job"] == "sol")
    assert {site: series[-1] for site, series in zip(labels, data[1:], strict=True)} == per_site
    assert page.errors == []


def test_fidelity_view_overlays_simulated_and_measured_round_durations(
    sim_runs: Path, tmp_path: Path, start_dashboard: Any, page: Page
) -> None:
    # Two finished runs of the same config stand in for the simulated and the measured
    # side: the view must show exactly what fidelity.json holds.
    folder = tmp_path / "quick-fidelity"
    folder.mkdir()
    sim, real = read_rounds(sim_runs / "random"), read_rounds(sim_runs / "oort")
    report = compare(sim, real, np.ones(200))
    write_json(report, folder / "fidelity.json")
    url = start_dashboard(folder)

    page.open(f"{url}#/run/quick-fidelity", "fidelity")

    data = page.page.evaluate("window.fedsysCharts.fid_durations.data.map(s => Array.from(s))")
    assert data[0] == [r.round_idx for r in report.rounds]
    assert data[1] == pytest.approx([r.sim_s for r in report.rounds])
    assert data[2] == pytest.approx([r.real_s for r in report.rounds])
    assert page.errors == []
