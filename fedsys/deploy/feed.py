"""Stream updates into a ``Strategy`` as they arrive over the network.

``Strategy.aggregate`` consumes an iterator; updates arrive as asyncio events. A
worker thread runs ``aggregate`` over a small bounded queue, so the server holds at
most ``queue_size`` decoded updates besides the strategy's own accumulator, whatever
the number of participants (the memory target of the deployment).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator

from fedsys.aggregation.base import Strategy
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights

_END = object()


class StreamingAggregation:
    """One round's aggregation running beside the event loop.

    Parameters
    ----------
    strategy
        The run's strategy (unchanged from the simulator's).
    weights, state
        Global weights and strategy state the round starts from.
    queue_size
        Decoded updates waiting for the strategy at most.
    """

    def __init__(
        self, strategy: Strategy, weights: ModelWeights, state: object, queue_size: int = 2
    ) -> None:
        self.strategy = strategy
        self.weights = weights
        self.state = state
        self.count = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._result: tuple[ModelWeights, object] | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _updates(self) -> Iterator[ClientUpdate]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            assert isinstance(item, ClientUpdate)
            yield item

    def _run(self) -> None:
        updates = self._updates()
        try:
            head = next(updates, None)
            if head is not None:
                self._result = self.strategy.aggregate(
                    self.weights, _chain(head, updates), self.state
                )
        except BaseException as exc:  # surfaced by finish()
            self._error = exc
        for _ in updates:  # drain, so a producer never blocks on a dead consumer
            pass

    async def add(self, update: ClientUpdate) -> None:
        """Hand one validated update to the strategy (waits while the queue is full)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aggregation", daemon=True)
            self._thread.start()
        self.count += 1
        await asyncio.to_thread(self._queue.put, update)

    async def finish(self) -> tuple[ModelWeights, object] | None:
        """Close the stream; the new weights and state, or ``None`` if nothing was added.

        Raises
        ------
        Exception
            Whatever the strategy raised.
        """
        if self._thread is None:
            return None
        await asyncio.to_thread(self._queue.put, _END)
        await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise self._error
        return self._result


def _chain(head: ClientUpdate, rest: Iterator[ClientUpdate]) -> Iterator[ClientUpdate]:
    yield head
    yield from rest
