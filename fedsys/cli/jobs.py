"""``fedsys jobs list|status|logs|cancel|result``: an analyst's jobs on a standing coordinator.

Every command dials the coordinator with the analyst's token (``--coordinator``,
``--token-file``, ``--ca`` or ``--insecure``; the ``FEDSYS_COORDINATOR``,
``FEDSYS_TOKEN_FILE`` and ``FEDSYS_CA`` environment variables give defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["add_jobs_command", "add_remote_options", "federation_from_args", "info_json"]


def add_remote_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--coordinator``, ``--token-file``, ``--ca``, ``--insecure``."""
    address = os.environ.get("FEDSYS_COORDINATOR")
    parser.add_argument("--coordinator", metavar="HOST:PORT", default=address,
                        required=required and address is None,
                        help="a standing coordinator (default: $FEDSYS_COORDINATOR)")
    parser.add_argument("--token-file", default=os.environ.get("FEDSYS_TOKEN_FILE"),
                        help="your analyst token (default: $FEDSYS_TOKEN_FILE)")
    parser.add_argument("--ca", default=os.environ.get("FEDSYS_CA"),
                        help="CA certificate of the coordinator's (default: $FEDSYS_CA)")
    parser.add_argument("--insecure", action="store_true", help="plaintext (explicit opt-out)")


def federation_from_args(args: argparse.Namespace) -> Any:
    """A :class:`~fedsys.federation.Federation` from the remote options.

    Raises
    ------
    ValueError
        Without a token file.
    """
    from fedsys.federation import Federation

    if not args.token_file:
        raise ValueError("an analyst token is needed: --token-file FILE (or $FEDSYS_TOKEN_FILE)")
    return Federation(args.coordinator, token_file=args.token_file, ca=args.ca,
                      insecure=args.insecure)


def info_json(info: Any) -> dict[str, Any]:
    """A job's status as plain JSON."""
    return {"job_id": info.job_id, "analyst": info.analyst, "kind": info.kind,
            "state": info.state, "summary": info.summary, "progress": info.progress,
            "position": info.position, "error": info.error, "refused": list(info.refused),
            "submitted_s": info.submitted_s, "started_s": info.started_s,
            "finished_s": info.finished_s}


def add_jobs_command(subparsers: Any) -> None:
    """Add ``jobs`` to the ``fedsys`` command."""
    parser = subparsers.add_parser("jobs", help="your jobs on a standing coordinator")
    actions = parser.add_subparsers(dest="jobs_action", required=True)
    listing = actions.add_parser("list", help="your jobs, oldest first")
    listing.add_argument("--all", action="store_true",
                         help="every analyst's jobs (others' without what they asked)")
    for name, text in (("status", "a job's state"), ("logs", "a job's events"),
                       ("cancel", "cancel a queued or running job"),
                       ("result", "a finished job's answer (--out: a training run folder)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id", help="the id submit printed")
        if name == "result":
            action.add_argument("--out", help="write a training job's run folder here")
        if name == "status":
            action.add_argument("--wait", action="store_true", help="wait until it ends")
    for action in (listing, *(actions.choices[n] for n in ("status", "logs", "cancel",
                                                           "result"))):
        add_remote_options(action)
        action.add_argument("--json", action="store_true", help="print JSON")
        action.set_defaults(handler=_cmd_jobs)


def _cmd_jobs(args: argparse.Namespace, console: Console) -> int:
    fed = federation_from_args(args)
    with fed:
        action = args.jobs_action
        if action == "list":
            return _print_jobs(fed.jobs(all_analysts=args.all), args, console)
        if action == "status":
            info = fed.wait(args.job_id, 24 * 3600) if args.wait else fed.status(args.job_id)
            return _print_jobs([info], args, console)
        if action == "cancel":
            return _print_jobs([fed.cancel(args.job_id)], args, console)
        if action == "logs":
            lines = fed.logs(args.job_id)
            if args.json:
                sys.stdout.write(json.dumps(lines) + "\n")
            for line in [] if args.json else lines:
                console.print(line, highlight=False, markup=False)
            return 0
        return print_result(fed, args.job_id, args.out, args.json, console)


def print_result(fed: Any, job_id: str, out: str | None, as_json: bool,
                 console: Console) -> int:
    """Print a finished job's answer; write a training job's run folder to ``out``."""
    result = fed.result(job_id)
    written = fed.download(job_id, out) if out else []
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    if "columns" in result:
        print_table(result, console)
    else:
        summary = result.get("summary", {})
        for key in ("rounds", "final_accuracy", "best_accuracy", "wall_s", "status"):
            if key in summary:
                console.print(f"{key}: {summary[key]}", highlight=False)
    if written:
        console.print(f"run folder: {out} ({len(written)} files)", highlight=False)
    return 0


def print_table(result: dict[str, Any], console: Console) -> None:
    """A query's answer as a table, then its noise scales."""
    table = Table(title=f"{len(result['rows'])} rows in {result['duration_s']:.2f} s, "
                        f"{result['bytes_moved']} bytes moved")
    for column in result["columns"]:
        table.add_column(column)
    for row in result["rows"]:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    for column, noise in result.get("noise", {}).items():
        console.print(f"{column}: {noise['mechanism']} noise, scale {noise['scale']:.4g}",
                      highlight=False)


def _print_jobs(infos: list[Any], args: argparse.Namespace, console: Console) -> int:
    if args.json:
        sys.stdout.write(json.dumps([info_json(i) for i in infos]) + "\n")
        return 0
    table = Table(title=f"{len(infos)} jobs")
    for column in ("job", "analyst", "kind", "state", "submitted", "what", "error"):
        table.add_column(column)
    for info in infos:
        state = info.state
        if info.state == "queued" and info.position:
            state += f" ({info.position} ahead)"
        elif info.progress and info.state == "running":
            state += f" ({info.progress})"
        table.add_row(info.job_id, info.analyst, info.kind, state,
                      time.strftime("%H:%M:%S", time.localtime(info.submitted_s)),
                      info.summary, info.error)
    console.print(table)
    return 0
