"""Federated evaluation: test the global model on chosen participants' own test data.

A deployed federation cannot read a central test set; it asks clients to evaluate.
Which clients, and how many, is Oort's testing-selection question:

* ``deviation``: as many random online clients as the deviation bound asks for, so
  the *mean of their per-client category shares* is within ``epsilon`` of the online
  population's mean share, at ``confidence``. That is what the bound covers, and not
  the category mix of the participants' pooled test data: under size skew one large
  client can swing the pooled mix far more than ``epsilon``. Each evaluation reports
  both measured deviations (``share_deviation``, which the bound covers, and
  ``pooled_deviation``, which it does not) next to the bound (``deviation_bound``);
* ``category``: the online clients that together hold ``samples_per_category`` test
  samples of every class, chosen so the slowest of them finishes soonest; each
  evaluates exactly its quota.

The simulator still reports the central test-set accuracy; participant accuracy is
reported next to it, so a user sees what the chosen participants would have told them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedsys.core.training import PerSampleLoss, evaluate
from fedsys.core.weights import ModelWeights
from fedsys.data.federated import FederatedDataset
from fedsys.selection.testing import CategoryTestingSelector, DeviationTestingSelector
from fedsys.traces.fleet import DeviceFleet

INFERENCE_SHARE = 1.0 / 3.0
"""Evaluating a sample costs about a third of training on it (forward only)."""


@dataclass(frozen=True)
class ParticipantEval:
    """What the chosen test participants report."""

    participants: list[int]
    accuracy: float
    loss: float
    num_samples: int
    makespan_s: float
    deviation: dict[str, float] | None = None
    """``deviation`` mode: the bound and the two measured deviations (see the module)."""

    def as_extra(self) -> dict[str, object]:
        """Fields for a round record's ``extra``."""
        return {
            "eval_participants": len(self.participants),
            "participant_accuracy": self.accuracy,
            "participant_loss": self.loss,
            "participant_samples": self.num_samples,
            "eval_makespan_s": self.makespan_s,
            **(self.deviation or {}),
        }


def mix_deviations(counts: np.ndarray, pool: np.ndarray, chosen: np.ndarray) -> dict[str, float]:
    """Largest per-category deviation of the chosen clients from the pool, two ways.

    ``share_deviation``: mean of per-client category shares (chosen vs pool), what
    the Serfling/Hoeffding bound of the deviation selector covers.
    ``pooled_deviation``: category mix of the pooled samples (chosen vs pool), which
    weighs each client by its size and is not covered by that bound.

    Parameters
    ----------
    counts
        Test samples per client and category (clients x categories).
    pool, chosen
        Ids of the population drawn from and of the participants.
    """
    if len(chosen) == 0 or len(pool) == 0:
        return {"share_deviation": float("nan"), "pooled_deviation": float("nan")}
    totals = counts.sum(axis=1, keepdims=True).astype(np.float64)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)

    def pooled(ids: np.ndarray) -> np.ndarray:
        summed = counts[ids].sum(axis=0).astype(np.float64)
        mix: np.ndarray = summed / max(summed.sum(), 1.0)
        return mix

    share_gap = np.abs(shares[chosen].mean(axis=0) - shares[pool].mean(axis=0))
    pooled_gap = np.abs(pooled(chosen) - pooled(pool))
    return {"share_deviation": float(share_gap.max()), "pooled_deviation": float(pooled_gap.max())}


class FederatedEvaluator:
    """Chooses test participants by a testing selector and evaluates on their data.

    Parameters
    ----------
    mode
        ``"deviation"`` or ``"category"``.
    dataset
        Must carry a per-client test split (``test_offsets``).
    fleet
        Device profiles: compute speed and download bandwidth set each participant's
        completion time (model download + its samples × inference time).
    model_bytes, model_cost_ratio
        Size of the broadcast model and its compute cost vs the trace's reference.
    epsilon, confidence
        Deviation target of ``deviation`` mode.
    samples_per_category, budget, method
        Request, participant cap and solver path of ``category`` mode.
    seed
        Seed of the random draw of ``deviation`` mode.
    category_counts
        Per-client test samples per class that ``category`` mode plans with, as the
        devices reported them (:func:`fedsys.data.device_stats.label_histograms`,
        possibly noisy); ``None``: the ground truth. Quotas are then taken from the
        clients' real data, so a noisy report can yield fewer samples than planned.

    Raises
    ------
    ValueError
        If the dataset has no per-client test split.
    """

    def __init__(
        self,
        mode: str,
        dataset: FederatedDataset,
        fleet: DeviceFleet,
        model_bytes: int,
        model_cost_ratio: float,
        *,
        epsilon: float = 0.05,
        confidence: float = 0.95,
        samples_per_category: int = 20,
        budget: int | None = None,
        method: str = "fast",
        seed: int = 0,
        category_counts: np.ndarray | None = None,
    ) -> None:
        if dataset.test_offsets is None:
            raise ValueError(
                f"eval.selection={mode!r} needs a per-client test split, which dataset "
                f"{dataset.name!r} lacks: use eval.selection=all"
            )
        self.mode = mode
        self.dataset = dataset
        n = dataset.num_clients
        self.test_counts = dataset.test_label_counts()
        self.has_test = self.test_counts.sum(axis=1) > 0
        self.seconds_per_sample = (
            fleet.compute_s_per_sample[:n] * model_cost_ratio * INFERENCE_SHARE
        )
        self.download_s = model_bytes / fleet.down_bytes_per_s[:n]
        self.deviation = DeviationTestingSelector(
            epsilon, confidence, 1.0, seed=seed, num_categories=dataset.num_classes
        )
        planned = self.test_counts if category_counts is None else np.asarray(category_counts)
        if planned.shape != self.test_counts.shape:
            raise ValueError(
                f"category_counts has shape {planned.shape}, expected {self.test_counts.shape}"
            )
        self.category = CategoryTestingSelector(
            [samples_per_category] * dataset.num_classes,
            planned,
            self.seconds_per_sample,
            fleet.down_bytes_per_s[:n],
            float(model_bytes),
            budget=budget,
            method=method,  # type: ignore[arg-type]
        )

    def evaluate(
        self,
        model: nn.Module,
        weights: ModelWeights,
        online: np.ndarray,
        round_idx: int,
        loss_fn: PerSampleLoss,
    ) -> ParticipantEval:
        """Choose participants among ``online`` clients and evaluate ``weights`` on them.

        Raises
        ------
        InfeasibleRequestError
            In ``category`` mode, when the online clients cannot meet the request.
        """
        pool = online[self.has_test[online]]
        deviation = None
        if self.mode == "category":
            plan = self.category.plan(pool)
            chosen = [int(c) for c in plan.clients]
            features, labels = self._quota_samples(chosen, plan.quotas)
            makespan = float(plan.makespan_s)
        else:
            chosen, _ = self.deviation.select(None, round_idx, pool, 0, 0.0)
            features, labels = self._all_samples(chosen)
            ids = np.asarray(chosen, dtype=np.int64)
            sizes = self.test_counts[ids].sum(axis=1)
            finish = self.download_s[ids] + sizes * self.seconds_per_sample[ids]
            makespan = float(finish.max()) if len(ids) else 0.0
            deviation = {
                "deviation_bound": self.deviation.epsilon,
                **mix_deviations(self.test_counts, pool, ids),
            }
        result = evaluate(model, weights, features, labels, loss_fn)
        return ParticipantEval(
            chosen, result.accuracy, result.loss, result.num_samples, makespan, deviation
        )

    def _all_samples(self, clients: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self.dataset.client_test_data(c) for c in clients]
        return _stack(parts, self.dataset)

    def _quota_samples(
        self, clients: list[int], quotas: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each client's first ``quota[j]`` test samples of every category ``j``."""
        parts = []
        for client, quota in zip(clients, quotas, strict=True):
            features, labels = self.dataset.client_test_data(client)
            keep = torch.zeros(len(labels), dtype=torch.bool)
            for category in np.flatnonzero(quota):
                rows = torch.nonzero(labels == int(category)).flatten()[: int(quota[category])]
                keep[rows] = True
            parts.append((features[keep], labels[keep]))
        return _stack(parts, self.dataset)


def _stack(
    parts: list[tuple[torch.Tensor, torch.Tensor]], dataset: FederatedDataset
) -> tuple[torch.Tensor, torch.Tensor]:
    if not parts:
        empty = dataset.test_features[:0]
        return empty, dataset.test_labels[:0]
    return torch.cat([f for f, _ in parts]), torch.cat([y for _, y in parts])
