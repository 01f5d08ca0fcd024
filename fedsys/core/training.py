"""Local training and evaluation of a PyTorch model on one client's tensors.

The trainer is deliberately lean (index batching on in-memory tensors, no DataLoader)
because the simulator runs it thousands of times per experiment: its cost should be
the cost of the SGD steps themselves.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedsys.core.update import LossStats
from fedsys.core.weights import ModelWeights

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(outputs, targets) -> one loss per sample (reduction='none')."""


def cross_entropy_per_sample(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross entropy, the default classification loss."""
    return F.cross_entropy(outputs, targets, reduction="none")


@dataclass(frozen=True)
class TrainConfig:
    """How a client trains locally.

    Parameters
    ----------
    local_steps
        Number of SGD steps; when ``None``, train ``local_epochs`` passes over the data.
    local_epochs
        Passes over the local data when ``local_steps`` is ``None``.
    batch_size
        Mini-batch size (capped at the client's dataset size).
    lr, momentum, weight_decay
        Client SGD settings.
    proximal_mu
        FedProx proximal coefficient; 0 disables the term (plain FedAvg local training).
    """

    local_steps: int | None = 10
    local_epochs: int = 1
    batch_size: int = 20
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    proximal_mu: float = 0.0

    def __post_init__(self) -> None:
        if self.local_steps is not None and self.local_steps < 1:
            raise ValueError(f"local_steps must be >= 1 or None, got {self.local_steps}")
        if self.local_epochs < 1:
            raise ValueError(f"local_epochs must be >= 1, got {self.local_epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {self.proximal_mu}")

    def samples_processed(self, num_samples: int | np.ndarray) -> int | np.ndarray:
        """Samples a client with ``num_samples`` examples processes in one round.

        Known before training, which lets the virtual clock decide who finishes
        first without training the stragglers. Takes one size or an array of sizes
        (every client at once) and answers in kind.
        """
        sizes = np.maximum(np.asarray(num_samples, dtype=np.int64), 0)
        if self.local_steps is not None:
            done = self.local_steps * np.minimum(self.batch_size, sizes)
        else:
            done = self.local_epochs * sizes
        return int(done) if done.ndim == 0 else done


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one client's local training."""

    delta: ModelWeights
    num_samples: int
    loss: LossStats
    steps: int


@dataclass(frozen=True)
class EvalResult:
    """Accuracy and mean loss of a model on a labelled set."""

    accuracy: float
    loss: float
    num_samples: int


def batch_order(
    num_samples: int, config: TrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, list[int]]:
    """Sample indices of one round in visiting order, and the size of each mini-batch.

    The data is reshuffled at every pass; in epochs mode an epoch's last batch may be
    short. Gathering once by this order and splitting into views is cheaper than
    indexing every step.
    """
    batch = min(config.batch_size, num_samples)
    if config.local_steps is None:
        full, rest = divmod(num_samples, batch)
        sizes = ([batch] * full + ([rest] if rest else [])) * config.local_epochs
        perms = [
            torch.randperm(num_samples, generator=generator) for _ in range(config.local_epochs)
        ]
        return torch.cat(perms), sizes
    needed = config.local_steps * batch
    passes = math.ceil(needed / num_samples)
    order = torch.cat([torch.randperm(num_samples, generator=generator) for _ in range(passes)])
    return order[:needed], [batch] * config.local_steps


class LocalTrainer:
    """Runs local SGD (optionally with the FedProx proximal term) on one client's data.

    Parameters
    ----------
    config
        Local training settings.
    loss_fn
        Per-sample loss; cross entropy by default.
    batch_loss_fn
        The same loss averaged over a batch, if a fused form exists (it does for the
        default cross entropy). Back-propagating the fused mean and taking per-sample
        values without autograd is cheaper than back-propagating through ``mean()``.
    """

    def __init__(
        self,
        config: TrainConfig | None = None,
        loss_fn: PerSampleLoss = cross_entropy_per_sample,
        batch_loss_fn: PerSampleLoss | None = None,
    ) -> None:
        self.config = config if config is not None else TrainConfig()
        self.loss_fn = loss_fn
        if batch_loss_fn is None and loss_fn is cross_entropy_per_sample:
            batch_loss_fn = F.cross_entropy
        self.batch_loss_fn = batch_loss_fn

    def with_steps(self, local_steps: int) -> LocalTrainer:
        """This trainer running ``local_steps`` SGD steps (adaptive per-client work).

        A copy, so subclasses (private or proximal trainers) keep their behaviour.
        """
        trainer = copy.copy(self)
        trainer.config = replace(self.config, local_steps=local_steps)
        return trainer

    def _losses(
        self, outputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch loss to back-propagate and the detached per-sample losses."""
        if self.batch_loss_fn is None:
            per_sample = self.loss_fn(outputs, targets)
            return per_sample.mean(), per_sample.detach()
        loss = self.batch_loss_fn(outputs, targets)
        with torch.no_grad():
            return loss, self.loss_fn(outputs.detach(), targets)

    def train(
        self,
        model: nn.Module,
        start: ModelWeights,
        features: torch.Tensor,
        labels: torch.Tensor,
        seed: int | list[int],
    ) -> TrainResult:
        """Train ``model`` from ``start`` on ``(features, labels)`` and return the delta.

        Parameters
        ----------
        model
            A module whose state layout matches ``start``; its weights are overwritten.
        start
            Global weights the client starts from.
        features, labels
            The client's local data.
        seed
            Seed (or seed sequence) of the mini-batch shuffle, so runs are reproducible.

        Raises
        ------
        ValueError
            If the client has no data.
        """
        num_samples = int(labels.shape[0])
        if num_samples == 0:
            raise ValueError("cannot train a client with no samples")
        cfg = self.config
        start.load_into(model)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        anchors = [p.detach().clone() for p in params] if cfg.proximal_mu > 0 else None
        generator = torch.Generator()
        generator.manual_seed(fold_seed(seed))
        order, sizes = batch_order(num_samples, cfg, generator)
        batches = zip(features[order].split(sizes), labels[order].split(sizes), strict=True)
        losses: list[torch.Tensor] = []
        for batch_x, batch_y in batches:
            loss, per_sample = self._losses(model(batch_x), batch_y)
            if anchors is not None:
                prox = sum((p - a).pow(2).sum() for p, a in zip(params, anchors, strict=True))
                loss = loss + 0.5 * cfg.proximal_mu * prox
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(per_sample)
        every_loss = torch.cat(losses).double()
        seen = int(every_loss.numel())
        delta = ModelWeights.from_module(model) - start
        stats = LossStats(
            mean_loss=float(every_loss.sum()) / seen,
            sum_sq_loss=float(every_loss.square().sum()),
            samples_seen=seen,
        )
        return TrainResult(delta=delta, num_samples=num_samples, loss=stats, steps=len(sizes))


_MASK64 = (1 << 64) - 1


def fold_seed(seed: int | list[int]) -> int:
    """Reduce a seed sequence to one 63-bit integer for ``torch.Generator``.

    Each element is mixed in with the SplitMix64 finaliser, so nearby sequences
    (consecutive clients or rounds) give unrelated seeds; pure Python because it
    runs once per client training.
    """
    if isinstance(seed, int):
        return seed
    state = 0x9E3779B97F4A7C15
    for value in seed:
        state = (state ^ (int(value) & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        state ^= state >> 31
        state = (state + 0x9E3779B97F4A7C15) * 0x94D049BB133111EB & _MASK64
        state ^= state >> 29
    return state >> 1


def evaluate(
    model: nn.Module,
    weights: ModelWeights,
    features: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: PerSampleLoss = cross_entropy_per_sample,
    batch_size: int = 4096,
) -> EvalResult:
    """Top-1 accuracy and mean loss of ``weights`` on a labelled set."""
    num_samples = int(labels.shape[0])
    if num_samples == 0:
        return EvalResult(accuracy=float("nan"), loss=float("nan"), num_samples=0)
    weights.load_into(model)
    model.eval()
    correct = 0
    loss_total = 0.0
    with torch.no_grad():
        for begin in range(0, num_samples, batch_size):
            outputs = model(features[begin : begin + batch_size])
            target = labels[begin : begin + batch_size]
            loss_total += float(loss_fn(outputs, target).sum())
            correct += int((outputs.argmax(dim=1) == target).sum())
    return EvalResult(
        accuracy=correct / num_samples, loss=loss_total / num_samples, num_samples=num_samples
    )
