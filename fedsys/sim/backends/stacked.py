"""Local SGD of many clients as one batched computation over stacked weight rows.

Client ``c``'s weights are row ``c`` of one ``[clients, params]`` matrix laid out as
``ModelWeights.flat``. Every client's gradient of its own masked mini-batch loss comes
from one call: for a model of common layers, a batched forward pass
(:mod:`fedsys.sim.backends.layers`) and one ``torch.autograd.grad``; for any other
model, ``torch.func.vmap`` over ``grad`` of a ``functional_call``. The gradient is
taken with respect to each state entry's column block of that matrix (a strided view
per entry), not the whole row: a row's gradient would be assembled from one
zero-filled ``[clients, params]`` matrix per entry, which cost as much as the backward
pass itself. The SGD update (momentum, weight decay, FedProx term) is then a handful of
operations per learned entry, stepping its block of the matrix in place.
Python and autograd overhead is paid once per step for all clients instead of once per
step per client, which is what dominates small-model federated simulation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedsys.core.training import PerSampleLoss, TrainConfig
from fedsys.core.weights import ModelWeights
from fedsys.sim.backends.layers import layered_forward
from fedsys.sim.backends.plans import ChunkPlan

StepFn = Callable[..., tuple[list[torch.Tensor], torch.Tensor]]
"""``(entries, x, y, mask, count) -> (grads of the learned entries, per-sample losses)``."""


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
    layered
        Use the batched common layers when the model is built of them; ``False``
        forces the general ``vmap`` path.
    """

    def __init__(
        self, model: nn.Module, like: ModelWeights, loss_fn: PerSampleLoss, layered: bool = True
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.like = like
        self.forward = layered_forward(model) if layered else None

    @property
    def path(self) -> str:
        """``"layers"`` or ``"vmap"``: how gradients are taken."""
        return "vmap" if self.forward is None else "layers"

    def with_vmap(self) -> StackedModel:
        """The same model on the general ``vmap`` path."""
        return StackedModel(self.model, self.like, self.loss_fn, layered=False)

    def layout(self) -> list[tuple[str, tuple[int, ...], int, int, torch.dtype]]:
        """(name, shape, begin, end, dtype) of each state entry inside a row."""
        state = self.model.state_dict()
        entries, begin = [], 0
        for spec in self.like.specs:
            end = begin + spec.numel
            entries.append((spec.name, spec.shape, begin, end, state[spec.name].dtype))
            begin = end
        return entries

    def learned(self) -> list[bool]:
        """Per layout entry: whether the optimizer steps it (a parameter with
        ``requires_grad``; buffers and frozen parameters stay as they start)."""
        names = {name for name, p in self.model.named_parameters() if p.requires_grad}
        return [name in names for name, *_ in self.layout()]

    def entries(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Each layout entry of every row as a ``[clients, *shape]`` view of ``rows``."""
        clients = rows.shape[0]
        return [
            rows.narrow(1, begin, end - begin).view(clients, *shape)
            for _, shape, begin, end, _ in self.layout()
        ]

    def step_fn(self) -> StepFn:
        """``(entries, x, y, mask, count) -> (grads, per-sample losses)`` for all clients.

        ``entries`` are :meth:`entries` of the current rows; ``grads`` holds the
        gradient of each learned entry, in layout order.
        """
        return self._vmap_step() if self.forward is None else self._layered_step()

    def _layered_step(self) -> StepFn:
        names = [name for name, *_ in self.layout()]
        learned, forward, loss_fn = self.learned(), self.forward, self.loss_fn
        assert forward is not None

        def step(
            entries: Sequence[torch.Tensor], *batch: torch.Tensor
        ) -> tuple[list[torch.Tensor], torch.Tensor]:
            x, y, m, n = batch
            state, leaves = {}, []
            for name, entry, learns in zip(names, entries, learned, strict=True):
                if learns:
                    entry = entry.detach().requires_grad_()
                    leaves.append(entry)
                state[name] = entry
            clients = x.shape[0]
            per_sample = loss_fn(forward(state, x).flatten(0, 1), y.flatten()).view(clients, -1)
            loss = ((per_sample * m).sum(dim=1) / n.clamp(min=1.0)).sum()
            return list(torch.autograd.grad(loss, leaves)), per_sample.detach()

        return step

    def _vmap_step(self) -> StepFn:
        layout, learned = self.layout(), self.learned()
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
            entries: Sequence[torch.Tensor], *batch: torch.Tensor
        ) -> tuple[list[torch.Tensor], torch.Tensor]:
            grads, per_sample = batched(tuple(entries), *batch)
            return [g for g, learns in zip(grads, learned, strict=True) if learns], per_sample

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
    weight decay and momentum; a client whose steps ran out is left untouched. Each
    learned entry is stepped in place in its block of the weight rows.
    """
    device = starts.device
    stacked.model.train()
    step_fn = stacked.step_fn()
    learned = stacked.learned()
    weights = starts.clone()
    entries = stacked.entries(weights)
    stepped = [entry for entry, learns in zip(entries, learned, strict=True) if learns]
    origins = [o for o, learns in zip(stacked.entries(starts), learned, strict=True) if learns]
    momentum: list[torch.Tensor] | None = None
    sums = torch.zeros(starts.shape[0], 2, dtype=torch.float64, device=device)
    finished = (plan.counts == 0).any(dim=1).tolist()
    rows, mask, counts = (t.to(device) for t in (plan.rows, plan.mask, plan.counts))
    for step in range(rows.shape[0]):
        x, y = features[rows[step]], labels[rows[step]]
        grads, per_sample = step_fn(entries, x, y, mask[step], counts[step])
        if config.proximal_mu > 0:
            grads = [
                g.add(w - o, alpha=config.proximal_mu)
                for g, w, o in zip(grads, stepped, origins, strict=True)
            ]
        if config.weight_decay > 0:
            grads = [
                g.add(w, alpha=config.weight_decay) for g, w in zip(grads, stepped, strict=True)
            ]
        if config.momentum > 0:
            if momentum is None:
                momentum = [g.clone() for g in grads]
            else:
                for buffer, g in zip(momentum, grads, strict=True):
                    buffer.mul_(config.momentum).add_(g)
            grads = momentum
        if finished[step]:  # clients whose steps ran out stay where they are
            active = (counts[step] > 0).to(weights.dtype)
            grads = [g * active.view(-1, *(1,) * (g.dim() - 1)) for g in grads]
        for w, g in zip(stepped, grads, strict=True):
            w.add_(g, alpha=-config.lr)
        losses = per_sample.double() * mask[step]
        sums[:, 0] += losses.sum(dim=1)
        sums[:, 1] += (losses * per_sample.double()).sum(dim=1)
    return StackedResult(
        deltas=weights - starts,
        loss_sums=sums,
        seen=counts.sum(dim=0).to(torch.int64),
        steps=(counts > 0).sum(dim=0),
    )
