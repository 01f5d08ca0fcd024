"""The reference backend: one client after another, exactly as ``LocalTrainer`` trains."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fedsys.core.training import TrainResult
from fedsys.sim.backends.base import (
    BackendSession,
    TrainingBackend,
    TrainingParts,
    TrainJob,
    train_one,
)


class SequentialSession(BackendSession):
    """Trains each job when the caller asks for its result (streaming, constant memory)."""

    def __init__(self, parts: TrainingParts) -> None:
        self.parts = parts

    def train(self, jobs: Sequence[TrainJob]) -> Iterator[tuple[int, TrainResult]]:
        """Yield ``(i, result)`` for each job in order, training it just before."""
        for index, job in enumerate(jobs):
            yield index, train_one(self.parts, job)


class SequentialBackend(TrainingBackend):
    """``sim.backend: sequential``: the reference every other backend is checked against."""

    name = "sequential"

    def open(self, parts: TrainingParts) -> SequentialSession:
        """Nothing to start."""
        return SequentialSession(parts)
