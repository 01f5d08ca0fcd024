"""The deployment view over a real server and real clients (``fedsys server --dashboard``)."""

from __future__ import annotations

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


def test_a_client_killed_mid_round_shows_as_dropped(
    tmp_path: Path, processes: Processes, page: Page
) -> None:
    pki = provision(tmp_path / "pki", 6)
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "run.yaml",
        out,
        pki,
        rounds=5,
        clients_per_round=6,
        dataset={"name": "digits", "num_clients": 6, "partition": {"kind": "iid"}},
        train={"local_steps": 3000, "batch_size": 20, "lr": 0.05},
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
    wait_for(lambda: len(rounds_done(out)) >= 1, 240, "the first round")
    # Round 1's tasks go out as soon as round 0 is recorded; its clients train for
    # seconds (3,000 local steps), so killing one now kills it mid-round.
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
