"""Whether a model and trainer can be trained batched, and if not, why.

``vmap`` cannot batch everything: BatchNorm in train mode updates its running
statistics in place, data-dependent Python control flow needs concrete values, and a
custom ``LocalTrainer`` subclass may train in ways the batched path does not know. The
vectorized backend asks here once per run and falls back to sequential with the reason.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsys.core.training import LocalTrainer
from fedsys.core.weights import ModelWeights
from fedsys.sim.backends.base import TrainingParts
from fedsys.sim.backends.plans import ChunkPlan
from fedsys.sim.backends.stacked import StackedModel, train_stacked


def vmap_obstacle(parts: TrainingParts) -> str | None:
    """Why ``parts`` cannot be trained batched; ``None`` when it can.

    Checks the trainer and the model's layers, then really runs two batched SGD steps
    of two clients on a few samples (on copies: nothing of the run is touched).
    """
    trainer = parts.trainer
    if type(trainer).train is not LocalTrainer.train:
        return f"{type(trainer).__name__} overrides LocalTrainer.train"
    for name, module in parts.model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            return (
                f"layer {name or 'model'} ({type(module).__name__}) updates running "
                "statistics in train mode"
            )
    return _probe(parts)


def _probe(parts: TrainingParts) -> str | None:
    sizes = parts.dataset.client_sizes
    holders = (sizes > 0).nonzero()[0]
    if len(holders) == 0:
        return None
    first = int(parts.dataset.offsets[holders[0]])
    rows = torch.full((2, 2, 2), first, dtype=torch.int64)
    mask = torch.ones(2, 2, 2)
    plan = ChunkPlan(rows=rows, mask=mask, counts=mask.sum(dim=2))
    like = ModelWeights.from_module(parts.model)
    starts = torch.stack([like.flat, like.flat]).to(parts.device)
    with torch.random.fork_rng(devices=[]):
        try:
            stacked = StackedModel(parts.model, like, parts.trainer.loss_fn)
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
            return f"vmap could not run the model ({type(exc).__name__}: {first_line[:200]})"
    return None
