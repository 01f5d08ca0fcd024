"""Local SGD of many clients as one batched computation over stacked weight rows.

Client ``c``'s weights are row ``c`` of one ``[clients, params]`` matrix laid out as
``ModelWeights.flat``. ``torch.func.vmap`` over ``grad`` of a ``functional_call`` gives
every client's gradient of its own masked mini-batch loss in one call; the SGD update
(momentum, weight decay, FedProx term) is then a handful of whole-matrix operations.
The gradient is taken with respect to each state entry's column block of that matrix
(a strided view per entry), not the whole row: a row's gradient would be assembled
from one zero-filled ``[clients, params]`` matrix per entry, which cost as much as the
backward pass itself.
Python and autograd overhead is paid once per step for all clients instead of once per
step per client, which is what dominates small-model federated simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedsys.core.training import PerSampleLoss, TrainConfig
from fedsys.core.weights import ModelWeights
from fedsys.sim.backends.plans import ChunkPlan

StepFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class StackedResult:
    """Outcome of a chunk: per-client deltas and loss sums over every sample seen.

    Parameters
    ----------
    deltas
        ``[clients, params]`` trained minus start weights.
    loss_sums
        ``[clients, 2]`` float64: sum and sum of squares of per-sample losses.
    seen
        ``[clients]`` per-sample losses each client's statistics cover.
    steps
        ``[clients]`` optimizer steps each client took.
    """

    deltas: torch.Tensor
    loss_sums: torch.Tensor
    seen: torch.Tensor
    steps: torch.Tensor


class StackedModel:
    """``model`` evaluated functionally on rows of a stacked weight matrix.

    Parameters
    ----------
    model
        The module whose ``state_dict`` layout the rows follow.
    like
        Weights of that layout (names, shapes, storage order).
    loss_fn
        Per-sample loss, as ``LocalTrainer.loss_fn``.
    """

    def __init__(self, model: nn.Module, like: ModelWeights, loss_fn: PerSampleLoss) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.like = like

    def layout(self) -> list[tuple[str, tuple[int, ...], int, int, torch.dtype]]:
        """(name, shape, begin, end, dtype) of each state entry inside a row."""
        state = self.model.state_dict()
        entries, begin = [], 0
        for spec in self.like.specs:
            end = begin + spec.numel
            entries.append((spec.name, spec.shape, begin, end, state[spec.name].dtype))
            begin = end
        return entries

    def trainable(self, device: torch.device) -> torch.Tensor:
        """``[params]`` 1.0 where the optimizer steps (parameters with ``requires_grad``)."""
        learned = {name for name, p in self.model.named_parameters() if p.requires_grad}
        mask = torch.zeros(self.like.num_params, device=device)
        for name, _, begin, end, _ in self.layout():
            if name in learned:
                mask[begin:end] = 1.0
        return mask

    def step_fn(self) -> StepFn:
        """``(rows, x, y, mask, count) -> (grads, per-sample losses)`` for all clients.

        ``rows`` and ``grads`` are ``[clients, params]`` matrices.
        """
        layout = self.layout()
        model, loss_fn = self.model, self.loss_fn

        def client_loss(
            entries: tuple[torch.Tensor, ...],
            x: torch.Tensor,
            y: torch.Tensor,
            m: torch.Tensor,
            n: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            state = {
                name: entry if dtype == torch.float32 else entry.to(dtype)
                for (name, _, _, _, dtype), entry in zip(layout, entries, strict=True)
            }
            per_sample = loss_fn(functional_call(model, state, (x,)), y)
            return (per_sample * m).sum() / n.clamp(min=1.0), per_sample.detach()

        batched = vmap(grad(client_loss, has_aux=True), randomness="different")

        def step(
            rows: torch.Tensor, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, n: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            clients = rows.shape[0]
            entries = tuple(
                rows.narrow(1, begin, end - begin).view(clients, *shape)
                for _, shape, begin, end, _ in layout
            )
            grads, per_sample = batched(entries, x, y, m, n)
            return torch.cat([g.reshape(clients, -1) for g in grads], dim=1), per_sample

        return step


def train_stacked(
    stacked: StackedModel,
    starts: torch.Tensor,
    plan: ChunkPlan,
    features: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
) -> StackedResult:
    """Run every client's local SGD of ``plan`` at once, from the rows of ``starts``.

    Matches ``LocalTrainer.train`` step for step: mean loss over the real samples of
    each mini-batch, the FedProx term ``mu/2 ||w - w0||^2``, then PyTorch SGD's
    weight decay and momentum; a client whose steps ran out is left untouched.
    """
    device = starts.device
    model = stacked.model
    model.train()
    step_fn = stacked.step_fn()
    trainable = stacked.trainable(device)
    frozen = not bool(trainable.all())
    weights = starts.clone()
    momentum: torch.Tensor | None = None
    sums = torch.zeros(starts.shape[0], 2, dtype=torch.float64, device=device)
    finished = (plan.counts == 0).any(dim=1).tolist()
    rows, mask, counts = (t.to(device) for t in (plan.rows, plan.mask, plan.counts))
    for step in range(rows.shape[0]):
        x, y = features[rows[step]], labels[rows[step]]
        grads, per_sample = step_fn(weights, x, y, mask[step], counts[step])
        if frozen:  # buffers and frozen parameters are not stepped
            grads = grads * trainable
        if config.proximal_mu > 0:
            grads = grads + config.proximal_mu * (weights - starts) * trainable
        if config.weight_decay > 0:
            grads = grads.add(weights * trainable, alpha=config.weight_decay)
        if config.momentum > 0:
            momentum = grads if momentum is None else momentum.mul_(config.momentum).add_(grads)
            grads = momentum
        if finished[step]:  # clients whose steps ran out stay where they are
            grads = grads * (counts[step] > 0).to(weights.dtype).unsqueeze(1)
        weights = weights.add(grads, alpha=-config.lr)
        losses = per_sample.double() * mask[step]
        sums[:, 0] += losses.sum(dim=1)
        sums[:, 1] += (losses * per_sample.double()).sum(dim=1)
    return StackedResult(
        deltas=weights - starts,
        loss_sums=sums,
        seen=counts.sum(dim=0).to(torch.int64),
        steps=(counts > 0).sum(dim=0),
    )
