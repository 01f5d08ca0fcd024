"""Many clients' local training as one batched computation (``sim.backend: vectorized``).

Clients are planned exactly as ``LocalTrainer`` would draw their mini-batches, sorted
into buckets of equal (steps, widest batch), and trained ``chunk_size`` at a time from
one step count (so padding never adds steps, only narrower batches), so memory is
bounded by the chunk, not by the round. Results stream out chunk by chunk in bucket
order (deterministic: a function of the jobs only).

Equality with ``sequential``: the same samples in the same order and the same update
rule, but float32 batched kernels (a batched matmul, a masked mean instead of the fused
cross entropy mean, the proximal gradient written out) may round differently from the
per-client ones, and updates reach aggregation in bucket order. Differences are of the
order of float32 rounding, ~1e-7 relative per step; after a few rounds of SGD the final
weights agree to ``rtol=1e-4, atol=1e-5`` and the loss statistics to ``rtol=1e-4``
(checked by tests/sim/backends/test_vectorized.py). A model built of common layers
trains on batched layers and plain autograd (:mod:`fedsys.sim.backends.layers`), any
other on ``torch.func.vmap``; a model neither can batch (BatchNorm, data-dependent
control flow) or a trainer that overrides ``LocalTrainer.train`` falls back to
sequential, with the reason logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import torch

from fedsys.core.training import TrainResult
from fedsys.core.update import LossStats
from fedsys.core.weights import ModelWeights
from fedsys.sim.backends.base import BackendSession, TrainingBackend, TrainingParts, TrainJob
from fedsys.sim.backends.compat import batched_model
from fedsys.sim.backends.plans import ClientPlan, bucket_key, client_plan, pad_chunk
from fedsys.sim.backends.sequential import SequentialSession
from fedsys.sim.backends.stacked import StackedModel, StackedResult, train_stacked

LOG = logging.getLogger(__name__)


class VectorizedSession(BackendSession):
    """Trains jobs ``chunk_size`` at a time as stacked weight rows."""

    def __init__(self, parts: TrainingParts, chunk_size: int, stacked: StackedModel) -> None:
        self.parts = parts
        self.chunk_size = chunk_size
        self.stacked = stacked

    def train(self, jobs: Sequence[TrainJob]) -> Iterator[tuple[int, TrainResult]]:
        """Yield ``(i, result)`` chunk by chunk, in bucket order."""
        dataset, config = self.parts.dataset, self.parts.trainer.config
        offsets, sizes = dataset.offsets, dataset.client_sizes
        plans = [
            client_plan(
                config if job.local_steps is None else replace(config, local_steps=job.local_steps),
                int(offsets[job.client_id]),
                int(sizes[job.client_id]),
                job.seed,
            )
            for job in jobs
        ]
        order = sorted(range(len(jobs)), key=lambda i: bucket_key(plans[i]))
        for chunk in chunk_order(order, plans, self.chunk_size):
            result = self._train_chunk([jobs[i] for i in chunk], [plans[i] for i in chunk])
            yield from zip(chunk, _split(result, [jobs[i] for i in chunk], sizes), strict=True)

    def _train_chunk(self, jobs: list[TrainJob], plans: list[ClientPlan]) -> StackedResult:
        device = self.parts.device
        starts = torch.stack([job.start.flat.to(device) for job in jobs])
        dataset = self.parts.dataset
        return train_stacked(
            self.stacked,
            starts,
            pad_chunk(plans),
            dataset.features,
            dataset.labels,
            self.parts.trainer.config,
        )


def chunk_order(order: list[int], plans: list[ClientPlan], size: int) -> Iterator[list[int]]:
    """Runs of at most ``size`` job indices (sorted by bucket); a new step count starts one.

    Narrower batches share a chunk with wider ones (at most ``batch_size`` of padding
    per step), but clients never wait through steps they do not take.
    """
    chunk: list[int] = []
    for index in order:
        if chunk and (len(chunk) == size or plans[chunk[-1]].steps != plans[index].steps):
            yield chunk
            chunk = []
        chunk.append(index)
    if chunk:
        yield chunk


def _split(result: StackedResult, jobs: list[TrainJob], sizes: np.ndarray) -> Iterator[TrainResult]:
    """One :class:`TrainResult` per chunk row (deltas are views of the chunk's matrix)."""
    deltas = result.deltas.cpu()
    sums = result.loss_sums.cpu().tolist()
    seen = result.seen.cpu().tolist()
    steps = result.steps.cpu().tolist()
    for c, job in enumerate(jobs):
        yield TrainResult(
            delta=ModelWeights(job.start.specs, deltas[c]),
            num_samples=int(sizes[job.client_id]),
            loss=LossStats(
                mean_loss=sums[c][0] / seen[c], sum_sq_loss=sums[c][1], samples_seen=seen[c]
            ),
            steps=int(steps[c]),
        )


class VectorizedBackend(TrainingBackend):
    """``sim.backend: vectorized``: batched training, sequential fallback.

    Parameters
    ----------
    chunk_size
        Clients trained together in one batched computation; memory grows with it.
    """

    name = "vectorized"

    def __init__(self, chunk_size: int = 256) -> None:
        self.chunk_size = chunk_size

    def open(self, parts: TrainingParts) -> BackendSession:
        """A batched session, or a sequential one when the model cannot be batched."""
        stacked = batched_model(parts)
        if isinstance(stacked, str):
            LOG.warning("vectorized backend falls back to sequential: %s", stacked)
            return FallbackSession(parts, stacked)
        return VectorizedSession(parts, self.chunk_size, stacked)


class FallbackSession(SequentialSession):
    """Sequential training, with the reason the batched path was refused."""

    def __init__(self, parts: TrainingParts, reason: str) -> None:
        super().__init__(parts)
        self.reason = reason
