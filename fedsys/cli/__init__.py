"""The ``fedsys`` command: the one place that parses arguments and prints.

Each command group registers itself from its own module (``run``, ``traces``,
``deploy``, ``silo``, ``query``, ``submit``, ``jobs``, ``fidelity``); nothing else in
fedsys imports this package.
"""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Sequence

from rich.console import Console

from fedsys.cli.console import print_error
from fedsys.config.loader import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedsys`` console script; returns the exit status.

    Every user mistake ends in one line on stderr and a non-zero status (2: bad
    config, 1: any other error, 130: interrupted); ``--debug`` shows the traceback.
    """
    # gRPC's C core logs to the terminal on its own (``E... add_port.cc:83] Failed to add
    # port``); commands report every failure in one line of their own. It reads this
    # variable when first imported, which nothing has done yet; a user's value stays.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    console.soft_wrap = not console.is_terminal  # piped: each line as written, never wrapped
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.handler(args, console))
    except ConfigError as exc:
        if debug:
            raise
        print_error("config error", exc)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print_error("interrupted", "stopped by Ctrl-C")
        return 130
    except USER_ERRORS as exc:
        if debug:
            raise
        print_error("error", exc)
        return 1
    except Exception as exc:
        if debug:
            raise
        hint = f"{exc} (run with --debug for the traceback)"
        print_error(f"unexpected {type(exc).__name__}", hint)
        return 1


USER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    RuntimeError,
    pickle.UnpicklingError,
)
"""Errors a user's input or environment causes (missing files, bad values, refused
pickles, exhausted privacy budgets); their messages name the file or key."""


def _parser() -> argparse.ArgumentParser:
    from fedsys.cli.dashboard import add_dashboard_command
    from fedsys.cli.deploy import add_deploy_commands
    from fedsys.cli.fidelity import add_fidelity_command
    from fedsys.cli.jobs import add_jobs_command
    from fedsys.cli.query import add_query_command
    from fedsys.cli.run import add_run_commands
    from fedsys.cli.silo import add_silo_commands
    from fedsys.cli.submit import add_submit_command
    from fedsys.cli.traces import add_traces_commands

    parser = argparse.ArgumentParser(prog="fedsys", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_commands(commands)
    add_traces_commands(commands)
    add_deploy_commands(commands)
    add_silo_commands(commands)
    add_query_command(commands)
    add_submit_command(commands)
    add_jobs_command(commands)
    add_fidelity_command(commands)
    add_dashboard_command(commands)
    return parser
