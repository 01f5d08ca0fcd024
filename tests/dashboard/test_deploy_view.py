"""The deployment view over a real server and real clients (``fedsys server --dashboard``)."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import Page, wait_until_serving
from tests.deploy.harness import Processes, provision, rounds_done, wait_for, write_config


@pytest.fixture
def processes(tmp_path: Path) -> Any:
    procs = Processes(tmp_path / "logs")
    try:
        yield procs
    finally:
        procs.close()


def _round_started(log: Path, round_idx: int) -> dict[str, Any] | None:
    """The server's ``round started`` log record for ``round_idx``, once written."""
    for line in log.read_text().splitlines():
        if '"round started"' in line:
            record = json.loads(line)
            if record.get("round") == round_idx:
                return record
    return None


def test_a_client_killed_mid_round_shows_as_dropped(
    tmp_path: Path, processes: Processes, page: Page
) -> None:
    pki = provision(tmp_path / "pki", 6)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=2,
        clients_per_round=6,
        dataset={"name": "digits", "num_clients": 6, "partition": {"kind": "iid"}},
        # 20,000 steps: ~5 s on a quiet core, ~15 s for 6 clients on 2 (3,000 took under a
        # second: a loaded machine could be slower to kill than the client was to finish).
        train={"local_steps": 20_000, "batch_size": 20, "lr": 0.05},
        deploy__min_clients=5,
    )
    server, port = processes.server(config, tmp_path / "port", "--dashboard", "0")
    url = wait_for(
        lambda: re.search(r"dashboard at (http://127\.0\.0\.1:\d+/)", processes.log("server")),
        60,
        "the dashboard's address",
    )
    clients = [processes.client(port, pki, index) for index in range(6)]
    wait_until_serving(url.group(1))  # type: ignore[union-attr]
    page.open(f"{url.group(1)}#/run/out?view=deployment", "deployment")  # type: ignore[union-attr]
    # Round 1 may start with 5 (``min_clients``) if a client is still busy, so wait for
    # the server to log that it started with all 6: its clients then train for seconds,
    # so killing client 0 now kills it mid-round.
    started = wait_for(
        lambda: _round_started(processes.log_dir / "server.log", 1), 240, "round 1's start"
    )
    assert started["selected"] == 6, started  # type: ignore[index]
    clients[0].send_signal(signal.SIGKILL)
    hit = wait_for(lambda: len(rounds_done(out)) >= 2 and rounds_done(out)[1], 240, "round 1")
    assert hit["dropouts"] == 1, hit  # type: ignore[index]
    dropped = page.page.locator('#deploy-clients tr[data-round="1"][data-outcome="dropped"]')
    dropped.wait_for(timeout=5000)
    assert dropped.get_attribute("data-client") == "0"
    others = page.page.locator('#deploy-clients tr[data-round="1"][data-outcome="completed"]')
    assert others.count() == 5
    connected = page.page.evaluate("Array.from(window.fedsysCharts.dep_connected.data[1])")
    assert max(connected) == 6 and len(connected) >= 2  # sampled every second, live
    assert page.errors == []
    server.wait(timeout=300)
