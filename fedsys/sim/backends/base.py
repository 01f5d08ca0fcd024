"""The training-backend interface: how a batch of client launches becomes trained updates.

The engine decides *who* trains *from which weights* with *which seed*; a backend only
decides *how* the arithmetic is scheduled (one client after another, many clients in
one batched computation, or spread over a Ray cluster). Everything around it (the
virtual clock, selection, compression with client residuals, validation, strategies)
stays in the engine, so a backend cannot change what a run means, only how fast it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import torch
from torch import nn

from fedsys.core.training import LocalTrainer, TrainResult
from fedsys.core.weights import ModelWeights
from fedsys.data.federated import FederatedDataset


@dataclass(frozen=True)
class TrainJob:
    """One client's local training: who, from which weights, with which batch seed.

    Parameters
    ----------
    client_id
        Whose data to train on.
    start
        Weights the client starts from (the global model, or an async snapshot).
    seed
        Seed sequence of the client's mini-batch order (see ``fold_seed``).
    local_steps
        Local SGD steps of this job (``None``: the trainer's configured ones).
    """

    client_id: int
    start: ModelWeights
    seed: tuple[int, ...]
    local_steps: int | None = None


@dataclass(frozen=True)
class TrainingParts:
    """What every backend trains with: model, data, local trainer, device."""

    model: nn.Module
    dataset: FederatedDataset
    trainer: LocalTrainer
    device: torch.device


class BackendSession(ABC):
    """A backend opened for one run; holds whatever it started (workers, buffers)."""

    @abstractmethod
    def train(self, jobs: Sequence[TrainJob]) -> Iterator[tuple[int, TrainResult]]:
        """Train every job; yield ``(index into jobs, result)`` pairs.

        Each job is yielded exactly once, lazily, so the caller can stream results
        into aggregation; the order is deterministic (a function of the jobs only).
        Deltas are on the CPU.
        """

    def close(self) -> None:  # noqa: B027 - most sessions hold nothing to release
        """Release what the session started; the default holds nothing."""

    def __enter__(self) -> BackendSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class TrainingBackend(ABC):
    """Chosen by ``sim.backend``; opens one :class:`BackendSession` per run."""

    name: str = ""

    @abstractmethod
    def open(self, parts: TrainingParts) -> BackendSession:
        """Start training for one run (workers, probes); the caller closes the session."""


def train_one(parts: TrainingParts, job: TrainJob) -> TrainResult:
    """The reference: ``LocalTrainer.train`` on one client, the delta moved to the CPU."""
    features, labels = parts.dataset.client_data(job.client_id)
    start = job.start
    if start.flat.device != parts.device:
        start = ModelWeights(start.specs, start.flat.to(parts.device))
    trainer = (
        parts.trainer if job.local_steps is None else parts.trainer.with_steps(job.local_steps)
    )
    result = trainer.train(parts.model, start, features, labels, seed=list(job.seed))
    if result.delta.flat.device.type != "cpu":
        result = TrainResult(
            delta=ModelWeights(result.delta.specs, result.delta.flat.cpu()),
            num_samples=result.num_samples,
            loss=result.loss,
            steps=result.steps,
        )
    return result
