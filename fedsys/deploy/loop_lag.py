"""How late an event loop runs its callbacks: a periodic timer and its overshoot.

A task sleeps ``interval_s`` again and again; each wake-up later than asked is lag, the
time every other connection on the loop also waited. The overshoots go into a fixed
histogram (0.1 ms bins up to 10 s), so memory stays flat however long the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

_BIN_MS = 0.1
_BINS = 100_000  # 0.1 ms .. 10 s; the last bin takes everything longer


class LoopLag:
    """Overshoots of a periodic timer on the running loop, as a histogram.

    Parameters
    ----------
    interval_s
        How long the timer asks to sleep each time.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.counts = np.zeros(_BINS, dtype=np.int64)
        self.max_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    def add(self, lag_ms: float) -> None:
        """Count one wake-up ``lag_ms`` late."""
        lag_ms = max(0.0, lag_ms)
        self.counts[min(int(lag_ms / _BIN_MS), _BINS - 1)] += 1
        self.max_ms = max(self.max_ms, lag_ms)

    def percentiles_ms(self) -> dict[str, float | None]:
        """p50, p99 and max lag in ms (bin upper edges; ``None`` before any sample)."""
        total = int(self.counts.sum())
        if not total:
            return {"p50": None, "p99": None, "max": None}
        cumulative = np.cumsum(self.counts)

        def at(q: float) -> float:
            index = int(np.searchsorted(cumulative, q * total))
            return min((index + 1) * _BIN_MS, self.max_ms)

        return {"p50": at(0.5), "p99": at(0.99), "max": self.max_ms}

    def start(self) -> None:
        """Start measuring on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop measuring (the histogram stays)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.add(1000.0 * (loop.time() - asked))
