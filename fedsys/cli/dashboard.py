"""``fedsys dashboard`` and the ``--dashboard [PORT]`` flag of the commands that run.

A command given ``--dashboard`` starts ``fedsys dashboard RUN_DIR`` as a child
process at a lower CPU priority and stops it when the command ends: the run writes
its folder, the dashboard only reads it, so the run never waits on a page.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

DEFAULT_PORT = 8765
"""The dashboard's port when none is given (``fedsys.dashboard.serve`` uses the same)."""
START_TIMEOUT_S = 30.0
CHILD_NICENESS = 5
"""How much lower the dashboard's CPU priority is than the run's."""


def add_dashboard_command(commands: Any) -> None:
    """Register ``dashboard`` on the ``fedsys`` parser."""
    command = commands.add_parser(
        "dashboard",
        help="serve a live web view of run folders (needs fedsys[dashboard])",
        description="Serve a read-only web page over run folders: runs list and comparison, "
        "each run's rounds, client timelines, fleet, selector, deployment and silo views, "
        "updated live while the runs write.",
    )
    command.add_argument(
        "run_dirs",
        nargs="*",
        metavar="RUN_DIR",
        help="run folders, or folders holding them (default: runs/)",
    )
    command.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    command.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1; any other needs a token)",
    )
    command.add_argument(
        "--token",
        help="token every request must carry; generated when binding off loopback",
    )
    command.add_argument("--port-file", help="write the bound port to this file")
    command.set_defaults(handler=_cmd_dashboard)


def add_dashboard_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--dashboard [PORT]`` to a command that writes a run folder."""
    parser.add_argument(
        "--dashboard",
        nargs="?",
        type=int,
        const=DEFAULT_PORT,
        default=None,
        metavar="PORT",
        help=f"serve this run live at http://127.0.0.1:PORT/ (default {DEFAULT_PORT}; 0: any)",
    )


def _cmd_dashboard(args: argparse.Namespace, console: Console) -> int:
    try:
        from fedsys.dashboard.serve import serve
    except ImportError as exc:
        raise RuntimeError(
            f"the dashboard needs its extra: pip install 'fedsys[dashboard]' ({exc.name} missing)"
        ) from None
    roots = [Path(d) for d in args.run_dirs] or [Path("runs")]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        raise ValueError(f"not a folder: {', '.join(missing)}")
    token = args.token
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        token = secrets.token_urlsafe(24)

    def ready(url: str) -> None:
        console.print(f"dashboard at [bold]{url}[/] (Ctrl-C stops it)", highlight=False)

    serve(
        roots,
        host=args.host,
        port=args.port,
        token=token,
        port_file=Path(args.port_file) if args.port_file else None,
        on_ready=ready,
    )
    return 0


@contextlib.contextmanager
def live_dashboard(folder: Path, port: int | None, console: Console) -> Iterator[str | None]:
    """Serve ``folder`` in a child process while the block runs; yield its URL.

    ``port`` ``None``: no dashboard (yields ``None``). The child is ended when the
    block exits, however it exits.

    Raises
    ------
    RuntimeError
        If the dashboard did not start (its extra missing, the port taken).
    """
    if port is None:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedsys-dashboard-") as scratch:
        port_file = Path(scratch) / "port"
        log = Path(scratch) / "log"
        command = [sys.executable, "-m", "fedsys", "dashboard", str(folder), "--port", str(port)]
        command += ["--port-file", str(port_file)]
        with log.open("w") as log_handle:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.nice(CHILD_NICENESS),
            )
        try:
            bound = _wait_for_port(child, port_file, log)
            url = f"http://127.0.0.1:{bound}/#/run/{folder.resolve().name}"
            console.print(f"dashboard at [bold]{url}[/]", highlight=False)
            yield url
        finally:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


def _wait_for_port(child: subprocess.Popen[bytes], port_file: Path, log: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if port_file.is_file() and port_file.read_text().strip():
            return int(port_file.read_text())
        if child.poll() is not None:
            lines = log.read_text().strip().splitlines()
            last = lines[-1] if lines else "no output"
            raise RuntimeError(f"the dashboard did not start: {last}")
        time.sleep(0.05)
    raise RuntimeError(f"the dashboard did not start within {START_TIMEOUT_S:.0f} s")
