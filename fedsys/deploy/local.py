"""``fedsys deploy local``: a real deployment on loopback in one command.

Provisions certificates and tokens, starts the aggregator and N client processes
(TLS on, each client with its own token and data shard), shows the same progress bar
as ``fedsys run`` from the server's ``rounds.jsonl``, and always ends its children.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console

from fedsys.config.schema import RunConfig
from fedsys.metrics.records import RunResult
from fedsys.metrics.writers import atomic_write_text

PORT_WAIT_S = 180.0
HOSTS_WAIT_S = 900.0
"""Longest wait for emulated-device processes to build their data and say ready."""


def run_local(args: argparse.Namespace, console: Console) -> int:
    """Run the deployment; exit status of the server (130 on Ctrl-C)."""
    from fedsys.cli import _parse_overrides, _progress, _summary_table, resolve_config
    from fedsys.deploy.cli import client_name
    from fedsys.deploy.server import record_from_json
    from fedsys.wire import auth, tls

    if args.clients < 1:
        raise ValueError("--clients must be at least 1")
    overrides = _parse_overrides(args.overrides)
    config = resolve_config(args.config, overrides)
    output_dir = Path(args.output_dir or f"{config.output_dir}-deploy")
    config = _fit_to_clients(config, args.clients, output_dir, console)
    traces = getattr(args, "traces", None)
    if traces is not None:
        config = with_traces(config, Path(traces))
    pki = output_dir / "pki"
    names = [client_name("client-", i) for i in range(args.clients)]
    tls.provision(pki, names)
    auth.issue_tokens(pki, names)
    launch = output_dir / "launch.yaml"
    atomic_write_text(launch, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    port_file = output_dir / "port"
    port_file.unlink(missing_ok=True)
    (output_dir / "rounds.jsonl").unlink(missing_ok=True)
    logs = output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]fedsys deploy local[/]: aggregator + {args.clients} "
        f"{'client processes' if traces is None else 'emulated devices'} on "
        f"loopback (TLS, per-client tokens), {config.clients_per_round}/round, "
        f"{config.rounds} rounds, selector={config.selector.name}",
        highlight=False,
    )
    children: list[subprocess.Popen[bytes]] = []
    server_args = ["server", str(launch), "--port", "0", "--port-file", str(port_file)]
    epoch_file = output_dir / "epoch"
    for stale in [epoch_file, *output_dir.glob("epoch.ready.*")]:
        stale.unlink(missing_ok=True)
    if traces is not None:
        server_args += ["--start-at-file", str(epoch_file)]
    try:
        server = _spawn(server_args, logs / "server.out")
        children.append(server)
        port = _wait_for_port(port_file, server)
        if traces is None:
            for index, name in enumerate(names):
                arguments = client_arguments(port, pki, name, index)
                children.append(_spawn(arguments, logs / f"{name}.out"))
        else:
            groups = device_groups(args.clients, args.devices_per_process)
            for first, last in groups:
                arguments = [
                    *device_host_arguments(port, pki, first, last, Path(traces), launch),
                    *["--epoch-file", str(epoch_file)],
                    *["--timings", str(output_dir / "timings.jsonl")],
                ]
                children.append(_spawn(arguments, logs / f"devices-{first:04d}-{last:04d}.out"))
            _start_trace_clock(epoch_file, len(groups), children, args.warmup_s)
        rounds_file = output_dir / "rounds.jsonl"
        with _progress(console, config.rounds, disable=args.quiet) as progress:
            task = progress.add_task("deploying", total=config.rounds, acc="-", vtime="0 s")
            seen = 0
            while server.poll() is None:
                rows = _read_rows(rounds_file)
                for row in rows[seen:]:
                    fields = {"vtime": f"{row['end_s']:.1f} s"}
                    if row.get("accuracy") is not None:
                        fields["acc"] = f"{row['accuracy']:.3f}"
                    progress.update(task, completed=row["round_idx"] + 1, **fields)
                seen = max(seen, len(rows))
                time.sleep(0.2)
        if server.returncode != 0:
            console.print(
                f"[bold red]error[/]: the aggregator exited with {server.returncode}; "
                f"see {logs / 'server.out'}",
                highlight=False,
            )
            return int(server.returncode or 1)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, TimeoutError) as exc:
        console.print(f"[bold red]error[/]: {exc}; see {logs / 'server.out'}", highlight=False)
        return 1
    finally:
        _end(children)
    records = tuple(record_from_json(row) for row in _read_rows(output_dir / "rounds.jsonl"))
    result = RunResult(records, config.model_dump(mode="json"))
    summary = json.loads((output_dir / "summary.json").read_text())
    console.print(_summary_table(result, summary))
    console.print(f"results in [bold]{output_dir}[/] (wall-clock seconds)", highlight=False)
    return 0


def _fit_to_clients(
    config: RunConfig, clients: int, output_dir: Path, console: Console
) -> RunConfig:
    """Point the run at ``output_dir``, split the data over the ``clients`` processes.

    Built-in datasets are partitioned over exactly as many clients as there are
    processes, so the deployment trains on all the data; K is capped at ``clients``.
    """
    update: dict[str, object] = {"output_dir": str(output_dir)}
    data = config.model_dump(mode="json")
    if config.dataset.name in ("digits", "mnist1d", "synthetic"):
        if config.dataset.num_clients != clients:
            console.print(
                f"note: splitting {config.dataset.name} over the {clients} client processes "
                f"(dataset.num_clients was {config.dataset.num_clients})",
                highlight=False,
            )
        data["dataset"]["num_clients"] = clients
    if config.clients_per_round > clients:
        console.print(
            f"note: clients_per_round {config.clients_per_round} > {clients} clients; "
            f"using {clients}",
            highlight=False,
        )
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
    log = log_path.open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "fedsys", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            # N processes share this machine's cores: one torch thread each avoids the
            # oversubscription that makes small-model training many times slower.
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
        )
    finally:
        log.close()


def _wait_for_port(port_file: Path, server: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + PORT_WAIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the aggregator exited with {server.returncode} before listening")
        if port_file.is_file():
            text = port_file.read_text().strip()
            if text:
                return int(text)
        time.sleep(0.1)
    raise TimeoutError(f"the aggregator did not report its port within {PORT_WAIT_S:.0f} s")


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line being written
    return rows


def _end(children: list[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """Let children exit on their own, then terminate, then kill."""
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)
