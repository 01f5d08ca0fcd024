"""The standing parts of ``fedsys silo``: a coordinator that serves until stopped, analyst
tokens, and the standing local demo.

``fedsys silo coordinator`` without ``--job`` serves sites (site tokens) and analysts
(analyst tokens, ``--analysts``) on one port until SIGINT/SIGTERM, keeping its jobs in
``--state-dir``; restarted on the same folder it resumes the jobs it had accepted.
``fedsys silo local`` without ``--job`` starts such a coordinator with sample sites on
loopback, prints how to reach it, and runs one query and one short training job on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from fedsys.cli.jobs import print_table

__all__ = ["add_standing_options", "cmd_standing_coordinator", "cmd_standing_local",
           "cmd_tokens"]


def add_standing_options(parser: argparse.ArgumentParser) -> None:
    """Options of a standing coordinator."""
    parser.add_argument("--analysts", help="the analysts' tokens.json ('fedsys silo tokens'; "
                                           "separate from the sites')")
    parser.add_argument("--state-dir", default="federation-state",
                        help="where jobs, results and run folders are kept")
    parser.add_argument("--tables", default="data",
                        help="the sites' table catalog a query reads when it names none")
    parser.add_argument("--max-active-jobs", type=int, default=8,
                        help="jobs in progress at once")
    parser.add_argument("--concurrent-jobs", type=int, default=4,
                        help="silo jobs running on the sites at once, side by side (each "
                             "site shares its workers between them, by analyst first)")
    parser.add_argument("--budget-epsilon", type=float, default=None,
                        help="an extra per-analyst DP budget on a ledger of the "
                             "coordinator's own (default: none; each site charges its own)")


def _settings(args: argparse.Namespace) -> Any:
    from fedsys.federation.service import FederationSettings

    if args.max_active_jobs < 1:
        raise ValueError(f"--max-active-jobs must be >= 1, got {args.max_active_jobs}")
    if args.concurrent_jobs < 1:
        raise ValueError(f"--concurrent-jobs must be >= 1, got {args.concurrent_jobs}")
    return FederationSettings(max_active_jobs=args.max_active_jobs, tables=args.tables,
                              concurrent_silo_jobs=args.concurrent_jobs,
                              budget_epsilon=args.budget_epsilon,
                              job_timeout_s=args.job_timeout_s)


def cmd_standing_coordinator(args: argparse.Namespace, console: Console, security: Any) -> int:
    """Serve sites and analysts until a signal stops the coordinator."""
    from fedsys.federation.service import StandingCoordinator
    from fedsys.wire.lifecycle import run_until_signal

    if not args.analysts:
        raise ValueError("a standing coordinator needs the analysts' tokens: --analysts "
                         "FILE (from 'fedsys silo tokens'), or --job NAME for one built-in job")
    analysts = Path(args.analysts)
    if not analysts.is_file():
        raise FileNotFoundError(f"no analysts' token file {analysts}")
    standing = StandingCoordinator(Path(args.state_dir), analysts, _settings(args))

    async def main() -> int:
        coordinator = standing.build(Path(args.tokens), security, args.host, args.port)
        port = await coordinator.start()
        try:
            requeued = await standing.begin()
            if args.port_file:
                Path(args.port_file).write_text(f"{port}\n")
            console.print(f"standing coordinator on {args.host}:{port} for sites and "
                          f"analysts; jobs in {args.state_dir}"
                          + (f" ({len(requeued)} resumed)" if requeued else ""),
                          highlight=False)
            await asyncio.Event().wait()  # until a signal cancels it
            return 0
        finally:
            await standing.close()
            await coordinator.stop()

    result = run_until_signal(main())
    return 0 if result is None else int(result)


def cmd_tokens(args: argparse.Namespace, console: Console) -> int:
    """Issue bearer tokens (analysts') into a folder: ``tokens.json`` and one file each."""
    from fedsys.wire.auth import TOKENS_FILE, issue_tokens

    out = Path(args.out)
    if (out / TOKENS_FILE).exists():
        raise FileExistsError(f"{out / TOKENS_FILE} exists: tokens are issued once per folder")
    issue_tokens(out, args.names)
    console.print(f"tokens for {', '.join(args.names)} in {out}/clients/; the coordinator "
                  f"reads {out / TOKENS_FILE}", highlight=False)
    return 0


def cmd_standing_local(args: argparse.Namespace, console: Console, link: Any) -> int:
    """Start a standing federation of sample sites, run a query and a training job on it."""

    async def main(workdir: Path) -> int:
        from fedsys.analytics.sample_data import DEMO_SQL
        from fedsys.federation.local import demo_config, standing_local
        from fedsys.wire.logs import setup_logging

        setup_logging(workdir / "logs" / "coordinator.log", to_stderr=False)
        workers = args.workers or max(1, (os.cpu_count() or 1) // args.sites)
        training = demo_config(args.sites, rounds=args.rounds)
        async with standing_local(workdir, args.sites, workers, link, args.insecure,
                                  training=training) as (standing, cluster, access):
            console.print(f"standing federation: {args.sites} sites ({', '.join(cluster.names)}"
                          f"), {workers} workers each, "
                          f"{'plaintext' if args.insecure else 'TLS'}; coordinator at "
                          f"{access.address}; jobs kept in {standing.state_dir}",
                          highlight=False)
            console.print("each site's own rules, and its ledger and audit log beside them:",
                          highlight=False)
            for name, files in access.sites.items():
                console.print(f"  {name}: {files.rules} ({files.ledger.name}, "
                              f"{files.audit.name})", highlight=False, markup=False)
            options = access.command_options("alice")
            console.print(f"analysts alice and bob reach it with:\n"
                          f"  fedsys query {options} \"SQL\"\n"
                          f"  fedsys submit {options} RUN.yaml\n"
                          f"  fedsys jobs list {options}", highlight=False, markup=False)
            console.print(f"query (alice): {DEMO_SQL}", highlight=False)
            alice = access.client("alice")
            answer = await asyncio.to_thread(alice.query, DEMO_SQL)
            print_table(await asyncio.to_thread(alice.result, answer.job_id), console)
            await _show_rules(alice, console)
            bob = access.client("bob")
            config_text = _config_text(training)
            job_id = await asyncio.to_thread(bob.submit, config_text)
            console.print(f"training (bob): job {job_id}, {training.rounds} rounds of "
                          f"{training.model.name} on {training.dataset.name} over the "
                          f"{args.sites} sites", highlight=False)
            await asyncio.to_thread(bob.wait, job_id, args.job_timeout_s)
            for line in await asyncio.to_thread(bob.logs, job_id):
                if " round " in line:
                    console.print(f"  {line.split(' ', 1)[1]}", highlight=False)
            summary = (await asyncio.to_thread(bob.result, job_id))["summary"]
            console.print(f"final accuracy: {summary.get('final_accuracy')}", highlight=False)
            if args.serve:
                console.print("serving until Ctrl-C", highlight=False)
                await asyncio.Event().wait()
        return 0

    from fedsys.wire.lifecycle import run_until_signal

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        result = run_until_signal(main(Path(args.workdir)))
        return 0 if result is None else int(result)
    with tempfile.TemporaryDirectory(prefix="fedsys-federation-") as tmp:
        result = run_until_signal(main(Path(tmp)))
    return 0 if result is None else int(result)


async def _show_rules(alice: Any, console: Console) -> None:
    """The sites' rules at work: a hidden column refused, a DP-only one noised and charged
    to alice at each site."""
    from fedsys.federation import JobRefusedError
    from fedsys.federation.demo_sites import INCOME_BOUNDS

    try:
        await asyncio.to_thread(alice.query, "SELECT COUNT(patient_id) AS n FROM visits")
    except JobRefusedError as exc:
        console.print(f"query (alice) on patient_id: {exc.info.error}", highlight=False,
                      markup=False)
    sql = "SELECT AVG(income) AS mean_income FROM visits"
    answer = await asyncio.to_thread(alice.query, sql, epsilon=0.5,
                                     bounds={"income": list(INCOME_BOUNDS)})
    console.print(f"query (alice, epsilon 0.5, charged at each site to alice): {sql} -> "
                  f"{answer.rows[0][0]:.0f}", highlight=False, markup=False)


def _config_text(config: Any) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
