"""A deployment's server status over time, sampled for people watching it.

Every ``interval_s`` the server appends one JSON line to its run folder's
``server_status.jsonl``: connected and training clients, resident memory, model
downloads and update uploads in flight, the round and its phase. A dashboard reads
the file; the server never waits on a reader. Format version :data:`STATUS_VERSION`
(documented in ``docs/dashboard.md``)::

    {"v": 1, "t_s": 12.5, "round": 3, "phase": "training", "connected": 8, "busy": 6,
     "rss_mb": 312.4, "downloads": 2, "uploads": 1, "refused": 0}
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fedsys.deploy.memory import current_rss_bytes
from fedsys.deploy.state import ServerState
from fedsys.metrics.writers import append_json_lines

STATUS_VERSION = 1
TRANSFER_METHODS = {"GetModel": "downloads", "Upload": "uploads"}
"""Servicer streams counted as transfers, and the status field each one feeds."""


class TransferCounter:
    """Counts the model downloads and update uploads a servicer has open."""

    def __init__(self) -> None:
        self.open = {kind: 0 for kind in TRANSFER_METHODS.values()}

    def wrap(self, servicer: object) -> None:
        """Count ``servicer``'s transfer streams (wraps them on the instance, before serving)."""
        for name, kind in TRANSFER_METHODS.items():
            method = getattr(servicer, name, None)
            if method is not None and inspect.isasyncgenfunction(method):
                setattr(servicer, name, self._counted(method, kind))

    def _counted(self, method: Callable[..., AsyncIterator[Any]], kind: str) -> Any:
        async def counted(*args: Any) -> AsyncIterator[Any]:
            self.open[kind] += 1
            try:
                async for item in method(*args):
                    yield item
            finally:
                self.open[kind] -= 1

        return counted


class StatusSampler:
    """Appends the server's status to ``path`` every ``interval_s`` while it serves."""

    def __init__(
        self, state: ServerState, path: Path, counter: TransferCounter, interval_s: float = 1.0
    ) -> None:
        self.state = state
        self.path = path
        self.counter = counter
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sampling on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Write one last sample and stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._append, self.sample())

    def sample(self) -> dict[str, Any]:
        """The status now, as one JSON-ready row."""
        state = self.state
        live = state.live_round
        sessions = list(state.registry.sessions.values())
        return {
            "v": STATUS_VERSION,
            "t_s": round(state.now_s(), 3),
            "round": live.round_idx if live is not None else state.next_round,
            "phase": state.phase,
            "connected": len(sessions),
            "busy": sum(1 for s in sessions if s.assignment is not None),
            "rss_mb": round(current_rss_bytes() / 2**20, 1),
            **self.counter.open,
            "refused": len(live.rejected) if live is not None else 0,
        }

    async def _run(self) -> None:
        while True:
            # a full disk must not stop the server; the rounds' own writes will say so
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._append, self.sample())
            await asyncio.sleep(self.interval_s)

    def _append(self, row: dict[str, Any]) -> None:
        # the run folder is the server's: a sample never recreates a removed one
        append_json_lines(self.path, [row], make_parent=False)
