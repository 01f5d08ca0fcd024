"""Serve the dashboard with uvicorn on a socket bound before the server starts.

Binding first lets ``--port 0`` work (the kernel picks a free port) and lets whoever
started the dashboard learn that port from ``port_file`` before any request.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fedsys.dashboard.app import LOOPBACK_HOSTS, build_app
from fedsys.dashboard.catalog import RunCatalog
from fedsys.metrics.writers import atomic_write_text

DEFAULT_PORT = 8765


class DashboardError(ValueError):
    """The dashboard cannot be served as asked (bad host, missing token)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is the loopback interface (names other than localhost are not)."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    roots: list[Path],
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    port_file: Path | None = None,
    on_ready: Callable[[str], None] | None = None,
    fd: int | None = None,
    parent_pid: int | None = None,
) -> None:
    """Serve the runs under ``roots`` until interrupted (or ``parent_pid`` is gone).

    Raises
    ------
    DashboardError
        If ``host`` is not the loopback interface and no ``token`` is given, or the
        address cannot be bound.

    ``fd``: serve on this already listening socket (inherited from the command that
    started the dashboard, which knew the port at once) instead of binding one.
    ``parent_pid``: that command; when it is gone (even killed, with no chance to stop
    its child) the dashboard exits within a second.
    """
    import uvicorn

    loopback = is_loopback(host)
    if not loopback and not token:
        raise DashboardError(
            f"binding the dashboard to {host} needs a token (--token): "
            "anyone who can reach the port could read every run otherwise"
        )
    sock = socket.socket(fileno=fd) if fd is not None else bind(host, port)
    bound = sock.getsockname()[1]
    app = build_app(RunCatalog(roots), token=token, loopback=loopback)
    # Open pages hold event streams that never end on their own: give them a second
    # on shutdown, so a run's --dashboard child ends with the run.
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    if port_file is not None:
        atomic_write_text(port_file, f"{bound}\n")
    if on_ready is not None:
        shown = "127.0.0.1" if loopback else host
        query = f"?token={token}" if token else ""
        on_ready(f"http://{shown}:{bound}/{query}")
    if parent_pid is not None:
        exit_with(parent_pid)
    server.run(sockets=[sock])


def exit_with(parent_pid: int, every_s: float = 0.5) -> threading.Thread:
    """End this process once it is no longer ``parent_pid``'s child (the parent died).

    A child whose parent dies is re-parented, so ``getppid`` changing is the signal;
    unlike probing the pid, it cannot be fooled by the pid being reused.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os._exit(0)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread
