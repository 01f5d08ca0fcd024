"""Whether a model and trainer can be trained batched, and if not, why.

Not everything can be batched: BatchNorm in train mode normalizes over the whole
(padded) batch and updates its running statistics in place, data-dependent Python
control flow needs concrete values, and a custom ``LocalTrainer`` subclass may train in
ways the batched path does not know. The vectorized backend asks here once per run and
falls back to sequential with the reason.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from fedsys.core.training import LocalTrainer
from fedsys.core.weights import ModelWeights
from fedsys.sim.backends.base import TrainingParts
from fedsys.sim.backends.plans import ChunkPlan
from fedsys.sim.backends.stacked import StackedModel, train_stacked

LOG = logging.getLogger(__name__)


def batched_model(parts: TrainingParts) -> StackedModel | str:
    """The batched model to train ``parts`` with, or why it cannot be batched.

    Checks the trainer and the model's layers, then really runs two batched SGD steps
    of two clients on a few samples (on copies: nothing of the run is touched), on the
    common-layers path when the model is built of them, else (or when that fails) on
    the general ``vmap`` path; the failing path's error is logged.
    """
    trainer = parts.trainer
    if type(trainer).train is not LocalTrainer.train:
        return f"{type(trainer).__name__} overrides LocalTrainer.train"
    for name, module in parts.model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return (
                f"layer {name or 'model'} ({type(module).__name__}) normalizes over the "
                "whole batch, padding included, and updates running statistics"
            )
    stacked = StackedModel(parts.model, ModelWeights.from_module(parts.model), trainer.loss_fn)
    if stacked.forward is not None:
        failure = _probe(parts, stacked)
        if failure is None:
            return stacked
        LOG.info("batched common layers could not run the model, trying vmap: %s", failure)
        stacked = stacked.with_vmap()
    failure = _probe(parts, stacked)
    return stacked if failure is None else f"vmap could not run the model ({failure})"


def _probe(parts: TrainingParts, stacked: StackedModel) -> str | None:
    """Two batched SGD steps of two clients; the error, if they fail."""
    sizes = parts.dataset.client_sizes
    holders = (sizes > 0).nonzero()[0]
    if len(holders) == 0:
        return None
    first = int(parts.dataset.offsets[holders[0]])
    rows = torch.full((2, 2, 2), first, dtype=torch.int64)
    mask = torch.ones(2, 2, 2)
    plan = ChunkPlan(rows=rows, mask=mask, counts=mask.sum(dim=2))
    starts = torch.stack([stacked.like.flat, stacked.like.flat]).to(parts.device)
    with torch.random.fork_rng(devices=[]):
        try:
            train_stacked(
                stacked,
                starts,
                plan,
                parts.dataset.features,
                parts.dataset.labels,
                parts.trainer.config,
            )
        except Exception as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return f"{type(exc).__name__}: {first_line[:200]}"
    return None
