"""``fedsys deploy local``: a real deployment on loopback in one command.

Provisions certificates and tokens, starts the aggregator and N client processes
(TLS on, each client with its own token and data shard), shows the same progress bar
as ``fedsys run`` from the server's ``rounds.jsonl``, and always ends its children.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fedsys.config.schema import RunConfig
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.metrics.run_folder import read_rounds
from fedsys.metrics.writers import atomic_write_text
from fedsys.wire.supervise import end_all, fedsys_command, spawn, wait_for_port

PORT_WAIT_S = 180.0
HOSTS_WAIT_S = 900.0
"""Longest wait for emulated-device processes to build their data and say ready."""


@dataclass(frozen=True)
class LocalOptions:
    """How ``fedsys deploy local`` lays out a deployment on this machine.

    Attributes
    ----------
    clients
        Client processes (or emulated devices with ``traces``).
    output_dir
        Run folder (default: the config's ``output_dir`` + ``-deploy``).
    traces
        A fleet trace to emulate devices from (``None``: one process per client).
    devices_per_process
        Emulated devices per host process.
    warmup_s
        Lead between every device host being ready and round 0.
    """

    clients: int = 8
    output_dir: Path | None = None
    traces: Path | None = None
    devices_per_process: int = 10
    warmup_s: float = 10.0


@dataclass(frozen=True)
class LocalOutcome:
    """How a local deployment ended: the server's exit status and where its results are."""

    exit_code: int
    output_dir: Path
    result: RunResult | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None


def run_local(
    config: RunConfig,
    options: LocalOptions,
    note: Callable[[str], None] = lambda text: None,
    on_round: Callable[[RoundRecord], None] = lambda record: None,
) -> LocalOutcome:
    """Run the deployment; its children always end, whatever ends it.

    ``note`` receives one-line remarks for a person (what was adjusted), ``on_round``
    each round record as the server writes it.
    """
    from fedsys.wire import auth, tls
    from fedsys.wire.auth import client_name

    if options.clients < 1:
        raise ValueError("--clients must be at least 1")
    output_dir = Path(options.output_dir or f"{config.output_dir}-deploy")
    config = _fit_to_clients(config, options.clients, output_dir, note)
    traces = options.traces
    if traces is not None:
        config = with_traces(config, traces)
    pki = output_dir / "pki"
    names = [client_name("client-", i) for i in range(options.clients)]
    tls.provision(pki, names)
    auth.issue_tokens(pki, names)
    launch = output_dir / "launch.yaml"
    atomic_write_text(launch, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    port_file = output_dir / "port"
    port_file.unlink(missing_ok=True)
    logs = output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    # deploy local reuses its folder: the server replaces the run files of the last run
    server_args = [
        "server", str(launch), "--port", "0", "--port-file", str(port_file), "--overwrite"
    ]
    epoch_file = output_dir / "epoch"
    for stale in [epoch_file, *output_dir.glob("epoch.ready.*")]:
        stale.unlink(missing_ok=True)
    if traces is not None:
        server_args += ["--start-at-file", str(epoch_file)]
    try:
        server = _spawn(server_args, logs / "server.out")
        children.append(server)
        port = wait_for_port(port_file, server, PORT_WAIT_S, "the aggregator")
        if traces is None:
            for index, name in enumerate(names):
                arguments = client_arguments(port, pki, name, index)
                children.append(_spawn(arguments, logs / f"{name}.out"))
        else:
            groups = device_groups(options.clients, options.devices_per_process)
            for first, last in groups:
                arguments = [
                    *device_host_arguments(port, pki, first, last, traces, launch),
                    *["--epoch-file", str(epoch_file)],
                    *["--timings", str(output_dir / "timings.jsonl")],
                ]
                children.append(_spawn(arguments, logs / f"devices-{first:04d}-{last:04d}.out"))
            _start_trace_clock(epoch_file, len(groups), children, options.warmup_s)
        seen = 0
        while server.poll() is None:
            records = read_rounds(output_dir)
            for record in records[seen:]:
                on_round(record)
            seen = max(seen, len(records))
            time.sleep(0.2)
        if server.returncode != 0:
            error = (
                f"the aggregator exited with {server.returncode}; see {logs / 'server.out'}"
            )
            return LocalOutcome(int(server.returncode or 1), output_dir, error=error)
    except (RuntimeError, TimeoutError) as exc:
        return LocalOutcome(1, output_dir, error=f"{exc}; see {logs / 'server.out'}")
    finally:
        # Clients leave on their own once the server finished; otherwise end them now.
        _end(children, grace_s=10.0 if children and children[0].poll() is not None else 0.0)
    result = RunResult(tuple(read_rounds(output_dir)), config.model_dump(mode="json"))
    summary = json.loads((output_dir / "summary.json").read_text())
    return LocalOutcome(0, output_dir, result, summary)


def _fit_to_clients(
    config: RunConfig, clients: int, output_dir: Path, note: Callable[[str], None]
) -> RunConfig:
    """Point the run at ``output_dir``, split the data over the ``clients`` processes.

    Built-in datasets are partitioned over exactly as many clients as there are
    processes, so the deployment trains on all the data; K is capped at ``clients``.
    """
    update: dict[str, object] = {"output_dir": str(output_dir)}
    data = config.model_dump(mode="json")
    if config.dataset.name in ("digits", "mnist1d", "synthetic"):
        if config.dataset.num_clients != clients:
            note(
                f"note: splitting {config.dataset.name} over the {clients} client processes "
                f"(dataset.num_clients was {config.dataset.num_clients})"
            )
        data["dataset"]["num_clients"] = clients
    if config.clients_per_round > clients:
        note(f"note: clients_per_round {config.clients_per_round} > {clients} clients; "
             f"using {clients}")
        update["clients_per_round"] = clients
    data.update(update)
    return RunConfig.model_validate(data)


def client_arguments(port: int, pki: Path, name: str, index: int) -> list[str]:
    """``fedsys client`` arguments for loopback client ``name`` training on shard ``index``."""
    return [
        "client",
        "--server",
        f"127.0.0.1:{port}",
        "--ca",
        str(pki / "ca.pem"),
        "--token-file",
        str(pki / "clients" / f"{name}.token"),
        "--data-index",
        str(index),
    ]


def _start_trace_clock(
    epoch_file: Path, hosts: int, children: list[subprocess.Popen[bytes]], lead_s: float
) -> None:
    """Once every device host is ready, write the epoch: round 0 starts ``lead_s`` later.

    The lead lets the devices online at the start connect before the first round.
    """
    deadline = time.monotonic() + HOSTS_WAIT_S
    while len(list(epoch_file.parent.glob(f"{epoch_file.name}.ready.*"))) < hosts:
        exited = [c.returncode for c in children if c.poll() is not None]
        if exited:
            raise RuntimeError(f"a process exited with {exited[0]} while the devices started")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the device hosts were not ready within {HOSTS_WAIT_S:.0f} s")
        time.sleep(0.1)
    atomic_write_text(epoch_file, f"{time.time() + lead_s!r}\n")


def with_traces(config: RunConfig, traces: Path) -> RunConfig:
    """``config`` with its device profiles read from ``traces`` (the emulated fleet's)."""
    data = config.model_dump(mode="json")
    data["devices"].update(source="file", path=str(traces.resolve()))
    return RunConfig.model_validate(data)


def device_groups(devices: int, per_process: int) -> list[tuple[int, int]]:
    """Device id ranges ``(first, last)`` for host processes of ``per_process`` devices."""
    if per_process < 1:
        raise ValueError("--devices-per-process must be at least 1")
    return [
        (first, min(first + per_process, devices) - 1) for first in range(0, devices, per_process)
    ]


def device_host_arguments(
    port: int, pki: Path, first: int, last: int, traces: Path, launch: Path
) -> list[str]:
    """``fedsys client`` arguments of a process emulating devices ``first..last``."""
    return [
        "client",
        "--server",
        f"127.0.0.1:{port}",
        "--ca",
        str(pki / "ca.pem"),
        "--token-dir",
        str(pki / "clients"),
        "--profile",
        f"{first}-{last}",
        "--traces",
        str(traces),
        "--config",
        str(launch),
    ]


def _spawn(arguments: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m fedsys ARGUMENTS`` in its own process group, logging to ``log_path``."""
    return spawn(fedsys_command(*arguments), log_path)


def _end(children: list[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """Let children exit on their own for ``grace_s``, then terminate, then kill (groups)."""
    end_all(children, wait_s=grace_s, term_grace_s=5.0)
