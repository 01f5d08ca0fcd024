"""DP-FedAvg: clipping, noise scale, and epsilon against dp-accounting itself."""

import dp_accounting
import numpy as np
import pytest
import torch
from dp_accounting.rdp import RdpAccountant

from fedsys.aggregation import DPFedAvg, PrivacyAccountant, PrivacyBudgetExceededError
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights, TensorSpec

from .helpers import flat, update_of, weights_of


def dp(noise_multiplier=1.0, clip_norm=1.0, per_round=2, population=100, **kwargs):
    accountant = PrivacyAccountant(
        noise_multiplier=noise_multiplier,
        clients_per_round=per_round,
        population_size=population,
        sampling=kwargs.pop("sampling", "poisson"),
    )
    return DPFedAvg(clip_norm=clip_norm, accountant=accountant, **kwargs)


def test_each_update_is_clipped_and_divided_by_the_expected_count():
    strategy = dp(noise_multiplier=0.0, clip_norm=1.0, per_round=4)
    weights = weights_of([0, 0, 0, 0])
    updates = [update_of([3, 4, 0, 0]), update_of([0, 0, 0.5, 0])]  # norms 5 and 0.5

    new, _ = strategy.aggregate(weights, updates, strategy.init_state(weights))

    # ([0.6, 0.8, 0, 0] + [0, 0, 0.5, 0]) / 4
    np.testing.assert_allclose(flat(new), [0.15, 0.2, 0.125, 0], rtol=1e-6)


def test_noise_has_the_configured_standard_deviation():
    z, clip, per_round, size = 0.5, 2.0, 2, 40_000
    strategy = dp(noise_multiplier=z, clip_norm=clip, per_round=per_round)
    weights = ModelWeights((TensorSpec("w", (size,)),), torch.zeros(size))
    zero = ClientUpdate(0, weights, num_samples=1)

    new, _ = strategy.aggregate(weights, [zero, zero], strategy.init_state(weights))

    # std of the noise on the sum is z·C; the mean divides it by the expected count
    expected_std = z * clip / per_round
    np.testing.assert_allclose(float(new.flat.std()), expected_std, rtol=0.02)
    assert abs(float(new.flat.mean())) < 5 * expected_std / size**0.5


def test_noise_is_seeded_per_round():
    strategy = dp(seed=3)
    weights = weights_of([0, 0, 0, 0])
    updates = [update_of([1, 0, 0, 0])]
    state = strategy.init_state(weights)

    first, state1 = strategy.aggregate(weights, updates, state)
    again, _ = dp(seed=3).aggregate(weights, updates, state)
    second, _ = strategy.aggregate(weights, updates, state1)

    np.testing.assert_array_equal(flat(first), flat(again))
    assert flat(first) != flat(second)


def test_poisson_epsilon_matches_dp_accounting():
    strategy = dp(noise_multiplier=1.1, per_round=10, population=1000, target_delta=1e-5)
    weights = weights_of([0, 0, 0, 0])
    state = strategy.init_state(weights)

    for _ in range(3):
        weights, state = strategy.aggregate(weights, [update_of([1, 0, 0, 0])], state)

    event = dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.1))
    expected = RdpAccountant().compose(event, 3).get_epsilon(1e-5)
    assert state.rounds == 3
    np.testing.assert_allclose(state.epsilon, expected, rtol=1e-9)


def test_fixed_size_epsilon_matches_dp_accounting_under_replace_one():
    accountant = PrivacyAccountant(
        1.0, clients_per_round=10, population_size=1000, sampling="fixed_size"
    )

    epsilon = accountant.epsilon(rounds=50, delta=1e-5)

    # Replacing one client moves the clipped sum by up to 2C, so the noise z·C is a
    # multiplier of z/2 relative to that sensitivity.
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        1000, 10, dp_accounting.GaussianDpEvent(0.5)
    )
    relation = dp_accounting.NeighboringRelation.REPLACE_ONE
    expected = RdpAccountant(neighboring_relation=relation).compose(event, 50).get_epsilon(1e-5)
    np.testing.assert_allclose(epsilon, expected, rtol=1e-9)


def test_epsilon_grows_with_rounds_and_is_zero_before_any():
    accountant = PrivacyAccountant(1.0, clients_per_round=10, population_size=1000)

    values = [accountant.epsilon(r, 1e-5) for r in (0, 1, 10, 100)]

    assert values[0] == 0.0
    assert values == sorted(values) and len(set(values)) == 4


def budget_between_rounds_1_and_2(**kwargs):
    accountant = PrivacyAccountant(1.0, clients_per_round=10, population_size=100)
    eps1, eps2 = accountant.epsilon(1, 1e-5), accountant.epsilon(2, 1e-5)
    return dp(noise_multiplier=1.0, per_round=10, epsilon_budget=(eps1 + eps2) / 2, **kwargs)


def test_stop_raises_before_the_round_that_would_exceed_the_budget():
    strategy = budget_between_rounds_1_and_2(on_budget_exceeded="stop")
    weights = weights_of([0, 0, 0, 0])
    weights, state = strategy.aggregate(
        weights, [update_of([1, 0, 0, 0])], strategy.init_state(weights)
    )
    consumed = []

    def updates():
        consumed.append(True)
        yield update_of([1, 0, 0, 0])

    with pytest.raises(PrivacyBudgetExceededError, match="budget") as info:
        strategy.aggregate(weights, updates(), state)
    assert info.value.rounds == 2 and info.value.epsilon > info.value.budget
    assert consumed == []  # no update was even read


def test_warn_runs_the_round_and_warns():
    strategy = budget_between_rounds_1_and_2(on_budget_exceeded="warn")
    weights = weights_of([0, 0, 0, 0])
    weights, state = strategy.aggregate(
        weights, [update_of([1, 0, 0, 0])], strategy.init_state(weights)
    )

    with pytest.warns(RuntimeWarning, match="privacy budget exceeded"):
        _, state = strategy.aggregate(weights, [update_of([1, 0, 0, 0])], state)
    assert state.rounds == 2


def test_accountant_rejects_a_sample_larger_than_the_population():
    with pytest.raises(ValueError, match="clients_per_round"):
        PrivacyAccountant(1.0, clients_per_round=11, population_size=10)


def test_per_client_epsilon_is_that_many_gaussians_under_replace_one():
    accountant = PrivacyAccountant(
        1.3, clients_per_round=10, population_size=500, sampling="fixed_size"
    )

    epsilon = accountant.epsilon_of_participations(7, 1e-5)

    relation = dp_accounting.NeighboringRelation.REPLACE_ONE
    expected = RdpAccountant(neighboring_relation=relation).compose(
        dp_accounting.GaussianDpEvent(0.65), 7
    )
    np.testing.assert_allclose(epsilon, expected.get_epsilon(1e-5), rtol=1e-9)
    assert accountant.epsilon_of_participations(0, 1e-5) == 0.0


def test_async_aggregations_count_each_clients_releases():
    strategy = dp(noise_multiplier=1.3, per_round=3, population=50, sampling="fixed_size")
    weights = weights_of([0, 0, 0, 0])
    state = strategy.init_state(weights)
    buffers = [(1, 2, 3), (1, 4, 5), (1, 2, 6)]  # client 1 in all three, 2 in two

    for buffer in buffers:
        state = strategy.with_draw(state, 40, 3)
        state = strategy.with_clients(state, buffer)
        updates = [update_of([0.1, 0, 0, 0]) for _ in buffer]
        weights, state = strategy.aggregate(weights, iter(updates), state)

    assert state.client_releases == {1: 3, 2: 2, 3: 1, 4: 1, 5: 1, 6: 1}
    per_client = strategy.accountant.epsilon_of_participations(3, strategy.target_delta)
    sampled = strategy.accountant.epsilon_of_draws([(40, 3)] * 3, strategy.target_delta)
    assert per_client > sampled  # no amplification claimed for asynchronous buffers
    np.testing.assert_allclose(state.epsilon, per_client, rtol=1e-12)
    report = strategy.privacy_report(state)
    assert report["sampling"] == "async_per_client" and report["max_client_releases"] == 3


def test_async_budget_stops_before_a_client_exceeds_it():
    strategy = dp(
        noise_multiplier=1.3, per_round=2, population=50, sampling="fixed_size", epsilon_budget=12.0
    )
    weights = weights_of([0, 0, 0, 0])
    state = strategy.init_state(weights)
    budget_rounds = 0
    with pytest.raises(PrivacyBudgetExceededError):
        for _ in range(50):
            state = strategy.with_clients(strategy.with_draw(state, 40, 2), (7, budget_rounds + 8))
            weights, state = strategy.aggregate(weights, iter([]), state)
            budget_rounds += 1
    assert state.epsilon <= 12.0
    limit = strategy.accountant.epsilon_of_participations(budget_rounds + 1, 1e-5)
    assert limit > 12.0  # client 7 in one more aggregation would have spent too much
