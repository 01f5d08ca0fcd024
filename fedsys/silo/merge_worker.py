"""Merges run in worker threads, never on the coordinator's event loop.

A merge grows with the data (a model's worth of bytes per input), so while it runs the
loop must go on serving every site. :class:`MergeWorker` computes a
:class:`~fedsys.silo.actions.RunMerge` with :func:`asyncio.to_thread`, with the checksum
that seals a streamed merge, and hands the output back on the loop, where the job run's
state changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fedsys.silo.actions import RunMerge
from fedsys.silo.task_registry import Output
from fedsys.wire.chunks import sha256_hex

__all__ = ["MergeWorker"]


class MergeWorker:
    """Runs merges off the event loop; keeps the checksums of the outputs it knows."""

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, action: RunMerge, on_output: Callable[[Output], None],
              on_error: Callable[[Exception], None]) -> None:
        """Compute ``action`` in a worker thread; then, on the running loop, call
        ``on_output`` with its output, or ``on_error`` with what the merge raised."""
        task = asyncio.get_running_loop().create_task(self._run(action, on_output, on_error))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, action: RunMerge, on_output: Callable[[Output], None],
                   on_error: Callable[[Exception], None]) -> None:
        try:
            output, digest = await asyncio.to_thread(_compute, action)
        except Exception as exc:  # the merge function raised
            on_error(exc)
            return
        self.digests[action.key] = digest
        on_output(output)

    def forget(self, keep: Callable[[str], bool] = lambda key: False) -> None:
        """Drop the checksums of outputs not kept (all of them by default)."""
        for key in [k for k in self.digests if not keep(k)]:
            del self.digests[key]


def _compute(action: RunMerge) -> tuple[Output, str]:
    """A merge's output and its checksum (a seal or a push sends it; hashed here, off
    the event loop)."""
    output = action.compute()
    return output, sha256_hex(output.payload)
