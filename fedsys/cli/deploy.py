"""The deployment's commands: ``server``, ``client``, ``certs``, ``status``, ``deploy local``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedsys.cli.console import (
    add_rounds_task,
    print_error,
    progress_bar,
    round_updater,
    summary_table,
)
from fedsys.cli.dashboard import add_dashboard_flag, live_dashboard
from fedsys.cli.options import add_fleet_launch_options, add_overrides
from fedsys.config.resolve import parse_overrides, resolve_config

_EXIT_FAILED = 1


def add_deploy_commands(commands: Any) -> None:
    """Register the deployment's subcommands on the ``fedsys`` parser."""
    server = commands.add_parser("server", help="run a real aggregator (gRPC) for a config")
    server.add_argument("config", nargs="?", help="YAML/TOML config (default: embedded quickstart)")
    add_overrides(server)
    server.add_argument("--output-dir", help="results, checkpoint and default pki/ folder")
    server.add_argument("--port", type=int, help="port to listen on (0: any free port)")
    server.add_argument("--port-file", type=Path, help="write the bound port here")
    server.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR")
    server.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run files of another run in the output dir",
    )
    server.add_argument("--insecure", action="store_true", help="plaintext (no TLS): loopback only")
    start = server.add_mutually_exclusive_group()
    start.add_argument(
        "--start-at", type=float, metavar="UNIX_S", help="start round 0 then (emulated fleets)"
    )
    start.add_argument("--start-at-file", type=Path, help="start round 0 at the time written here")
    add_dashboard_flag(server)
    server.set_defaults(handler=_cmd_server)

    client = commands.add_parser("client", help="run one participant that dials the aggregator")
    client.add_argument(
        "--server", required=True, metavar="HOST:PORT", help="the aggregator to dial"
    )
    client.add_argument("--token-file", type=Path, help="this client's token (required)")
    client.add_argument("--ca", type=Path, help="CA certificate that signed the server's")
    client.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    client.add_argument("--key", type=Path, help="client key (mutual TLS)")
    client.add_argument("--insecure", action="store_true", help="plaintext (no TLS)")
    source = client.add_mutually_exclusive_group()
    source.add_argument("--data-index", type=int, help="train on shard I of the run's dataset")
    source.add_argument("--data", type=Path, help="local LEAF folder or FedScale mapping CSV")
    client.add_argument("--max-attempts", type=int, default=20, help="reconnects before giving up")
    client.add_argument(
        "--session-s",
        type=float,
        help="seconds this device expects to stay online (reported at each subscribe, counted "
        "from the client's start; availability-aware selectors use it)",
    )
    add_emulation_arguments(client)
    client.set_defaults(handler=_cmd_client)

    certs = commands.add_parser("certs", help="make a CA, server and client certificates, tokens")
    certs.add_argument("out_dir", type=Path, help="folder for the CA, certificates and tokens")
    certs.add_argument("--clients", type=int, default=10, help="number of clients to provision")
    certs.add_argument("--prefix", default="client-", help="client names: PREFIX0000, ...")
    certs.add_argument(
        "--hosts", nargs="+", default=["localhost", "127.0.0.1", "::1"], help="server names"
    )
    certs.set_defaults(handler=_cmd_certs)

    status = commands.add_parser("status", help="connected clients and round progress")
    status.add_argument("server", metavar="HOST:PORT", help="the aggregator to ask")
    status.add_argument("--token-file", type=Path, required=True, help="a client token to ask with")
    status.add_argument("--ca", type=Path, help="CA certificate that signed the server's")
    status.add_argument("--insecure", action="store_true", help="plaintext (no TLS)")
    status.set_defaults(handler=_cmd_status)

    deploy = commands.add_parser("deploy", help="start a whole deployment")
    deploy_commands = deploy.add_subparsers(dest="deploy_command", required=True)
    local = deploy_commands.add_parser("local", help="server + N client processes on loopback")
    local.add_argument("config", nargs="?", help="YAML/TOML config (default: embedded quickstart)")
    local.add_argument("--clients", type=int, default=8, help="client processes to start")
    add_overrides(local)
    local.add_argument("--output-dir", help="where results go (default: the config's + -deploy)")
    local.add_argument("--quiet", action="store_true", help="no progress bar")
    local.add_argument("--traces", help="emulate the first --clients devices of this trace file")
    add_fleet_launch_options(local, "with --traces: ")
    add_dashboard_flag(local)
    local.set_defaults(handler=_cmd_deploy_local)


def _cmd_certs(args: argparse.Namespace, console: Console) -> int:
    from fedsys.wire import auth, tls
    from fedsys.wire.auth import client_name

    if args.clients < 1:
        raise ValueError("--clients must be at least 1")
    names = [client_name(args.prefix, i) for i in range(args.clients)]
    tls.provision(args.out_dir, names, tuple(args.hosts))
    auth.issue_tokens(args.out_dir, names)
    console.print(
        f"wrote CA, server certificate, {len(names)} client certificates and tokens "
        f"to {args.out_dir} (keys and tokens are mode 0600)",
        highlight=False,
    )
    return 0


def _server_config(args: argparse.Namespace) -> tuple[Any, Path]:
    overrides = parse_overrides(args.overrides)
    if args.resume:
        if args.output_dir and Path(args.output_dir) != Path(args.resume):
            raise ValueError("--resume DIR continues in DIR; do not also pass --output-dir")
        overrides["output_dir"] = args.resume
        config_path = args.config or str(Path(args.resume) / "config.yaml")
    else:
        config_path = args.config
        if args.output_dir:
            overrides["output_dir"] = args.output_dir
    if args.port is not None:
        overrides["deploy.port"] = args.port
    if args.insecure:
        overrides["deploy.insecure"] = True
    config = resolve_config(config_path, overrides)
    return config, Path(config.output_dir)


def _cmd_server(args: argparse.Namespace, console: Console) -> int:
    from fedsys.deploy.build import server_parts, server_security, tokens_path
    from fedsys.deploy.checkpoint import CheckpointError, ServerCheckpoint
    from fedsys.deploy.server import AggregatorServer, DeployError
    from fedsys.metrics.run_folder import OutputExistsError
    from fedsys.wire.auth import TokenStore
    from fedsys.wire.lifecycle import run_until_signal
    from fedsys.wire.logs import setup_logging
    from fedsys.wire.transport import check_bindable

    config, output_dir = _server_config(args)
    server_security(config, output_dir).credentials()  # missing certificates: fail now
    check_bindable(config.deploy.host, config.deploy.port)  # a port in use: fail now
    if args.resume:  # another config's checkpoint: fail now, not after building the parts
        ServerCheckpoint.load(output_dir, config)
    setup_logging(output_dir / "server.log")
    store = TokenStore(tokens_path(config, output_dir))
    server = AggregatorServer(
        server_parts(config),
        store,
        output_dir,
        server_security(config, output_dir),
        resume=bool(args.resume),
        start_at=args.start_at if args.start_at is not None else args.start_at_file,
        overwrite=args.overwrite,
    )
    try:
        with live_dashboard(output_dir, args.dashboard, console):
            result = run_until_signal(server.serve(args.port_file))
    except (DeployError, CheckpointError, OutputExistsError) as exc:
        print_error("error", exc)
        return _EXIT_FAILED
    if result is None:
        console.print("interrupted: the last finished round is checkpointed", highlight=False)
        return 130
    console.print(f"finished {len(result.records)} rounds; results in {output_dir}")
    return 0



def _cmd_client(args: argparse.Namespace, console: Console) -> int:
    from fedsys.deploy.build import channel_security, folder_provider, shard_provider
    from fedsys.deploy.client import ClientRefusedError, DeployClient
    from fedsys.wire.auth import read_token
    from fedsys.wire.lifecycle import run_until_signal
    from fedsys.wire.logs import setup_logging
    from fedsys.wire.transport import Backoff

    if args.profile is not None:
        return _run_device_host(args, console)
    if args.token_file is None or (args.data_index is None and args.data is None):
        raise ValueError("fedsys client needs --token-file and one of --data-index, --data")
    channel_security(args.ca, args.cert, args.key, args.insecure).credentials()  # fail now
    setup_logging()
    provider = (
        shard_provider(args.data_index)
        if args.data_index is not None
        else folder_provider(args.data)
    )
    client = DeployClient(
        address=args.server,
        token=read_token(args.token_file),
        security=channel_security(args.ca, args.cert, args.key, args.insecure),
        data=provider,
        backoff=Backoff(base_s=0.5, cap_s=10.0, max_attempts=args.max_attempts),
        session_remaining_s=session_clock(args.session_s),
    )
    try:
        reason = run_until_signal(client.run())
    except (ClientRefusedError, ConnectionError) as exc:
        print_error("error", exc)
        return _EXIT_FAILED
    if reason is None:
        return 130
    logging.getLogger("fedsys.deploy").info("finished", extra={"reason": reason})
    return 0


def session_clock(session_s: float | None) -> Callable[[], float | None] | None:
    """Seconds left of a session of ``session_s`` that starts now (``None``: not reported).

    Raises
    ------
    ValueError
        If ``session_s`` is negative or not finite.
    """
    if session_s is None:
        return None
    if not math.isfinite(session_s) or session_s < 0:
        raise ValueError(f"--session-s must be a finite number >= 0, got {session_s}")
    ends = time.monotonic() + session_s
    return lambda: max(ends - time.monotonic(), 0.0)


def _cmd_status(args: argparse.Namespace, console: Console) -> int:
    import grpc

    from fedsys.deploy.build import channel_security
    from fedsys.wire.auth import bearer_metadata, read_token
    from fedsys.wire.protos import deploy_pb2, deploy_pb2_grpc
    from fedsys.wire.transport import open_channel

    async def ask() -> Any:
        security = channel_security(args.ca, None, None, args.insecure)
        async with open_channel(args.server, security) as channel:
            stub = deploy_pb2_grpc.AggregatorStub(channel)
            return await stub.Status(
                deploy_pb2.StatusRequest(),
                metadata=bearer_metadata(read_token(args.token_file)),
                timeout=10,
            )

    try:
        reply = asyncio.run(ask())
    except grpc.aio.AioRpcError as exc:
        from fedsys.wire.errors import error_text

        print_error("error", error_text(exc))
        return _EXIT_FAILED
    console.print(
        f"round {reply.round_idx}/{reply.rounds} ({reply.phase}): {reply.received} of "
        f"{reply.assigned} updates in; last accuracy {reply.accuracy:.4f}",
        highlight=False,
    )
    table = Table(title=f"{len(reply.clients)} connected clients")
    for column in ("id", "name", "state", "last seen"):
        table.add_column(column)
    for c in reply.clients:
        table.add_row(str(c.client_id), c.name, c.state, f"{c.last_seen_s:.1f} s ago")
    console.print(table)
    return 0


def _cmd_deploy_local(args: argparse.Namespace, console: Console) -> int:
    from fedsys.deploy.local_deployment import LocalOptions, run_local

    config = resolve_config(args.config, parse_overrides(args.overrides))
    options = LocalOptions(
        clients=args.clients,
        output_dir=Path(args.output_dir) if args.output_dir else None,
        traces=Path(args.traces) if args.traces else None,
        devices_per_process=args.devices_per_process,
        warmup_s=args.warmup_s,
    )
    console.print(
        f"[bold]fedsys deploy local[/]: aggregator + {args.clients} "
        f"{'client processes' if options.traces is None else 'emulated devices'} on "
        f"loopback (TLS, per-client tokens), {min(config.clients_per_round, args.clients)}/round, "
        f"{config.rounds} rounds, selector={config.selector.name}",
        highlight=False,
    )
    with progress_bar(console, config.rounds, disable=args.quiet, clock="wall") as progress:
        task = add_rounds_task(progress, "deploying", config.rounds)
        on_round = round_updater(progress, task)

        def note(text: str) -> None:
            progress.console.print(text, highlight=False)

        folder = options.output_dir or Path(f"{config.output_dir}-deploy")
        try:
            with live_dashboard(folder, args.dashboard, progress.console):
                outcome = run_local(config, options, note=note, on_round=on_round)
        except KeyboardInterrupt:
            return 130
    if outcome.error is not None:
        print_error("error", outcome.error)
        return outcome.exit_code
    assert outcome.result is not None and outcome.summary is not None
    console.print(summary_table(outcome.result, outcome.summary))
    console.print(f"results in [bold]{outcome.output_dir}[/] (wall-clock seconds)", highlight=False)
    return 0


def add_emulation_arguments(client: argparse.ArgumentParser) -> None:
    """The ``fedsys client`` flags that turn it into emulated traced devices."""
    group = client.add_argument_group("device emulation")
    group.add_argument(
        "--profile", help="emulate device ID of --traces (or a range A-B, or a comma list)"
    )
    group.add_argument("--traces", type=Path, help="device traces: fedsys CSV or FedScale folder")
    group.add_argument(
        "--config", type=Path, help="the run's config (devices section, data, model)"
    )
    epoch = group.add_mutually_exclusive_group()
    epoch.add_argument(
        "--epoch", type=float, help="unix time at which the trace's clock reads 0 (default: now)"
    )
    epoch.add_argument(
        "--epoch-file", type=Path, help="say ready beside this file, then read the epoch from it"
    )
    group.add_argument("--latency-ms", type=float, default=0.0, help="one-way link latency")
    group.add_argument("--timings", type=Path, help="append each task's timings as JSON lines")
    group.add_argument(
        "--token-dir", type=Path, help="several profiles: tokens at DIR/<prefix>NNNN.token"
    )
    group.add_argument("--token-prefix", default="client-", help="token file names' prefix")


def _run_device_host(args: argparse.Namespace, console: Console) -> int:
    """``fedsys client --profile ...``: emulated devices in this one process."""
    from fedsys.deploy.build import channel_security
    from fedsys.deploy.client import ClientRefusedError
    from fedsys.deploy.device_host import DeviceHostOptions, parse_profiles, run_device_host
    from fedsys.wire.logs import setup_logging

    profiles = parse_profiles(args.profile)
    if args.traces is None or args.config is None:
        raise ValueError("--profile needs --traces FILE and --config RUN.yaml")
    channel_security(args.ca, args.cert, args.key, args.insecure).credentials()  # fail now
    options = DeviceHostOptions(
        profiles=tuple(profiles),
        traces=args.traces,
        config=resolve_config(str(args.config), {}),
        server=args.server,
        security=channel_security(args.ca, args.cert, args.key, args.insecure),
        token_file=args.token_file,
        token_dir=args.token_dir,
        token_prefix=args.token_prefix,
        data_index=args.data_index,
        data=args.data,
        latency_ms=args.latency_ms,
        timings=args.timings,
        epoch=args.epoch,
        epoch_file=args.epoch_file,
        max_attempts=args.max_attempts,
    )
    setup_logging()
    try:
        reasons = run_device_host(options)
    except (ClientRefusedError, ConnectionError, TimeoutError) as exc:
        print_error("error", exc)
        return 1
    return 130 if reasons is None else 0
