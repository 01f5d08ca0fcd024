"""Real deployments for tests: a server process and client processes that always end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from fedsys.deploy.local_deployment import client_arguments
from fedsys.wire import auth, tls

BASE_CONFIG = {
    "seed": 0,
    "rounds": 15,
    "clients_per_round": 8,
    "target_accuracy": 0.85,
    "dataset": {
        "name": "digits",
        "num_clients": 8,
        "partition": {"kind": "dirichlet", "alpha": 0.5},
    },
    "model": {"name": "mlp", "hidden": [64]},
    "train": {"local_steps": 10, "batch_size": 20, "lr": 0.1},
    "devices": {"source": "uniform"},
    "round": {"mode": "sync", "overcommit": 1.0},
    "eval": {"every": 5},
    "deploy": {
        "settle_s": 1.0,
        "wait_for_clients_s": 300,
        "ping_interval_s": 1.0,
        "finish_grace_s": 1.0,
    },
}


def names(count: int) -> list[str]:
    return [f"client-{i:04d}" for i in range(count)]


def provision(pki: Path, count: int) -> Path:
    tls.provision(pki, names(count))
    auth.issue_tokens(pki, names(count))
    return pki


def write_config(path: Path, output_dir: Path, pki: Path, **overrides: object) -> Path:
    config = json.loads(json.dumps(BASE_CONFIG))
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split("__")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    config["output_dir"] = str(output_dir)
    config["deploy"]["cert_dir"] = str(pki)
    config["deploy"]["tokens"] = str(pki / "tokens.json")
    path.write_text(yaml.safe_dump(config))
    return path


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def rounds_done(output_dir: Path) -> list[dict]:
    path = output_dir / "rounds.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


class Processes:
    """Children of one test; ``close`` kills whatever is still running."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[subprocess.Popen[bytes]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def spawn(self, label: str, *arguments: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{label}.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedsys", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        self.children.append(proc)
        return proc

    def server(
        self, config: Path, port_file: Path, *extra: str, label: str = "server"
    ) -> tuple[subprocess.Popen[bytes], int]:
        port_file.unlink(missing_ok=True)
        if "--port" not in extra:
            extra = ("--port", "0", *extra)
        proc = self.spawn(label, "server", str(config), "--port-file", str(port_file), *extra)
        text = wait_for(
            lambda: (
                (port_file.is_file() and port_file.read_text().strip())
                or (proc.poll() is not None and "exited")
            ),
            120,
            "the server's port",
        )
        assert text != "exited", self.log(label)
        return proc, int(str(text))

    def client(self, port: int, pki: Path, index: int, *extra: str) -> subprocess.Popen[bytes]:
        name = names(index + 1)[index]
        return self.spawn(name, *client_arguments(port, pki, name, index), *extra)

    def log(self, label: str) -> str:
        path = self.log_dir / f"{label}.log"
        return path.read_text()[-4000:] if path.is_file() else ""

    def close(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
