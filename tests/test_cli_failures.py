"""Every failure of a command ends in one line that names the cause and the remedy.

Real ``fedsys`` processes: a port held by another socket, a missing certificate
folder, a checkpoint of another config, a piped ``fedsys config``. gRPC's own log
lines never reach the terminal.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fedsys.config.loader import load_config, parse_yaml
from fedsys.config.resolve import resolve_config
from fedsys.config.schema import RunConfig
from fedsys.core.weights import ModelWeights
from fedsys.deploy.checkpoint import ServerCheckpoint, config_hash, training_keys
from tests.deploy.harness import provision, write_config

GRPC_LOG_MARKS = ("add_port.cc", ".cc:", "GRPC_VERBOSITY")


def _fedsys(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_VERBOSITY")}
    env.update({"OMP_NUM_THREADS": "1", "COLUMNS": "80"})
    return subprocess.run(
        [sys.executable, "-m", "fedsys", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The failure's only line on stderr (and nothing of gRPC's)."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    for mark in GRPC_LOG_MARKS:
        assert mark not in done.stdout + done.stderr
    assert done.stderr.startswith("error: ")
    return done.stderr.strip()


@pytest.fixture
def held_port():
    """A port another process's socket listens on (this test's, here)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def test_server_on_a_port_in_use_names_the_port_in_one_line(tmp_path, held_port):
    pki = provision(tmp_path / "pki", 1)
    config = write_config(tmp_path / "run.yaml", tmp_path / "out", pki)

    said = _one_line(_fedsys("server", str(config), "--port", str(held_port)))

    assert f"port {held_port} is already in use" in said
    assert "--port" in said  # the remedy: another port
    assert not (tmp_path / "out").exists()  # checked at start, before the run folder


@pytest.mark.parametrize("mode", [("--job", "histogram", "--sites", "1"), ()],
                         ids=["one-job", "standing"])
def test_silo_coordinator_on_a_port_in_use_names_the_port_in_one_line(tmp_path, held_port, mode):
    pki = provision(tmp_path / "pki", 1)

    said = _one_line(
        _fedsys(
            "silo",
            "coordinator",
            "--tokens",
            str(pki / "tokens.json"),
            "--certs",
            str(pki),
            "--port",
            str(held_port),
            *mode,
        )
    )

    assert f"port {held_port} is already in use" in said


def test_server_without_its_certificate_folder_fails_before_touching_anything(tmp_path):
    pki = provision(tmp_path / "pki", 1)
    config = write_config(tmp_path / "run.yaml", tmp_path / "out", pki)
    missing = tmp_path / "no-such-pki"
    config.write_text(config.read_text().replace(f"cert_dir: {pki}", f"cert_dir: {missing}"))

    said = _one_line(_fedsys("server", str(config), "--port", "0"))

    assert str(missing / "server.key") in said
    assert f"fedsys certs {missing}" in said  # the remedy
    assert not (tmp_path / "out").exists()  # refused before the run folder was claimed


def test_client_without_its_ca_fails_at_once_naming_the_file(tmp_path, held_port):
    pki = provision(tmp_path / "pki", 1)
    missing = tmp_path / "elsewhere" / "ca.pem"

    said = _one_line(
        _fedsys(
            "client",
            "--server",
            f"127.0.0.1:{held_port}",
            "--data-index",
            "0",
            "--token-file",
            str(pki / "clients" / "client-0000.token"),
            "--ca",
            str(missing),
        )
    )

    assert str(missing) in said and "fedsys certs" in said


def _checkpoint(folder: Path, config: RunConfig, stored: dict | None) -> None:
    weights = ModelWeights.from_tensors({"w": torch.zeros(3)})
    folder.mkdir(parents=True, exist_ok=True)
    ServerCheckpoint(config_hash(config), 1, 2.0, weights, None, None, (), stored).save(folder)


def test_resume_under_another_config_names_the_keys_that_differ(tmp_path):
    pki = provision(tmp_path / "pki", 1)
    out = tmp_path / "out"
    config_file = write_config(tmp_path / "run.yaml", out, pki)
    config = load_config(config_file)
    _checkpoint(out, config, training_keys(config))

    said = _one_line(
        _fedsys(
            "server",
            str(config_file),
            "--resume",
            str(out),
            "--port",
            "0",
            "--set",
            "train.lr=0.2",
            "--set",
            "seed=3",
        )
    )

    assert "train.lr: 0.1 there, 0.2 here" in said and "seed: 0 there, 3 here" in said
    assert "rounds" not in said.split("(")[1].split(")")[0]  # only what differs
    assert "deploy section" in said  # what may change, and so the remedy


def test_resume_of_a_checkpoint_without_its_config_still_says_why(tmp_path):
    pki = provision(tmp_path / "pki", 1)
    out = tmp_path / "out"
    config_file = write_config(tmp_path / "run.yaml", out, pki)
    _checkpoint(out, load_config(config_file), None)

    said = _one_line(
        _fedsys(
            "server",
            str(config_file),
            "--resume",
            str(out),
            "--port",
            "0",
            "--set",
            "seed=3",
        )
    )

    assert "written under another config" in said and "cannot be named" in said


def test_same_config_resumes_past_the_early_check(tmp_path):
    config = RunConfig()
    _checkpoint(tmp_path, config, training_keys(config))
    moved = RunConfig.model_validate({"output_dir": "elsewhere", "deploy": {"port": 1}})

    assert ServerCheckpoint.load(tmp_path, moved).config == training_keys(config)


def test_config_piped_to_a_file_is_yaml_that_round_trips(tmp_path):
    path = tmp_path / "file.yaml"
    with open(path, "w") as file:
        done = subprocess.run(
            [sys.executable, "-m", "fedsys", "config"],
            stdout=file,
            timeout=120,
            env={**os.environ, "COLUMNS": "40"},
            check=False,
        )

    assert done.returncode == 0
    raw = parse_yaml(path.read_text())  # the strict loader: no aliases, no duplicates
    assert raw == yaml.safe_load(path.read_text())
    assert load_config(path) == resolve_config(None, {})
    assert yaml.safe_load(yaml.safe_dump(raw)) == raw


def test_a_free_port_passes_the_check_at_start_and_zero_is_never_probed(held_port):
    from fedsys.wire.transport import bind_failure, check_bindable

    check_bindable("127.0.0.1", 0)
    with pytest.raises(OSError, match=f"port {held_port} is already in use"):
        check_bindable("127.0.0.1", held_port)
    assert "does not resolve" in bind_failure("no-such-host.invalid", 5000)


def test_run_resume_after_its_config_was_edited_names_the_keys(tmp_path):
    out = tmp_path / "run"
    done = _fedsys(
        "run",
        "--quiet",
        "--output-dir",
        str(out),
        "--set",
        "rounds=2",
        "--set",
        "dataset.num_clients=20",
        "--set",
        "clients_per_round=5",
    )
    assert done.returncode == 0, done.stderr
    saved = out / "config.yaml"
    raw = parse_yaml(saved.read_text())
    raw["train"]["lr"] = raw["train"]["lr"] * 2
    raw["rounds"] = 3
    saved.write_text(yaml.safe_dump(raw))

    said = _one_line(_fedsys("run", "--resume", str(out)))

    assert "rounds, train.lr differ" in said and "restore them" in said
