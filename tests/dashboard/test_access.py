"""Who may read a dashboard: loopback names only, and a token off the loopback interface."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fedsys.cli import main


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                json.loads(response.read()),
                response.headers.get("set-cookie", ""),
            )
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body), ""
        except ValueError:
            return exc.code, body.decode(), ""


def test_a_foreign_host_name_is_refused_on_loopback(sim_runs: Path, start_dashboard: Any) -> None:
    url = start_dashboard(sim_runs)

    assert _get(url + "api/runs")[0] == 200
    assert _get(url + "api/runs", {"Host": "attacker.example"})[0] == 400


def test_off_loopback_every_request_needs_the_token(sim_runs: Path, start_dashboard: Any) -> None:
    url = start_dashboard(sim_runs, extra=("--host", "0.0.0.0", "--token", "s3cret-token"))

    status, body, _ = _get(url + "api/runs")
    assert status == 401 and "token" in body["error"]
    assert _get(url + "api/runs?token=wrong")[0] == 401
    status, body, cookie = _get(url + "api/runs?token=s3cret-token")
    assert status == 200 and len(body["runs"]) == 2
    assert "fedsys_dashboard_token=s3cret-token" in cookie and "HttpOnly" in cookie
    assert _get(url + "api/runs", {"Authorization": "Bearer s3cret-token"})[0] == 200
    assert _get(url + "api/runs", {"Cookie": "fedsys_dashboard_token=s3cret-token"})[0] == 200


def test_the_dashboard_command_refuses_a_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboard", str(tmp_path / "nope")]) == 1
    assert "not a folder" in capsys.readouterr().err
