"""``fedsys silo ...``: coordinator, site manager, WAN shaper, tokens and a one-line local demo.

Without ``--job``, ``coordinator`` and ``local`` are a standing federation
(:mod:`fedsys.cli.silo_standing`); with ``--job NAME`` they run one built-in job, late and
early bound (Sol), and exit.

Registered in :mod:`fedsys.cli` with :func:`add_silo_commands`. Handlers take the
parsed arguments and a rich console, and return an exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedsys.cli.console import print_error
from fedsys.cli.dashboard import live_dashboard
from fedsys.cli.silo_standing import (
    add_standing_options,
    cmd_standing_coordinator,
    cmd_standing_local,
    cmd_tokens,
)
from fedsys.cli.silo_watch import add_watch_options, run_job_logged, watch_folder
from fedsys.silo.mode import EngineMode, JobFailedError
from fedsys.silo.shaper import LinkSettings

JOBS = ("histogram", "fedavg")


def add_silo_commands(subparsers: Any) -> None:
    """Add ``silo coordinator|site|shaper|local`` to the ``fedsys`` command."""
    silo = subparsers.add_parser("silo", help="cross-silo engine (Sol): coordinator, sites, demo")
    commands = silo.add_subparsers(dest="silo_command", required=True)
    _add_coordinator(commands.add_parser(
        "coordinator", help="a standing coordinator for sites and analysts (or one --job)"))
    _add_site(commands.add_parser("site", help="run a site manager on local data"))
    _add_shaper(commands.add_parser("shaper", help="a WAN-shaping TCP proxy"))
    _add_local(commands.add_parser(
        "local", help="a standing federation of sample sites on loopback, with a query and "
                      "a training job (--job: baseline vs Sol on one job)"))
    tokens = commands.add_parser("tokens", help="issue analysts' tokens")
    tokens.add_argument("--out", required=True, help="folder for tokens.json and the tokens")
    tokens.add_argument("names", nargs="+", help="one name per analyst")
    tokens.set_defaults(handler=_cmd_tokens)


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", choices=JOBS, default=None,
                        help="run one built-in job and exit (default: a standing federation)")
    parser.add_argument("--mode", choices=("sol", "baseline", "both"), default="both",
                        help="early binding (sol), late binding (baseline) or both in turn")
    parser.add_argument("--parts", type=int, default=40, help="histogram tasks per site")
    parser.add_argument("--passes", type=int, default=1, help="scans per histogram task")
    parser.add_argument("--rounds", type=int, default=5,
                        help="FedAvg rounds (the standing demo's training job too)")
    parser.add_argument("--hidden", type=int, default=512, help="FedAvg MLP hidden width")
    parser.add_argument("--pipelining-degree", type=int, default=32,
                        help="most tasks queued at a site beyond its workers")
    parser.add_argument("--output-threshold-bytes", type=int, default=64 * 1024,
                        help="outputs above this go to communication workers")
    parser.add_argument("--on-site-failure", choices=("rerun", "fail"), default="rerun",
                        help="when a site is lost: rerun its tasks elsewhere, or fail the job")
    parser.add_argument("--job-timeout-s", type=float, default=600.0,
                        help="longest time the job may take")
    parser.add_argument("--json-out", help="write the results as JSON here")
    add_watch_options(parser)


def _add_coordinator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--port-file", help="write the bound port here")
    parser.add_argument("--tokens", required=True, help="tokens.json from 'fedsys certs'")
    parser.add_argument("--certs", help="folder with server.pem/server.key/ca.pem")
    parser.add_argument("--mutual-tls", action="store_true",
                        help="also require site certificates")
    parser.add_argument("--insecure", action="store_true", help="plaintext (explicit opt-out)")
    parser.add_argument("--sites", type=int, help="--job: sites to wait for")
    parser.add_argument("--wait-s", type=float, default=120.0, help="how long to wait for them")
    _add_job_options(parser)
    add_standing_options(parser)
    parser.set_defaults(handler=_cmd_coordinator)


def _add_site(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="site.yaml: the site's tables, datasets and rules "
                        "(without it the site runs every task: trusted, local use only)")
    parser.add_argument("--coordinator", help="HOST:PORT (or its WAN shaper); default: "
                        "site.yaml's coordinator")
    parser.add_argument("--token-file", required=True, help="this site's token")
    parser.add_argument("--name", help="site name for its tasks (default: token file stem)")
    parser.add_argument("--ca", help="CA certificate that signed the coordinator's")
    parser.add_argument("--cert", help="client certificate (mutual TLS)")
    parser.add_argument("--key", help="client key (mutual TLS)")
    parser.add_argument("--server-name", help="name to check in the coordinator's certificate")
    parser.add_argument("--insecure", action="store_true", help="plaintext (explicit opt-out)")
    parser.add_argument("--data", action="append", default=[],
                        metavar="[NAME=]PATH", help="a local dataset (.npz); repeatable")
    parser.add_argument("--workers", type=int, default=2, help="compute worker processes")
    parser.add_argument("--comm-workers", type=int, default=2, help="output senders")
    parser.add_argument("--tasks", action="append", default=[], metavar="MODULE",
                        help="module registering extra tasks; repeatable")
    parser.set_defaults(handler=_cmd_site)


def _add_link_options(parser: argparse.ArgumentParser, rtt_default: float) -> None:
    parser.add_argument("--rtt-ms", type=float, default=rtt_default, help="emulated RTT")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="extra one-way delay, max")
    parser.add_argument("--rate-mbps", type=float, default=None,
                        help="bandwidth per direction in Mbit/s (default: unlimited)")


def _add_shaper(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--listen-host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--listen-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--port-file", help="write the bound port here")
    _add_link_options(parser, rtt_default=100.0)
    parser.set_defaults(handler=_cmd_shaper)


def _add_local(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sites", type=int, default=4, help="site processes to start")
    parser.add_argument("--workers", type=int, default=None,
                        help="compute workers per site (default: CPUs / sites, at least 1)")
    parser.add_argument("--insecure", action="store_true",
                        help="plaintext gRPC on loopback (TLS is on by default)")
    parser.add_argument("--workdir", help="keep certificates, data and logs here")
    parser.add_argument("--serve", action="store_true",
                        help="keep the standing federation up after the demo, until Ctrl-C")
    _add_link_options(parser, rtt_default=100.0)
    _add_job_options(parser)
    parser.set_defaults(handler=_cmd_local)


def link_from_args(args: argparse.Namespace) -> LinkSettings:
    """Per-direction link settings from ``--rtt-ms/--jitter-ms/--rate-mbps``.

    Raises
    ------
    ValueError
        On a negative delay or a non-positive rate.
    """
    rate = args.rate_mbps * 1e6 if args.rate_mbps is not None else None
    return LinkSettings.symmetric(args.rtt_ms / 1000, rate, args.jitter_ms / 1000)


def describe_link(link: LinkSettings) -> str:
    """One direction of a WAN path in words: ``50 ms one-way, no rate limit``."""
    words = [f"{link.delay_s * 1000:g} ms one-way"]
    if link.jitter_s:
        words.append(f"up to {link.jitter_s * 1000:g} ms jitter")
    words.append(
        "no rate limit" if link.rate_bps is None else f"{link.rate_bps / 1e6:g} Mbit/s"
    )
    return ", ".join(words)


def modes_from_args(args: argparse.Namespace) -> list[tuple[str, EngineMode]]:
    """The engine modes to run, baseline first."""
    common: dict[str, Any] = {
        "max_degree": args.pipelining_degree,
        "output_threshold_bytes": args.output_threshold_bytes,
        "on_site_failure": args.on_site_failure,
    }
    modes = []
    if args.mode in ("baseline", "both"):
        modes.append(("baseline", EngineMode.baseline(**common)))
    if args.mode in ("sol", "both"):
        modes.append(("sol", EngineMode.sol(**common)))
    return modes


def build_job(args: argparse.Namespace, datasets: Sequence[str]) -> Any:
    """The built-in job named by ``--job`` over ``datasets``."""
    if args.job == "histogram":
        from fedsys.silo.histogram_job import histogram_job

        return histogram_job(datasets, args.parts, lo=-5.0, hi=5.0, passes=args.passes)
    from fedsys.aggregation import FedAvg
    from fedsys.silo.training_job import fedavg_job

    spec = {"kind": "mlp", "input_shape": [64], "num_classes": 10, "hidden": [args.hidden]}
    return fedavg_job(datasets, args.rounds, spec, {"local_steps": 5, "batch_size": 32},
                      FedAvg())


async def run_modes(coordinator: Any, args: argparse.Namespace, console: Console) -> int:
    """Run the job in each mode on the connected sites; print times and the speedup."""
    datasets = sorted({d for view in coordinator.live_sites() for d in view.datasets})
    table = Table(title=f"silo job {args.job} on {len(coordinator.live_sites())} sites")
    for column in ("mode", "time (s)", "tasks", "requests", "assign msgs", "result sha256"):
        table.add_column(column)
    results: dict[str, Any] = {}
    for name, mode in modes_from_args(args):
        result = await run_job_logged(coordinator, build_job(args, datasets), mode, name,
                                      args.job_timeout_s, watch_folder(args))
        digest = _digest(result)
        results[name] = {"duration_s": result.duration_s, "stats": result.stats,
                         "result_sha256": digest}
        table.add_row(name, f"{result.duration_s:.2f}", str(len(result.records)),
                      str(result.stats["requests"]), str(result.stats["assign_messages"]),
                      digest[:12])
    console.print(table)
    if "baseline" in results and "sol" in results:
        speedup = results["baseline"]["duration_s"] / results["sol"]["duration_s"]
        results["speedup"] = speedup
        console.print(f"speedup: {speedup:.2f}", highlight=False)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _digest(result: Any) -> str:
    import hashlib

    h = hashlib.sha256()
    for key in sorted(result.outputs):
        h.update(result.outputs[key].payload)
    return h.hexdigest()


def _cmd_coordinator(args: argparse.Namespace, console: Console) -> int:
    from fedsys.silo.coordinator import SiloCoordinator
    from fedsys.wire.logs import setup_logging
    from fedsys.wire.transport import ServerSecurity, check_bindable

    setup_logging()
    security = ServerSecurity(Path(args.certs) if args.certs else None, args.mutual_tls,
                              args.insecure)
    security.credentials()  # fail early, with the one-line TLS message
    check_bindable(args.host, args.port)  # a port in use: fail now, in either mode
    if args.job is None:
        # A standing coordinator's training jobs write run folders under --state-dir:
        # the dashboard serves those.
        state_dir = Path(args.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        with live_dashboard(state_dir, args.dashboard, console):
            return cmd_standing_coordinator(args, console, security)
    if args.sites is None:
        raise ValueError("--job needs --sites N (the sites to wait for)")

    async def main() -> int:
        coordinator = SiloCoordinator(Path(args.tokens), security, args.host, args.port)
        port = await coordinator.start()
        if args.port_file:
            Path(args.port_file).write_text(f"{port}\n")
        console.print(f"silo coordinator listening on {args.host}:{port}", highlight=False)
        try:
            await coordinator.wait_for_sites(args.sites, args.wait_s)
            return await run_modes(coordinator, args, console)
        finally:
            await coordinator.stop()

    with live_dashboard(watch_folder(args) or Path("."), args.dashboard, console):
        return _run_async(main, console)


def parse_data(items: Sequence[str]) -> dict[str, str]:
    """``NAME=PATH`` (or ``PATH``, named by its stem) pairs as a dict.

    Raises
    ------
    FileNotFoundError
        If a dataset file does not exist.
    """
    datasets: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        if not Path(path).exists():
            raise FileNotFoundError(f"dataset {name!r}: no file {path}")
        datasets[name] = str(Path(path).resolve())
    return datasets


def _cmd_site(args: argparse.Namespace, console: Console) -> int:
    from fedsys.core.names import plain_name
    from fedsys.silo.gate import SiteGate
    from fedsys.silo.site import SiteManager, SiteSettings
    from fedsys.silo.site_rules import load_site_rules
    from fedsys.wire.auth import read_token
    from fedsys.wire.logs import setup_logging
    from fedsys.wire.transport import ChannelSecurity, open_channel

    setup_logging()
    datasets = parse_data(args.data)
    rules = load_site_rules(args.config) if args.config else None
    if rules is not None:
        datasets = {**rules.datasets(), **datasets}
        args.coordinator = args.coordinator or rules.coordinator
        args.name = args.name or rules.name
    if not args.coordinator:
        raise ValueError("give --coordinator HOST:PORT (or coordinator: in site.yaml)")
    if not datasets:
        raise ValueError("the site exposes no data: give --data or --config site.yaml")
    token = read_token(Path(args.token_file))
    security = ChannelSecurity(
        Path(args.ca) if args.ca else None, Path(args.cert) if args.cert else None,
        Path(args.key) if args.key else None, args.server_name, args.insecure)
    open_channel(args.coordinator, security)  # one-line error for missing TLS material
    settings = SiteSettings(workers=args.workers, comm_workers=args.comm_workers,
                            task_modules=tuple(args.tasks))
    name = plain_name(args.name or Path(args.token_file).stem, "site name")  # names its files
    manager = SiteManager(args.coordinator, token, security, datasets, name, settings,
                          gate=SiteGate(rules))

    async def main() -> int:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await manager.run(stop)
        return 0

    return _run_async(main, console)


def _cmd_shaper(args: argparse.Namespace, console: Console) -> int:
    from fedsys.silo.shaper import ShaperProxy

    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--target must look like HOST:PORT, got {args.target!r}")
    link = link_from_args(args)

    async def main() -> int:
        proxy = ShaperProxy(host, int(port), link, link, args.listen_host, args.listen_port)
        bound = await proxy.start()
        if args.port_file:
            Path(args.port_file).write_text(f"{bound}\n")
        console.print(f"shaping {args.listen_host}:{bound} -> {args.target}: "
                      f"{describe_link(link)} each way", highlight=False)
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await stop.wait()
        await proxy.close()
        return 0

    return _run_async(main, console)


def _cmd_local(args: argparse.Namespace, console: Console) -> int:
    from fedsys.silo.local_federation import LocalCluster

    link = link_from_args(args)
    if args.job is None:
        return cmd_standing_local(args, console, link)

    async def main(workdir: Path) -> int:
        from fedsys.wire.logs import setup_logging

        # The coordinator's log (sites joining and leaving) goes beside the sites' logs:
        # the terminal holds the demo's output, stderr only an error.
        setup_logging(workdir / "logs" / "coordinator.log", to_stderr=False)
        workers = args.workers or max(1, (os.cpu_count() or 1) // args.sites)
        cluster = LocalCluster(workdir, sites=args.sites, workers=workers, link=link,
                               insecure=args.insecure)
        console.print(f"starting {args.sites} sites ({workers} workers each, "
                      f"{'plaintext' if args.insecure else 'TLS'}); "
                      f"link: {describe_link(link)} each way", highlight=False)
        async with cluster:
            assert cluster.coordinator is not None
            return await run_modes(cluster.coordinator, args, console)

    with live_dashboard(watch_folder(args) or Path("."), args.dashboard, console):
        if args.workdir:
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
            return _run_async(lambda: main(Path(args.workdir)), console)
        with tempfile.TemporaryDirectory(prefix="fedsys-silo-") as tmp:
            return _run_async(lambda: main(Path(tmp)), console)


def _cmd_tokens(args: argparse.Namespace, console: Console) -> int:
    return cmd_tokens(args, console)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _run_async(main: Any, console: Console) -> int:
    try:
        return int(asyncio.run(main()))
    except (JobFailedError, TimeoutError, ConnectionError, ImportError) as exc:
        print_error("error", exc)
        return 1
