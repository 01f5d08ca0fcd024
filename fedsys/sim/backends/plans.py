"""Mini-batch plans of many clients at once, padded to one rectangular index tensor.

Each client visits its samples in exactly the order ``LocalTrainer`` would (same
generator, same seed, same reshuffles), so a batched computation sees the same
mini-batches as the sequential reference. Ragged clients (fewer samples than the
batch size, fewer steps in epochs mode, a short last batch) are padded and masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedsys.core.training import TrainConfig, batch_order, fold_seed


@dataclass(frozen=True)
class ClientPlan:
    """One client's visiting order split into its mini-batches (global row indices)."""

    rows: torch.Tensor
    sizes: tuple[int, ...]

    @property
    def steps(self) -> int:
        """Optimizer steps the client takes."""
        return len(self.sizes)

    @property
    def widest(self) -> int:
        """Its largest mini-batch."""
        return max(self.sizes)


@dataclass(frozen=True)
class ChunkPlan:
    """The padded plans of the clients trained together in one batched computation.

    Parameters
    ----------
    rows
        ``[steps, clients, batch]`` global row indices (padding repeats a real row).
    mask
        ``[steps, clients, batch]`` float32, 1 for a real sample and 0 for padding.
    counts
        ``[steps, clients]`` real samples per step; 0 once a client has finished.
    """

    rows: torch.Tensor
    mask: torch.Tensor
    counts: torch.Tensor


def client_plan(
    config: TrainConfig, offset: int, num_samples: int, seed: Sequence[int]
) -> ClientPlan:
    """The batches ``LocalTrainer.train`` would draw for this client and seed."""
    if num_samples == 0:
        raise ValueError("cannot train a client with no samples")
    generator = torch.Generator()
    generator.manual_seed(fold_seed(list(seed)))
    order, sizes = batch_order(num_samples, config, generator)
    return ClientPlan(rows=order + offset, sizes=tuple(sizes))


def bucket_key(plan: ClientPlan) -> tuple[int, int]:
    """Clients with the same key pad to the same shape: group them to waste no work."""
    return plan.steps, plan.widest


def pad_chunk(plans: Sequence[ClientPlan]) -> ChunkPlan:
    """Stack ``plans`` into one ``[steps, clients, batch]`` layout with a sample mask."""
    steps = max(plan.steps for plan in plans)
    width = max(plan.widest for plan in plans)
    rows = np.zeros((len(plans), steps, width), dtype=np.int64)
    mask = np.zeros((len(plans), steps, width), dtype=np.float32)
    for c, plan in enumerate(plans):
        order = plan.rows.numpy()
        if len(set(plan.sizes)) == 1:  # every batch equally wide: one reshape
            size = plan.sizes[0]
            rows[c, : plan.steps, :size] = order.reshape(plan.steps, size)
            mask[c, : plan.steps, :size] = 1.0
        else:
            begin = 0
            for s, size in enumerate(plan.sizes):
                rows[c, s, :size] = order[begin : begin + size]
                mask[c, s, :size] = 1.0
                begin += size
        rows[c][mask[c] == 0] = order[0]  # padding reads a real row; the mask drops it
    rows_t = torch.from_numpy(rows).transpose(0, 1).contiguous()
    mask_t = torch.from_numpy(mask).transpose(0, 1).contiguous()
    return ChunkPlan(rows=rows_t, mask=mask_t, counts=mask_t.sum(dim=2))
