"""``fedsys run --dashboard 0``: the run's page answers while it runs and ends with it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.dashboard.conftest import ROOT


def _start_run(out: Path) -> tuple[subprocess.Popen[str], str, int]:
    """``fedsys run --dashboard 0`` for 2,000 rounds; the process, the page's URL, its port."""
    cmd = [sys.executable, "-m", "fedsys", "run", "--quiet", "--output-dir", str(out)]
    cmd += ["--set", "rounds=2000", "--dashboard", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"dashboard at (http://127\.0\.0\.1:(\d+)/)#/run/", line)
        if found:
            return proc, found.group(1), int(found.group(2))
    proc.kill()
    raise AssertionError("no dashboard address printed")


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "api/runs", timeout=5)
    except OSError:
        return False
    return True


def test_run_dashboard_serves_the_run_live_and_stops_with_it(tmp_path: Path) -> None:
    proc, url, port = _start_run(tmp_path / "live-run")
    try:
        deadline, seen = time.monotonic() + 180, 0
        while time.monotonic() < deadline and seen < 2:
            try:
                body = json.loads(urllib.request.urlopen(url + "api/runs", timeout=10).read())
            except OSError:  # the child is still starting: its socket queues us meanwhile
                body = {"runs": []}
            runs = {r["id"]: r for r in body["runs"]}
            seen = runs.get("live-run", {}).get("rounds_done", 0)
            time.sleep(0.2)
        assert seen >= 2 and runs["live-run"]["status"] == "running"
        proc.send_signal(signal.SIGINT)  # stop after this round
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert not _answers(url), "the dashboard outlived its run"
    assert port > 0


def test_a_killed_run_s_dashboard_ends_too(tmp_path: Path) -> None:
    # SIGKILL gives the run no chance to stop its child: the child notices it was
    # re-parented and exits on its own.
    proc, url, _ = _start_run(tmp_path / "killed-run")
    try:
        deadline = time.monotonic() + 120
        while not _answers(url):
            assert time.monotonic() < deadline, "the dashboard never answered"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _answers(url):
        assert time.monotonic() < deadline, "the dashboard outlived its killed run"
        time.sleep(0.2)
