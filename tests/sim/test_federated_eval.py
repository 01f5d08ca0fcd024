"""Evaluation on test participants chosen by Oort's testing selectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedsys.core.training import cross_entropy_per_sample, evaluate
from fedsys.core.weights import ModelWeights
from fedsys.data import load_digits, partition_central
from fedsys.selection.testing import InfeasibleRequestError, participants_for_deviation
from fedsys.sim.federated_eval import FederatedEvaluator, mix_deviations
from fedsys.traces.fleet import DeviceFleet

from .federation import tiny_dataset


@pytest.fixture(scope="module")
def digits():
    return partition_central(load_digits(0), kind="dirichlet", num_clients=60, seed=0, alpha=0.3)


def _model(dataset) -> tuple[nn.Module, ModelWeights]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, dataset.num_classes))
    return model, ModelWeights.from_module(model)


def _fleet(n: int) -> DeviceFleet:
    return DeviceFleet.always_available(n, compute_s_per_sample=np.linspace(0.01, 1.0, n))


def test_deviation_mode_draws_the_bound_and_scores_exactly_their_test_data(digits) -> None:
    model, weights = _model(digits)
    evaluator = FederatedEvaluator("deviation", digits, _fleet(60), weights.num_bytes, 1.0)
    online = np.arange(60)

    result = evaluator.evaluate(model, weights, online, 0, cross_entropy_per_sample)

    with_test = int(evaluator.has_test.sum())
    assert len(result.participants) == participants_for_deviation(
        0.05, 0.95, 1.0, with_test, num_categories=10
    )
    x = torch.cat([digits.client_test_data(c)[0] for c in result.participants])
    y = torch.cat([digits.client_test_data(c)[1] for c in result.participants])
    expected = evaluate(model, weights, x, y)
    assert result.num_samples == len(y)
    assert result.accuracy == pytest.approx(expected.accuracy)


def test_category_mode_evaluates_exactly_the_requested_samples_per_class(digits) -> None:
    model, weights = _model(digits)
    evaluator = FederatedEvaluator(
        "category", digits, _fleet(60), weights.num_bytes, 1.0, samples_per_category=5
    )
    online = np.arange(0, 60, 2)

    result = evaluator.evaluate(model, weights, online, 0, cross_entropy_per_sample)

    assert result.num_samples == 5 * digits.num_classes
    assert set(result.participants) <= set(online.tolist())
    assert result.makespan_s > 0


def test_category_mode_names_classes_the_online_clients_cannot_supply(digits) -> None:
    model, weights = _model(digits)
    evaluator = FederatedEvaluator(
        "category", digits, _fleet(60), weights.num_bytes, 1.0, samples_per_category=1000
    )

    with pytest.raises(InfeasibleRequestError, match="categor"):
        evaluator.evaluate(model, weights, np.arange(60), 0, cross_entropy_per_sample)


def test_dataset_without_client_test_split_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="per-client test split"):
        FederatedEvaluator("deviation", tiny_dataset(4), _fleet(4), 40, 1.0)


def test_pooled_mix_deviation_is_reported_and_can_exceed_the_share_deviation() -> None:
    # Prepare: four clients; shares by hand. Client 0 is large and all class 0.
    counts = np.array([[90, 0], [1, 1], [0, 2], [1, 1]])
    pool, chosen = np.arange(4), np.array([0, 1])
    # Act
    gaps = mix_deviations(counts, pool, chosen)
    # Assert: mean shares: chosen (1 + .5)/2 = .75 vs pool (1 + .5 + 0 + .5)/4 = .5;
    # pooled mix: chosen 91/92 vs pool 92/96.
    assert gaps["share_deviation"] == pytest.approx(0.25)
    assert gaps["pooled_deviation"] == pytest.approx(91 / 92 - 92 / 96)


def test_deviation_mode_reports_the_bound_and_both_measured_deviations(digits) -> None:
    model, weights = _model(digits)
    evaluator = FederatedEvaluator("deviation", digits, _fleet(60), weights.num_bytes, 1.0)

    extra = evaluator.evaluate(
        model, weights, np.arange(60), 0, cross_entropy_per_sample
    ).as_extra()

    assert extra["deviation_bound"] == 0.05
    assert 0 <= extra["share_deviation"] <= 1 and 0 <= extra["pooled_deviation"] <= 1


def test_category_mode_plans_with_device_reported_counts(digits) -> None:
    from fedsys.data.device_stats import label_histograms

    model, weights = _model(digits)
    truth = digits.test_label_counts()
    exact = FederatedEvaluator(
        "category", digits, _fleet(60), weights.num_bytes, 1.0, samples_per_category=5,
        category_counts=label_histograms(truth).per_client,
    )
    baseline = FederatedEvaluator(
        "category", digits, _fleet(60), weights.num_bytes, 1.0, samples_per_category=5
    )
    online = np.arange(60)
    same = exact.evaluate(model, weights, online, 0, cross_entropy_per_sample)
    assert same.participants == baseline.evaluate(
        model, weights, online, 0, cross_entropy_per_sample
    ).participants
    # A client that reports holding nothing is never asked, whatever it really holds.
    silent = same.participants[0]
    reported = truth.copy()
    reported[silent] = 0
    evaluator = FederatedEvaluator(
        "category", digits, _fleet(60), weights.num_bytes, 1.0, samples_per_category=5,
        category_counts=reported,
    )
    result = evaluator.evaluate(model, weights, online, 0, cross_entropy_per_sample)
    assert silent not in result.participants
    assert result.num_samples == 5 * digits.num_classes
    with pytest.raises(ValueError, match="shape"):
        FederatedEvaluator("category", digits, _fleet(60), weights.num_bytes, 1.0,
                           category_counts=truth[:3])
