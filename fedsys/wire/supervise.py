"""Child processes of the local launchers: started alike, watched, and always ended.

``fedsys deploy local`` and the silo's :class:`~fedsys.silo.local_federation.LocalCluster` start
``python -m fedsys ...`` children here: output to a log file, one torch thread each,
unbuffered, importing the same fedsys as the parent, each in its own process group (a
site's compute workers, a device host's helpers) so that ending a child ends everything
it started. Ending is terminate-then-kill on the whole group: a child that ignores
SIGTERM (or leaves grandchildren behind) is killed after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "FEDSYS_ROOT",
    "child_env",
    "end_all",
    "end_group",
    "fedsys_command",
    "spawn",
    "wait_for_port",
]

FEDSYS_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding this ``fedsys`` package: first on a child's ``PYTHONPATH``."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this one, plus what every fedsys child needs.

    ``PYTHONUNBUFFERED=1`` (logs reach the file as they happen), ``OMP_NUM_THREADS=1``
    (N processes share this machine's cores: one torch thread each avoids the
    oversubscription that makes small-model training many times slower) and
    ``PYTHONPATH`` starting with :data:`FEDSYS_ROOT` (the child imports this fedsys).

    Parameters
    ----------
    extra
        Further variables (they win over the above).
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(FEDSYS_ROOT), env.get("PYTHONPATH")) if p
    )
    env.update(extra or {})
    return env


def fedsys_command(*arguments: str, module: str = "fedsys") -> list[str]:
    """``python -m fedsys ARGUMENTS`` with this interpreter."""
    return [sys.executable, "-m", module, *arguments]


def spawn(
    command: Sequence[str],
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group, stdout and stderr to ``log_path``.

    Parameters
    ----------
    command
        The argument vector (see :func:`fedsys_command`).
    log_path
        Log file (created, with its folder; truncated).
    cwd
        Working folder of the child.
    env
        Its environment (default :func:`child_env`).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else child_env(),
            start_new_session=True,
        )


def wait_for_port(
    port_file: Path, child: subprocess.Popen[bytes], timeout_s: float, what: str = "the server"
) -> int:
    """The port ``child`` wrote to ``port_file`` once listening (its readiness signal).

    Raises
    ------
    RuntimeError
        If the child exits first.
    TimeoutError
        If no port appears within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{what} exited with {child.returncode} before listening")
        if port_file.is_file():
            text = port_file.read_text().strip()
            if text:
                return int(text)
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not report its port within {timeout_s:.0f} s")


def _signal_group(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


def end_group(child: subprocess.Popen[bytes], term_grace_s: float = 5.0) -> None:
    """End ``child`` and everything in its process group: SIGTERM, then SIGKILL.

    ``term_grace_s = 0`` kills at once (a crash, for fault tests).
    """
    end_all([child], wait_s=0.0, term_grace_s=term_grace_s)


def end_all(
    children: Sequence[subprocess.Popen[bytes]], wait_s: float = 0.0, term_grace_s: float = 5.0
) -> None:
    """End every child's process group and reap the children.

    Parameters
    ----------
    children
        Processes started by :func:`spawn` (each leads its group).
    wait_s
        First let them exit on their own this long (all together), e.g. clients told
        the run is over.
    term_grace_s
        Then SIGTERM each group and wait this long (all together); whatever is left of
        each group, grandchildren included, is then killed.
    """
    deadline = time.monotonic() + wait_s
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
    if term_grace_s > 0:
        for child in children:
            if child.poll() is None:
                _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + term_grace_s
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
    for child in children:
        _signal_group(child, signal.SIGKILL)  # stragglers of the group, or a deaf leader
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
