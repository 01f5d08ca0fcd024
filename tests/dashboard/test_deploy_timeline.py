"""A real deployment's round timeline in the browser: the clients and phases it recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import ROOT, Page
from tests.deploy.harness import Processes, provision, rounds_done, write_config
from tests.deploy.rogue import run_held_round

SCREENSHOT = ROOT / "docs" / "images" / "dashboard-deploy-timeline.png"
"""Written when FEDSYS_UPDATE_SCREENSHOTS is set (docs/dashboard.md shows it)."""
NAMES = {"c": "completed", "r": "rejected", "d": "dropped", "s": "straggled"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One round of a real server: three real clients complete, a fourth reads its model
    and loses its link (dropped). Returns the run folder."""
    root = tmp_path_factory.mktemp("deployment")
    pki = provision(root / "pki", 4)
    out = root / "out"
    start_file = root / "start_at"
    config = write_config(
        root / "run.yaml",
        out,
        pki,
        rounds=1,
        clients_per_round=3,
        dataset__num_clients=4,
        model={"name": "mlp", "hidden": [1024, 1024]},  # transfers take milliseconds
        train={"local_steps": 20, "batch_size": 20, "lr": 0.1},
        round={"mode": "sync", "overcommit": 1.3},
        deploy__min_clients=4,
    )
    procs = Processes(root / "logs")
    try:
        run_held_round(
            procs, config, pki, 3, {"client-0003": {"vanish_after_download": True}}, start_file
        )
    finally:
        procs.close()
    return out


def _expected_bars(entry: dict[str, Any]) -> dict[int, list[tuple[str, float, float]]]:
    """Each client's (phase, left %, width %) as the record's times place them."""
    rows = entry["clients"]
    origin = min(0.0, *(c[1] for c in rows), *(c[7] for c in rows))
    end = entry["end_s"] - entry["start_s"]
    for c in rows:
        end = max(end, c[1] + c[2] + c[3] + c[4], c[6])
    span = end - origin
    bars: dict[int, list[tuple[str, float, float]]] = {}
    for c in rows:
        t, drawn = c[1], []
        for phase, length in zip(("download", "compute", "upload"), c[2:5], strict=True):
            width = length
            if c[5] == "d":
                width = max(0.0, min(t + length, c[6]) - t)
            if width > 0 or c[5] != "d":
                drawn.append((phase, 100 * (t - origin) / span, 100 * width / span))
            t += length
        bars[c[0]] = drawn
    return bars


def test_a_deployments_timeline_shows_the_clients_it_recorded_with_their_phases(
    deployment: Path, start_dashboard: Any, page: Page, tmp_path: Path
) -> None:
    (record,) = rounds_done(deployment)
    (entry,) = [
        json.loads(line) for line in (deployment / "clients.jsonl").read_text().splitlines()
    ]
    url = start_dashboard(deployment)
    page.open(f"{url}#/run/out?view=timeline&round=0", "timeline")
    page.page.wait_for_function("document.body.dataset.timeline === '0'", timeout=10000)

    shown = page.page.eval_on_selector_all(
        ".tl-row",
        """rows => rows.map(r => [Number(r.dataset.client), r.dataset.outcome,
            Array.from(r.querySelectorAll('.phase')).map(p =>
              [p.dataset.phase, parseFloat(p.style.left), parseFloat(p.style.width)]),
            r.querySelectorAll('.wait').length, r.querySelectorAll('.mark.dropped').length])""",
    )
    assert [(s[0], s[1]) for s in shown] == [(c[0], NAMES[c[5]]) for c in entry["clients"]]
    assert {c["client_id"]: c["outcome"] for c in record["clients"]} == {
        0: "completed",
        1: "completed",
        2: "completed",
        3: "dropped",
    }
    assert [(s[0], s[1]) for s in shown] == [
        (c["client_id"], c["outcome"]) for c in record["clients"]
    ]
    expected = _expected_bars(entry)
    for client, outcome, bars, waits, crosses in shown:
        assert [b[0] for b in bars] == [e[0] for e in expected[client]], client
        placed = [x for bar in bars for x in bar[1:]]  # left and width, in % of the axis
        assert placed == pytest.approx([x for e in expected[client] for x in e[1:]], abs=0.01)
        row = next(c for c in entry["clients"] if c[0] == client)
        assert waits == (1 if row[1] > row[7] else 0), row  # the task's wait for its download
        assert crosses == (outcome == "dropped")
    for client in (0, 1, 2):
        assert [b[0] for b in expected[client]] == ["download", "compute", "upload"]
    assert [b[0] for b in expected[3]][:1] == ["download"]  # read its model, then dropped
    closer = page.page.get_attribute(".tl-row.closer", "data-client")
    assert int(closer or -1) == entry["closed_by"]
    assert "server's clock" in page.page.inner_text("#tl-info")
    tabs = page.page.eval_on_selector_all(".tabs a", "tabs => tabs.map(t => t.dataset.view)")
    assert {"timeline", "fleet", "deployment"} <= set(tabs)
    shot = SCREENSHOT if os.environ.get("FEDSYS_UPDATE_SCREENSHOTS") else tmp_path / "shot.png"
    page.page.screenshot(path=str(shot), full_page=True)
    assert page.errors == []
