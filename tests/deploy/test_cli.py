"""The deployment's commands as a user runs them: certs, deploy local, status, clean errors."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from fedsys.wire import auth
from tests.deploy.harness import provision, wait_for, write_config


def _fedsys(*args: str, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "fedsys", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def test_certs_writes_a_pki_with_private_keys_closed(tmp_path):
    done = _fedsys("certs", str(tmp_path / "pki"), "--clients", "3")
    assert done.returncode == 0, done.stderr
    pki = tmp_path / "pki"
    for name in ("ca.pem", "server.pem", "server.key", "tokens.json"):
        assert (pki / name).is_file()
    assert (pki / "server.key").stat().st_mode & 0o077 == 0
    store = auth.TokenStore(pki / "tokens.json")
    token = auth.read_token(pki / "clients" / "client-0002.token")
    assert store.identify(token) == "client-0002"
    assert token not in (pki / "tokens.json").read_text()  # only digests on the server


def test_readme_deploy_demo_runs_a_real_deployment(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    demo = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)[1].strip().splitlines()
    line = next(row for row in demo if "deploy local" in row)
    arguments = shlex.split(line.split("#")[0])[1:]  # drop ".venv/bin/fedsys"
    assert arguments[:4] == ["deploy", "local", "--clients", "8"]
    arguments[3] = "3"  # the README's line, with fewer clients and rounds for CI
    extra = ["--set", "rounds=3", "--set", "eval.every=1", "--quiet"]
    done = _fedsys(*arguments, *extra, "--output-dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run summary" in done.stdout
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()
    ]
    assert [r["round_idx"] for r in rows] == [0, 1, 2]
    assert all(r["participants"] == 3 and r["accuracy"] is not None for r in rows)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rounds"] == 3 and summary["runtime"] == "deploy"


def test_status_shows_connected_clients(tmp_path, processes):
    pki = provision(tmp_path / "pki", 2)
    config = write_config(
        tmp_path / "run.yaml",
        tmp_path / "out",
        pki,
        clients_per_round=2,
        rounds=100_000,
        dataset={"name": "digits", "num_clients": 2},
        train={"local_steps": 500, "batch_size": 20, "lr": 0.05},
    )
    _, port = processes.server(config, tmp_path / "port")
    processes.client(port, pki, 0)
    processes.client(port, pki, 1)
    token = str(pki / "clients" / "client-0000.token")

    def both_connected() -> str | None:
        shown = _fedsys(
            "status",
            f"127.0.0.1:{port}",
            "--token-file",
            token,
            "--ca",
            str(pki / "ca.pem"),
            timeout=240,
        )
        return shown.stdout if shown.stdout.count("client-000") == 2 else None

    text = str(wait_for(both_connected, 240, "two connected clients in status"))
    assert "round" in text and "/100000" in text
    forged = tmp_path / "forged.token"
    forged.write_text("not-a-real-token\n")
    refused = _fedsys(
        "status",
        f"127.0.0.1:{port}",
        "--token-file",
        str(forged),
        "--ca",
        str(pki / "ca.pem"),
        timeout=240,
    )
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    garbled = _fedsys(
        "status",
        f"127.0.0.1:{port}",
        "--token-file",
        str(pki / "tokens.json"),
        "--ca",
        str(pki / "ca.pem"),
        timeout=240,
    )
    assert garbled.returncode == 1 and "does not hold one token" in garbled.stderr


def test_resume_without_checkpoint_and_missing_certs_are_one_line_errors(tmp_path):
    done = _fedsys("server", "--resume", str(tmp_path / "nothing"), "--port", "0", timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    pki = provision(tmp_path / "pki", 1)
    config = write_config(tmp_path / "run.yaml", tmp_path / "out", pki)
    text = config.read_text().replace(str(pki), str(tmp_path / "missing"))
    config.write_text(text)
    done = _fedsys("server", str(config), "--port", "0", timeout=120)
    assert done.returncode == 1
    assert "cannot read server key" in done.stderr and "fedsys certs" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_server_refuses_a_folder_holding_another_run_in_one_line(tmp_path):
    pki = provision(tmp_path / "pki", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"rounds": 3}\n')
    config = write_config(tmp_path / "run.yaml", out, pki)

    done = _fedsys("server", str(config), "--port", "0", timeout=120)

    said = done.stderr
    assert done.returncode == 1
    assert said.count("\n") == 1  # one line on stderr
    assert "holds another run" in said and "--overwrite" in said
    assert "Traceback" not in done.stderr + done.stdout
    assert (out / "summary.json").read_text() == '{"rounds": 3}\n'


def test_deploy_local_speaks_of_wall_time_only(tmp_path):
    out = tmp_path / "run"
    done = _fedsys(
        "deploy", "local", "--clients", "2", "--set", "rounds=2", "--set", "eval.every=1",
        "--set", "dataset.num_clients=2", "--set", "clients_per_round=2",
        "--output-dir", str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert not [key for key in summary if "virtual" in key]
    assert 0 < summary["training_time_s"] <= summary["elapsed_s"]
    assert summary["torch_threads"] == 1
    assert "elapsed" in done.stdout and "training time" in done.stdout
    assert "virtual" not in done.stdout
