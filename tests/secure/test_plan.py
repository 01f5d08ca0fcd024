"""Strategies on a secure sum: the same model as with plain updates, or a clear refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsys.aggregation.dp import DPFedAvg
from fedsys.aggregation.fedavg import FedAvg
from fedsys.aggregation.fedopt import FedAdam, FedOptSettings
from fedsys.aggregation.krum import Krum
from fedsys.aggregation.median import CoordinateMedian
from fedsys.aggregation.privacy import PrivacyAccountant
from fedsys.config.schema import RunConfig
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights
from fedsys.secure import Quantizer, SecureAggregationError, secure_sum
from fedsys.secure.plan import plan_for


def _weights() -> ModelWeights:
    return ModelWeights.from_tensors({"w": torch.zeros(3, 4), "b": torch.zeros(4)})


def _updates(weights: ModelWeights) -> list[ClientUpdate]:
    rng = np.random.default_rng(3)
    return [
        ClientUpdate(
            client_id=c,
            delta=weights.with_flat(torch.from_numpy(rng.normal(0, 0.1, 16).astype(np.float32))),
            num_samples=int(n),
        )
        for c, n in enumerate([10, 40, 25, 5, 60])
    ]


def _secure(strategy, weights, updates, state, max_norm=None):
    plan = plan_for(strategy, max_weight=100.0, max_norm=max_norm)
    quantizer = Quantizer(clip_range=2.0, bits=32, max_summands=len(updates))
    inputs = {
        u.client_id: quantizer.quantize(plan.client_vector(u.delta.flat, u.num_samples))
        for u in updates
    }
    result = secure_sum(inputs, degree=2, threshold=0.6)
    real = quantizer.dequantize_sum(result.total, len(result.contributors))
    return plan.aggregate(strategy, weights, real, len(result.contributors), state)


@pytest.mark.parametrize(
    "strategy", [FedAvg(), FedAvg(weighted=False), FedAdam(FedOptSettings(server_lr=0.1))]
)
def test_secure_sum_gives_the_strategy_the_plain_result(strategy) -> None:
    weights = _weights()
    updates = _updates(weights)
    state = strategy.init_state(weights)

    plain, _ = strategy.aggregate(weights, iter(updates), state)
    secure, _ = _secure(strategy, weights, updates, state)

    np.testing.assert_allclose(secure.flat.numpy(), plain.flat.numpy(), atol=1e-5)


def test_dp_fedavg_gets_the_sum_of_client_clipped_deltas_plus_its_noise() -> None:
    accountant = PrivacyAccountant(noise_multiplier=0.5, clients_per_round=5, population_size=50)
    strategy = DPFedAvg(clip_norm=0.2, accountant=accountant, seed=4)
    weights = _weights()
    updates = _updates(weights)
    state = strategy.init_state(weights)

    plain, plain_state = strategy.aggregate(weights, iter(updates), state)
    secure, secure_state = _secure(strategy, weights, updates, state)

    np.testing.assert_allclose(secure.flat.numpy(), plain.flat.numpy(), atol=1e-5)
    assert secure_state.rounds == plain_state.rounds == 1


@pytest.mark.parametrize("strategy", [CoordinateMedian(), Krum(num_byzantine=1)])
def test_rules_that_need_individual_updates_are_refused(strategy) -> None:
    with pytest.raises(SecureAggregationError, match="needs each client's update"):
        plan_for(strategy)


def test_config_refuses_median_compression_and_async_with_secure_aggregation() -> None:
    secure = {"deploy": {"secure_aggregation": "secagg+"}}
    with pytest.raises(ValueError, match="'median' needs each client's update"):
        RunConfig.model_validate({**secure, "strategy": {"name": "median"}})
    with pytest.raises(ValueError, match=r"compression\.name to none"):
        RunConfig.model_validate({**secure, "compression": {"name": "int8"}})
    with pytest.raises(ValueError, match=r"round\.mode sync or deadline"):
        RunConfig.model_validate({**secure, "round": {"mode": "async"}})
