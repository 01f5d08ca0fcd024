"""The dashboard in a real Chromium: what the page shows is what the run folder holds."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import ROOT, Page

SCREENSHOT = ROOT / "docs" / "images" / "dashboard.png"
TIMELINE_SCREENSHOT = ROOT / "docs" / "images" / "dashboard-timeline.png"
"""Written by the tests when FEDSYS_UPDATE_SCREENSHOTS is set (README and docs show them)."""


def _rounds(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "rounds.jsonl").read_text().splitlines()]


def _timelines(folder: Path) -> dict[int, dict[str, Any]]:
    rows = [json.loads(line) for line in (folder / "clients.jsonl").read_text().splitlines()]
    return {row["round_idx"]: row for row in rows}


def _chart_data(page: Page, name: str) -> list[list[Any]]:
    return page.page.evaluate(f"window.fedsysCharts[{name!r}].data.map(s => Array.from(s))")


def test_run_page_loads_without_console_errors_and_draws_every_accuracy_point(
    sim_runs: Path, start_dashboard: Any, page: Page, tmp_path: Path
) -> None:
    url = start_dashboard(sim_runs)
    page.open(url + "#/run/runs0%2Foort".replace("runs0", sim_runs.name), "overview")
    xs, accuracy = _chart_data(page, "accuracy")
    expected = [(r["end_s"], r["accuracy"]) for r in _rounds(sim_runs / "oort")]
    expected = [(x, a) for x, a in expected if a is not None]
    assert len(expected) == 6  # rounds 1, 3, ..., 11 of 12 with eval.every=2
    assert list(zip(xs, accuracy, strict=True)) == pytest.approx(expected)
    assert page.page.inner_text("#rounds-done") == "12"
    shot = SCREENSHOT if os.environ.get("FEDSYS_UPDATE_SCREENSHOTS") else tmp_path / "shot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.errors == []


def test_timeline_shows_the_clients_the_record_names_with_their_phases(
    sim_runs: Path, start_dashboard: Any, page: Page, tmp_path: Path
) -> None:
    url = start_dashboard(sim_runs)
    run_id = f"{sim_runs.name}%2Foort"
    page.open(f"{url}#/run/{run_id}?view=timeline&round=2", "timeline")
    page.page.wait_for_function("document.body.dataset.timeline === '2'", timeout=10000)
    entry = _timelines(sim_runs / "oort")[2]
    record = _rounds(sim_runs / "oort")[2]
    rows = page.page.eval_on_selector_all(
        ".tl-row",
        "rows => rows.map(r => [Number(r.dataset.client), r.dataset.outcome,"
        " Array.from(r.querySelectorAll('.phase')).map(p => p.dataset.phase)])",
    )
    names = {"c": "completed", "r": "rejected", "d": "dropped", "s": "straggled"}
    assert [(r[0], r[1]) for r in rows] == [(c[0], names[c[5]]) for c in entry["clients"]]
    assert len(rows) == record["selected"]
    assert sum(r[1] == "completed" for r in rows) == record["participants"]
    assert sum(r[1] == "straggled" for r in rows) == record["stragglers"]
    for client, outcome, phases in rows:
        if outcome != "dropped":
            assert phases == ["download", "compute", "upload"], client
    closer = page.page.get_attribute(".tl-row.closer", "data-client")
    assert int(closer) == entry["closed_by"]
    updating = os.environ.get("FEDSYS_UPDATE_SCREENSHOTS")
    shot = TIMELINE_SCREENSHOT if updating else tmp_path / "timeline.png"
    page.page.screenshot(path=str(shot), full_page=True)
    assert page.errors == []


def test_a_round_written_while_the_page_is_open_appears_within_two_seconds(
    sim_runs: Path, start_dashboard: Any, page: Page, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    shutil.copytree(sim_runs / "random", live)
    (live / "summary.json").unlink()  # still running
    url = start_dashboard(live)
    page.open(f"{url}#/run/live", "overview")
    before = len(_chart_data(page, "accuracy")[0])
    last = _rounds(live)[-1]
    new = {**last, "round_idx": last["round_idx"] + 1, "start_s": last["end_s"]}
    new.update(end_s=last["end_s"] + 30.0, accuracy=0.987)
    with (live / "rounds.jsonl").open("a") as handle:
        handle.write(json.dumps(new) + "\n")
    written = time.monotonic()
    page.page.wait_for_function(
        f"window.fedsysCharts.accuracy.data[0].length === {before + 1}", timeout=2000
    )
    assert time.monotonic() - written <= 2.0
    assert _chart_data(page, "accuracy")[1][-1] == pytest.approx(0.987)
    assert page.page.inner_text("#rounds-done") == str(len(_rounds(live)))
    assert page.errors == []


def test_two_runs_compared_on_one_chart(sim_runs: Path, start_dashboard: Any, page: Page) -> None:
    url = start_dashboard(sim_runs)
    ids = f"{sim_runs.name}/random,{sim_runs.name}/oort"
    page.open(f"{url}#/?compare={ids}", "compare")
    data = _chart_data(page, "compare_accuracy")
    labels = page.page.evaluate("window.fedsysCharts.compare_accuracy.series.map(s => s.label)")
    assert labels[1:] == [f"{sim_runs.name}/random", f"{sim_runs.name}/oort"]
    for series, run in zip(data[1:], ("random", "oort"), strict=True):
        expected = [(r["end_s"], r["accuracy"]) for r in _rounds(sim_runs / run)]
        points = [(x, y) for x, y in zip(data[0], series, strict=True) if y is not None]
        assert points == pytest.approx([(x, a) for x, a in expected if a is not None])
    assert page.page.locator("#tta tr").count() == 3  # header + two runs
    assert page.errors == []


def test_a_path_outside_the_run_folders_is_refused(
    sim_runs: Path, start_dashboard: Any, page: Page, tmp_path: Path
) -> None:
    outside = tmp_path / "secret"
    shutil.copytree(sim_runs / "oort", outside)
    root = tmp_path / "served"
    root.mkdir()
    (root / "link").symlink_to(outside)  # a link that leaves the served folder
    url = start_dashboard(root)
    for run_id in ("..%2Fsecret", "served%2Flink", "..%2F..%2Fetc", "%2Fetc%2Fpasswd"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}api/runs/{run_id}/data", timeout=10)
        assert refused.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}static/..%2F..%2Fapp.py", timeout=10)
    assert refused.value.code == 404
    page.page.goto(f"{url}#/run/..%2Fsecret")
    page.page.wait_for_selector("#run-error", timeout=10000)
    assert "not a run folder" in page.page.inner_text("#run-error")
    listed = json.loads(urllib.request.urlopen(f"{url}api/runs", timeout=10).read())
    assert listed["runs"] == []
