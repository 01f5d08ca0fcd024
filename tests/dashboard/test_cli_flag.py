"""``fedsys run --dashboard 0``: the run's page answers while it runs and ends with it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.dashboard.conftest import ROOT


def test_run_dashboard_serves_the_run_live_and_stops_with_it(tmp_path: Path) -> None:
    out = tmp_path / "live-run"
    cmd = [sys.executable, "-m", "fedsys", "run", "--quiet", "--output-dir", str(out)]
    cmd += ["--set", "rounds=2000", "--dashboard", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            found = re.search(r"dashboard at (http://127\.0\.0\.1:(\d+)/)#/run/live-run", line)
            if found:
                url, port = found.group(1), int(found.group(2))
                break
        assert url is not None, "no dashboard address printed"
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
    try:
        urllib.request.urlopen(url + "api/runs", timeout=5)
        raise AssertionError("the dashboard outlived its run")
    except urllib.error.URLError:
        pass
    assert port > 0
