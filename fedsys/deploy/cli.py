"""The deployment's commands: ``server``, ``client``, ``certs``, ``status``, ``deploy local``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedsys.deploy.checkpoint import CheckpointError
from fedsys.deploy.device_host import add_emulation_arguments

_EXIT_FAILED = 1


def add_deploy_commands(commands: Any) -> None:
    """Register the deployment's subcommands on the ``fedsys`` parser."""
    server = commands.add_parser("server", help="run a real aggregator (gRPC) for a config")
    server.add_argument("config", nargs="?", help="YAML/TOML config (default: embedded quickstart)")
    _add_overrides(server)
    server.add_argument("--output-dir", help="results, checkpoint and default pki/ folder")
    server.add_argument("--port", type=int, help="port to listen on (0: any free port)")
    server.add_argument("--port-file", type=Path, help="write the bound port here")
    server.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR")
    server.add_argument("--insecure", action="store_true", help="plaintext (no TLS): loopback only")
    start = server.add_mutually_exclusive_group()
    start.add_argument(
        "--start-at", type=float, metavar="UNIX_S", help="start round 0 then (emulated fleets)"
    )
    start.add_argument("--start-at-file", type=Path, help="start round 0 at the time written here")
    server.set_defaults(handler=_cmd_server)

    client = commands.add_parser("client", help="run one participant that dials the aggregator")
    client.add_argument("--server", required=True, metavar="HOST:PORT")
    client.add_argument("--token-file", type=Path, help="this client's token (required)")
    client.add_argument("--ca", type=Path, help="CA certificate that signed the server's")
    client.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    client.add_argument("--key", type=Path, help="client key (mutual TLS)")
    client.add_argument("--insecure", action="store_true", help="plaintext (no TLS)")
    source = client.add_mutually_exclusive_group()
    source.add_argument("--data-index", type=int, help="train on shard I of the run's dataset")
    source.add_argument("--data", type=Path, help="local LEAF folder or FedScale mapping CSV")
    client.add_argument("--max-attempts", type=int, default=20, help="reconnects before giving up")
    add_emulation_arguments(client)
    client.set_defaults(handler=_cmd_client)

    certs = commands.add_parser("certs", help="make a CA, server and client certificates, tokens")
    certs.add_argument("out_dir", type=Path)
    certs.add_argument("--clients", type=int, default=10, help="number of clients to provision")
    certs.add_argument("--prefix", default="client-", help="client names: PREFIX0000, ...")
    certs.add_argument(
        "--hosts", nargs="+", default=["localhost", "127.0.0.1", "::1"], help="server names"
    )
    certs.set_defaults(handler=_cmd_certs)

    status = commands.add_parser("status", help="connected clients and round progress")
    status.add_argument("server", metavar="HOST:PORT")
    status.add_argument("--token-file", type=Path, required=True)
    status.add_argument("--ca", type=Path)
    status.add_argument("--insecure", action="store_true")
    status.set_defaults(handler=_cmd_status)

    deploy = commands.add_parser("deploy", help="start a whole deployment")
    deploy_commands = deploy.add_subparsers(dest="deploy_command", required=True)
    local = deploy_commands.add_parser("local", help="server + N client processes on loopback")
    local.add_argument("config", nargs="?", help="YAML/TOML config (default: embedded quickstart)")
    local.add_argument("--clients", type=int, default=8, help="client processes to start")
    _add_overrides(local)
    local.add_argument("--output-dir", help="where results go (default: the config's + -deploy)")
    local.add_argument("--quiet", action="store_true")
    local.add_argument("--traces", help="emulate the first --clients devices of this trace file")
    local.add_argument(
        "--devices-per-process", type=int, default=10, help="with --traces: devices per process"
    )
    local.add_argument(
        "--warmup-s",
        type=float,
        default=10.0,
        help="with --traces: time for the devices online at the start to connect",
    )
    local.set_defaults(handler=_cmd_deploy_local)


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a dotted config key",
    )


def client_name(prefix: str, index: int) -> str:
    """The name ``fedsys certs`` gives client ``index``."""
    return f"{prefix}{index:04d}"


def _cmd_certs(args: argparse.Namespace, console: Console) -> int:
    from fedsys.wire import auth, tls

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
    from fedsys.cli import _parse_overrides, resolve_config

    overrides = _parse_overrides(args.overrides)
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
    from fedsys.deploy.logs import setup_logging
    from fedsys.deploy.server import AggregatorServer, DeployError
    from fedsys.wire.auth import TokenStore

    config, output_dir = _server_config(args)
    setup_logging(output_dir / "server.log")
    store = TokenStore(tokens_path(config, output_dir))
    server = AggregatorServer(
        server_parts(config),
        store,
        output_dir,
        server_security(config, output_dir),
        resume=bool(args.resume),
        start_at=args.start_at if args.start_at is not None else args.start_at_file,
    )
    try:
        result = _run_until_signal(server.serve(args.port_file))
    except (DeployError, CheckpointError) as exc:
        console.print(f"[bold red]error[/]: {exc}", highlight=False)
        return _EXIT_FAILED
    if result is None:
        console.print("interrupted: the last finished round is checkpointed", highlight=False)
        return 130
    console.print(f"finished {len(result.records)} rounds; results in {output_dir}")
    return 0


def _run_until_signal(coroutine: Any) -> Any:
    """Run ``coroutine``; SIGINT/SIGTERM cancel it and return ``None``."""

    async def main() -> Any:
        task = asyncio.ensure_future(coroutine)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return None

    return asyncio.run(main())


def _cmd_client(args: argparse.Namespace, console: Console) -> int:
    from fedsys.deploy.build import channel_security, folder_provider, shard_provider
    from fedsys.deploy.client import ClientRefusedError, DeployClient
    from fedsys.deploy.logs import setup_logging
    from fedsys.wire.auth import read_token
    from fedsys.wire.transport import Backoff

    if args.profile is not None:
        from fedsys.deploy.device_host import run_from_args

        return run_from_args(args, console)
    if args.token_file is None or (args.data_index is None and args.data is None):
        raise ValueError("fedsys client needs --token-file and one of --data-index, --data")
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
    )
    try:
        reason = _run_until_signal(client.run())
    except (ClientRefusedError, ConnectionError) as exc:
        console.print(f"[bold red]error[/]: {exc}", highlight=False)
        return _EXIT_FAILED
    if reason is None:
        return 130
    logging.getLogger("fedsys.deploy").info("finished", extra={"reason": reason})
    return 0


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
        console.print(f"[bold red]error[/]: {exc.code().name}: {exc.details()}", highlight=False)
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
    from fedsys.deploy.local import run_local

    return run_local(args, console)
