"""Oort federated testing: the deviation bound and the two testing selectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsys.selection.testing import (
    CategoryTestingSelector,
    DeviationTestingSelector,
    participants_for_deviation,
)

# ---------------------------------------------------------------- deviation bound, by hand


def test_bound_is_hoeffding_count_for_a_huge_population() -> None:
    # L = ln(2 / 0.05) / (2 * 0.1**2) = 184.44 -> 185 (finite-population factor ~ 1)
    assert participants_for_deviation(0.1, 0.95, 1.0, 10**12) == 185


def test_bound_applies_the_finite_population_correction() -> None:
    hoeffding = math.log(40.0) / 0.02
    expected = math.ceil(hoeffding * 101 / (100 + hoeffding))  # 65.49 -> 66
    assert participants_for_deviation(0.1, 0.95, 1.0, 100) == expected == 66


def test_bound_scales_with_range_and_union_bound() -> None:
    # Range 10 with epsilon 1 is the same question as range 1 with epsilon 0.1.
    assert participants_for_deviation(1.0, 0.95, 10.0, 10**12) == 185
    hoeffding = math.log(2.0 * 10 / 0.05) / 0.02
    assert participants_for_deviation(0.1, 0.95, 1.0, 10**12, num_categories=10) == math.ceil(
        hoeffding
    )


def test_bound_limits() -> None:
    assert participants_for_deviation(0.1, 0.95, 0.0, 50) == 1
    assert participants_for_deviation(1e-6, 0.99, 1.0, 50) == 50
    tight = participants_for_deviation(0.05, 0.95, 1.0, 10_000)
    assert participants_for_deviation(0.1, 0.95, 1.0, 10_000) < tight
    assert participants_for_deviation(0.05, 0.80, 1.0, 10_000) < tight


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 0.9, 1.0, 10),
        (0.1, 1.0, 1.0, 10),
        (0.1, 0.0, 1.0, 10),
        (0.1, 0.9, -1.0, 10),
        (0.1, 0.9, 1.0, 0),
    ],
)
def test_bound_rejects_bad_arguments(args: tuple[float, float, float, int]) -> None:
    with pytest.raises(ValueError):
        participants_for_deviation(*args)


# ---------------------------------------------------------------- deviation bound, Monte Carlo


def _exceed_rate(values: np.ndarray, n: int, epsilon: float, draws: int, seed: int) -> float:
    """Share of ``draws`` samples of ``n`` rows (no replacement) whose mean misses by >= eps."""
    rng = np.random.default_rng(seed)
    mean = values.mean(axis=0)
    picks = np.argsort(rng.random((draws, len(values))), axis=1)[:, :n]
    deviation = np.abs(values[picks].mean(axis=1) - mean)
    return float(np.mean(deviation.reshape(draws, -1).max(axis=1) >= epsilon))


def test_bound_holds_by_monte_carlo_on_a_worst_case_population() -> None:
    # Half the clients at 0, half at 1: the largest variance a [0, 1] value can have.
    values = np.repeat([0.0, 1.0], 1000)
    n = participants_for_deviation(0.05, 0.9, 1.0, len(values))
    assert _exceed_rate(values, n, 0.05, draws=1000, seed=1) <= 0.1
    # The check has power: far fewer participants than the bound do miss too often.
    assert _exceed_rate(values, n // 8, 0.05, draws=1000, seed=2) > 0.1


def test_bound_holds_by_monte_carlo_for_every_category_share() -> None:
    # Each client's share of 5 categories (label skew); all 5 must stay within epsilon.
    rng = np.random.default_rng(3)
    shares = rng.dirichlet(np.full(5, 0.3), size=2000)
    n = participants_for_deviation(0.05, 0.9, 1.0, len(shares), num_categories=5)
    assert _exceed_rate(shares, n, 0.05, draws=600, seed=4) <= 0.1


# ---------------------------------------------------------------- the selectors


def test_deviation_selector_draws_the_bound_reproducibly() -> None:
    selector = DeviationTestingSelector(epsilon=0.2, confidence=0.9, value_range=1.0, seed=7)
    available = np.arange(100, 400)
    picked, state = selector.select(None, 3, available, 5, 0.0)
    assert state is None
    assert len(picked) == len(set(picked)) == participants_for_deviation(0.2, 0.9, 1.0, 300)
    assert set(picked) <= set(available.tolist())
    assert all(isinstance(c, int) for c in picked)
    assert selector.select(None, 3, available, 5, 0.0)[0] == picked
    assert selector.select(None, 4, available, 5, 0.0)[0] != picked
    assert selector.select(None, 0, np.array([], dtype=np.int64), 5, 0.0)[0] == []


def test_category_selector_plans_over_available_clients_with_global_ids() -> None:
    counts = np.array([[5, 0], [0, 5], [3, 3], [9, 9]])
    selector = CategoryTestingSelector(
        requests={0: 2, 1: 2},
        client_counts=counts,
        client_speed=np.ones(4),
        client_bandwidth=np.array([10.0, 10.0, 1.0, 100.0]),
        model_bytes=10.0,
    )
    plan = selector.plan(np.array([2, 1, 0]))  # client 3, the best, is offline
    np.testing.assert_array_equal(plan.clients, [0, 1])
    np.testing.assert_array_equal(plan.quotas, [[2, 0], [0, 2]])
    assert selector.select(None, 0, np.array([0, 1, 2]), 1, 0.0) == ([0, 1], None)
    # With client 3 online, spreading beats it alone: it does one of each (0.1 + 2 s),
    # clients 0 and 1 one sample each (1 + 1 s), makespan 2.1 s.
    everyone = selector.plan(np.arange(4))
    np.testing.assert_array_equal(everyone.clients, [0, 1, 3])
    np.testing.assert_array_equal(everyone.quotas, [[1, 0], [0, 1], [1, 1]])
    np.testing.assert_allclose(everyone.makespan_s, 2.1)
    assert selector.describe()["requests"] == {0: 2, 1: 2}
