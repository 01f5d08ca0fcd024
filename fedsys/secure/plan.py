"""Which strategies secure aggregation can serve, and how a sum becomes their input.

Secure aggregation reveals only the sum of the clients' vectors. FedAvg and the
server optimizers built on the mean delta (FedAvgM, FedAdam/Adagrad/Yogi, FedProx's
aggregation) need nothing else; DP-FedAvg needs the sum of clipped deltas, to which
it adds its noise. Rules that look at individual updates (median, trimmed mean,
Krum, q-FedAvg) cannot run on a sum and are refused.

Each client sends ``[w · clip(delta), w]``: its update scaled by its FedAvg weight
``w = min(num_samples, max_weight) / max_weight`` (or 1 for unweighted rules), and the
weight itself, both masked; the server divides the two sums.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedsys.aggregation.base import Strategy
from fedsys.aggregation.dp import DPFedAvg
from fedsys.aggregation.fedavg import FedAvg
from fedsys.aggregation.fedavgm import FedAvgM
from fedsys.aggregation.fedopt import FedAdagrad, FedAdam, FedYogi
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights
from fedsys.secure.errors import SecureAggregationError

SUM_STRATEGIES = frozenset(
    {"fedavg", "fedprox", "fedavgm", "fedadam", "fedadagrad", "fedyogi", "dp_fedavg"}
)
"""Strategy names (config ``strategy.name``) that need only the sum of the updates."""

_SUM_CLASSES = (FedAvg, FedAvgM, FedAdam, FedAdagrad, FedYogi, DPFedAvg)


def refusal(strategy_name: str) -> str | None:
    """Why ``strategy_name`` cannot run under secure aggregation, or ``None`` if it can."""
    if strategy_name in SUM_STRATEGIES:
        return None
    return (
        f"strategy {strategy_name!r} needs each client's update, which secure aggregation "
        f"hides: use one of {', '.join(sorted(SUM_STRATEGIES))}"
    )


@dataclass(frozen=True)
class SecurePlan:
    """What clients send and how the server turns the sum into the strategy's input.

    Parameters
    ----------
    weighted
        Scale each update by its sample weight (FedAvg's weighted mean).
    clip_norm
        L2 bound every client applies to its delta first (DP-FedAvg's ``C`` or the
        validation ``max_norm``; ``None``: none).
    max_weight
        Samples at which a client's weight saturates (keeps ``w`` in ``(0, 1]``).
    repeat_mean
        Hand the strategy the mean once per contributor, so a rule that sums (DP-FedAvg)
        sees the true sum; otherwise the mean once.
    """

    weighted: bool = True
    clip_norm: float | None = None
    max_weight: float = 1000.0
    repeat_mean: bool = False

    def client_vector(self, delta: torch.Tensor, num_samples: int) -> np.ndarray:
        """The real vector a client quantizes and masks: ``[w · clip(delta), w]``."""
        flat = delta.detach().to(torch.float64).cpu().numpy()
        if self.clip_norm is not None:
            norm = float(np.linalg.norm(flat))
            if norm > self.clip_norm:
                flat = flat * (self.clip_norm / norm)
        weight = min(num_samples, self.max_weight) / self.max_weight if self.weighted else 1.0
        out = np.empty(flat.size + 1, dtype=np.float64)
        np.multiply(flat, weight, out=out[:-1])
        out[-1] = weight
        return out

    def aggregate(
        self,
        strategy: Strategy[Any],
        weights: ModelWeights,
        real_sum: np.ndarray,
        contributors: int,
        state: Any,
    ) -> tuple[ModelWeights, Any]:
        """Run ``strategy`` on the mean the sum reveals.

        Raises
        ------
        SecureAggregationError
            If the summed weight is not positive (nothing to average).
        """
        total_weight = float(real_sum[-1])
        if not total_weight > 0:
            raise SecureAggregationError(
                f"summed client weight is {total_weight:.3g}: nothing to average"
            )
        mean = torch.from_numpy((real_sum[:-1] / total_weight).astype(np.float32))
        update = ClientUpdate(
            client_id=-1,
            delta=weights.with_flat(mean),
            num_samples=max(1, round(total_weight * self.max_weight)),
        )
        times = contributors if self.repeat_mean else 1
        return strategy.aggregate(weights, _repeat(update, times), state)


def _repeat(update: ClientUpdate, times: int) -> Iterator[ClientUpdate]:
    for _ in range(times):
        yield update


def plan_for(
    strategy: Strategy[Any], max_weight: float = 1000.0, max_norm: float | None = None
) -> SecurePlan:
    """The plan for ``strategy``, or a clear refusal.

    Raises
    ------
    SecureAggregationError
        If the strategy needs individual updates.
    """
    if not isinstance(strategy, _SUM_CLASSES):
        raise SecureAggregationError(
            f"strategy {type(strategy).__name__} needs each client's update, which secure "
            f"aggregation hides: use one of {', '.join(sorted(SUM_STRATEGIES))}"
        )
    if isinstance(strategy, DPFedAvg):
        clip = strategy.clip_norm if max_norm is None else min(strategy.clip_norm, max_norm)
        return SecurePlan(weighted=False, clip_norm=clip, max_weight=max_weight, repeat_mean=True)
    settings = getattr(strategy, "settings", None)
    if settings is not None:
        weighted = bool(settings.weighted)
    else:
        weighted = bool(getattr(strategy, "weighted", True))
    return SecurePlan(weighted=weighted, clip_norm=max_norm, max_weight=max_weight)
