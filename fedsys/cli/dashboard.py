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
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

DEFAULT_PORT = 8765
"""The dashboard's port when none is given (``fedsys.dashboard.serve`` uses the same)."""
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
    command.add_argument(
        "--fd", type=int, help="serve on this inherited listening socket (what --dashboard uses)"
    )
    command.add_argument(
        "--parent-pid",
        type=int,
        help="stop when this process (the run that started the dashboard) is gone",
    )
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
        from fedsys.dashboard.serve import is_loopback, serve
    except ImportError as exc:
        raise RuntimeError(
            f"the dashboard needs its extra: pip install 'fedsys[dashboard]' ({exc.name} missing)"
        ) from None
    roots = [Path(d) for d in args.run_dirs] or [Path("runs")]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        raise ValueError(f"not a folder: {', '.join(missing)}")
    token = args.token
    if token is None and not is_loopback(args.host):
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
        fd=args.fd,
        parent_pid=args.parent_pid,
    )
    return 0


@contextlib.contextmanager
def live_dashboard(folder: Path, port: int | None, console: Console) -> Iterator[str | None]:
    """Serve ``folder`` from a child process while the block runs; yield its URL.

    The socket is bound here (the URL is known at once, the run never waits for the
    child to start) and handed to the child, which accepts the connections queued on
    it as soon as it is up. ``port`` ``None``: no dashboard (yields ``None``). The
    child is ended when the block exits, however it exits.

    Raises
    ------
    RuntimeError
        If the port cannot be bound.
    """
    if port is None:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"the dashboard cannot listen on port {port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    command = [sys.executable, "-m", "fedsys", "dashboard", str(folder), "--port", str(bound)]
    command += ["--fd", str(sock.fileno()), "--parent-pid", str(os.getpid())]
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
            preexec_fn=lambda: os.nice(CHILD_NICENESS),
        )
        sock.close()  # the child holds it now
        url = f"http://127.0.0.1:{bound}/#/run/{folder.resolve().name}"
        console.print(f"dashboard at [bold]{url}[/]", highlight=False)
        try:
            yield url
        finally:
            if child.poll() is not None:  # it ended on its own: say why, once
                log.seek(0)
                lines = log.read().decode(errors="replace").strip().splitlines()
                reason = lines[-1] if lines else f"exit status {child.returncode}"
                console.print(f"[yellow]the dashboard stopped early:[/] {reason}", highlight=False)
            # It only reads, so there is nothing to flush: killing it ends it at once
            # (a polite stop would wait out the open pages' event streams).
            child.kill()
            child.wait(timeout=10)
