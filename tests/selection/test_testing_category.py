"""Category-testing selection: requests met, data respected, clear errors, fast vs MILP."""

from __future__ import annotations

import numpy as np
import pytest

from fedsys.selection.testing import (
    CategorySelection,
    InfeasibleRequestError,
    select_by_category,
)

MODEL_BYTES = 10.0


def _population(
    seed: int, num_clients: int = 30, num_categories: int = 4, share: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Requests, counts, seconds per sample and bandwidth of a small skewed population."""
    rng = np.random.default_rng([seed, num_clients, num_categories])
    sizes = rng.lognormal(np.log(40.0), 1.0, num_clients)
    mix = rng.dirichlet(np.full(num_categories, 0.3), size=num_clients)
    counts = np.floor(mix * sizes[:, None]).astype(np.int64)
    speed = rng.lognormal(np.log(0.05), 1.0, num_clients)
    bandwidth = rng.lognormal(np.log(5.0), 1.0, num_clients)
    requests = np.maximum(1, np.floor(share * counts.sum(axis=0))).astype(np.int64)
    return requests, counts, speed, bandwidth


def _assert_valid(
    chosen: CategorySelection,
    requests: np.ndarray,
    counts: np.ndarray,
    speed: np.ndarray,
    bandwidth: np.ndarray,
    budget: int | None = None,
) -> None:
    """Every request met exactly, no quota above the data, times and makespan consistent."""
    assert chosen.quotas.dtype.kind == "i"
    assert chosen.quotas.shape == (len(chosen.clients), counts.shape[1])
    np.testing.assert_array_equal(chosen.quotas.sum(axis=0), requests)
    assert np.all(chosen.quotas >= 0)
    assert np.all(chosen.quotas <= counts[chosen.clients])
    assert np.all(chosen.quotas.sum(axis=1) > 0)
    assert np.all(np.diff(chosen.clients) > 0)  # distinct and ascending
    if budget is not None:
        assert len(chosen.clients) <= budget
    ids = chosen.clients
    expected = MODEL_BYTES / bandwidth[ids] + speed[ids] * chosen.quotas.sum(axis=1)
    np.testing.assert_allclose(chosen.completion_s, expected)
    np.testing.assert_allclose(chosen.makespan_s, expected.max())
    assert chosen.lower_bound_s <= chosen.makespan_s * (1 + 1e-9)


# ---------------------------------------------------------------- by hand


@pytest.mark.parametrize("method", ["fast", "milp"])
def test_small_case_by_hand(method: str) -> None:
    # Transfers 1 s, 1 s, 0.1 s; one sample costs 1 s everywhere. Client 2 alone would need
    # 0.1 + 4 s; clients 0 and 1 one sample each and client 2 one of each: makespan 2.1 s.
    counts = np.array([[5, 0], [0, 5], [9, 9]])
    speed = np.ones(3)
    bandwidth = np.array([10.0, 10.0, 100.0])
    chosen = select_by_category([2, 2], counts, speed, bandwidth, MODEL_BYTES, method=method)
    np.testing.assert_array_equal(chosen.clients, [0, 1, 2])
    np.testing.assert_array_equal(chosen.quotas, [[1, 0], [0, 1], [1, 1]])
    np.testing.assert_allclose(chosen.completion_s, [2.0, 2.0, 2.1])
    np.testing.assert_allclose(chosen.makespan_s, 2.1)
    # With one client allowed only client 2 can serve both categories: 0.1 + 4 s.
    alone = select_by_category([2, 2], counts, speed, bandwidth, MODEL_BYTES, 1, method=method)
    np.testing.assert_array_equal(alone.clients, [2])
    np.testing.assert_array_equal(alone.quotas, [[2, 2]])
    np.testing.assert_allclose(alone.makespan_s, 4.1)


def test_quota_is_capped_by_a_clients_data() -> None:
    # Client 0 is fast but holds only 2 samples; client 1, slow, must do the other 3.
    counts = np.array([[2], [10]])
    chosen = select_by_category(
        {0: 5}, counts, np.array([0.01, 1.0]), np.array([1e6, 1e6]), MODEL_BYTES
    )
    np.testing.assert_array_equal(chosen.quotas, [[2], [3]])


def test_ids_are_rows_of_the_input_and_useless_clients_are_skipped() -> None:
    # Client 0 holds only category 1, which nobody requests; client 2 holds nothing.
    counts = np.array([[0, 50], [4, 0], [0, 0], [4, 3]])
    chosen = select_by_category([6, 0], counts, np.ones(4), np.full(4, 10.0), MODEL_BYTES)
    np.testing.assert_array_equal(chosen.clients, [1, 3])
    np.testing.assert_array_equal(chosen.quotas, [[3, 0], [3, 0]])


def test_nothing_requested_chooses_nobody() -> None:
    chosen = select_by_category({}, np.ones((3, 2), int), np.ones(3), np.ones(3), MODEL_BYTES)
    assert chosen.clients.shape == (0,)
    assert chosen.quotas.shape == (0, 2)
    assert chosen.makespan_s == 0.0


# ---------------------------------------------------------------- random populations


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget_share", [None, 0.6, 0.3])
def test_requests_are_met_on_random_populations(seed: int, budget_share: float | None) -> None:
    requests, counts, speed, bandwidth = _population(seed, num_clients=40, num_categories=5)
    unbudgeted = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES)
    _assert_valid(unbudgeted, requests, counts, speed, bandwidth)
    budget = None
    if budget_share is not None:
        budget = max(2, int(budget_share * len(unbudgeted.clients)))
    chosen = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES, budget)
    _assert_valid(chosen, requests, counts, speed, bandwidth, budget)
    assert chosen.makespan_s >= unbudgeted.lower_bound_s
    assert chosen.makespan_s >= unbudgeted.makespan_s * (1 - 1e-3)


@pytest.mark.parametrize("seed", range(2))
def test_requests_are_met_with_many_categories(seed: int) -> None:
    requests, counts, speed, bandwidth = _population(seed, num_clients=200, num_categories=30)
    for budget in (None, 25):
        chosen = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES, budget)
        _assert_valid(chosen, requests, counts, speed, bandwidth, budget)


def test_same_inputs_same_selection() -> None:
    requests, counts, speed, bandwidth = _population(11, num_clients=60)
    first = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES, 5)
    again = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES, 5)
    np.testing.assert_array_equal(first.clients, again.clients)
    np.testing.assert_array_equal(first.quotas, again.quotas)


# ---------------------------------------------------------------- fast path vs MILP alone


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budgeted", [False, True])
def test_fast_path_is_within_a_few_percent_of_the_milp(seed: int, budgeted: bool) -> None:
    requests, counts, speed, bandwidth = _population(seed, num_clients=30, num_categories=4)
    budget = None
    if budgeted:
        free = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES)
        budget = max(2, len(free.clients) // 2)
    exact = select_by_category(
        requests, counts, speed, bandwidth, MODEL_BYTES, budget, method="milp", mip_rel_gap=1e-6
    )
    fast = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES, budget)
    assert exact.status.startswith("Optimization terminated successfully")
    _assert_valid(exact, requests, counts, speed, bandwidth, budget)
    _assert_valid(fast, requests, counts, speed, bandwidth, budget)
    assert fast.makespan_s <= exact.makespan_s * 1.03
    # Neither beats the other's proven bound.
    assert fast.makespan_s >= exact.lower_bound_s * (1 - 1e-6)
    assert exact.makespan_s >= fast.lower_bound_s * (1 - 1e-6)


# ---------------------------------------------------------------- budget


def test_budget_is_respected_and_costs_time() -> None:
    requests, counts, speed, bandwidth = _population(5, num_clients=80, num_categories=4)
    free = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES)
    assert len(free.clients) > 4
    previous = free.makespan_s
    for budget in (len(free.clients) - 1, 6, 4):
        chosen = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES, budget)
        _assert_valid(chosen, requests, counts, speed, bandwidth, budget)
        assert chosen.makespan_s >= previous * (1 - 5e-3)  # fewer clients, no faster
        previous = chosen.makespan_s


def test_a_budget_that_does_not_bind_changes_nothing() -> None:
    requests, counts, speed, bandwidth = _population(6)
    free = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES)
    loose = select_by_category(requests, counts, speed, bandwidth, MODEL_BYTES, len(counts))
    np.testing.assert_array_equal(loose.clients, free.clients)
    np.testing.assert_allclose(loose.makespan_s, free.makespan_s)


# ---------------------------------------------------------------- infeasible requests


@pytest.mark.parametrize("method", ["fast", "milp"])
def test_request_above_all_data_names_category_and_shortfall(method: str) -> None:
    counts = np.array([[5, 1, 0], [5, 2, 1]])
    with pytest.raises(InfeasibleRequestError) as caught:
        select_by_category([4, 10, 3], counts, np.ones(2), np.ones(2), MODEL_BYTES, method=method)
    message = str(caught.value)
    assert "category 1 requests 10 but all clients hold 3 (short by 7)" in message
    assert "category 2 requests 3 but all clients hold 1 (short by 2)" in message
    assert "category 0" not in message
    assert caught.value.shortfall == {1: 7, 2: 2}
    assert caught.value.budget is None


def test_budget_below_a_categorys_largest_holders_names_it() -> None:
    counts = np.array([[4, 0], [3, 9], [3, 0]])
    with pytest.raises(InfeasibleRequestError) as caught:
        select_by_category([8, 1], counts, np.ones(3), np.ones(3), MODEL_BYTES, budget=2)
    assert "category 0 requests 8 but the 2 largest holders hold 7 (short by 1)" in str(
        caught.value
    )
    assert caught.value.shortfall == {0: 1}
    assert caught.value.budget == 2


@pytest.mark.parametrize("method", ["fast", "milp"])
def test_budget_no_pair_of_clients_meets_is_reported_by_category(method: str) -> None:
    # Every category alone, and the total, fit in two clients, but no pair covers all three:
    # each pair misses one sample of each of two categories.
    counts = np.array([[4, 4, 0], [0, 4, 4], [4, 0, 4]])
    with pytest.raises(InfeasibleRequestError) as caught:
        select_by_category(
            [5, 5, 5], counts, np.ones(3), np.ones(3), MODEL_BYTES, budget=2, method=method
        )
    message = str(caught.value)
    assert message.startswith("requests cannot be met with at most 2 clients")
    assert "(2 samples short in total)" in message
    assert len(caught.value.shortfall) == 2
    assert all(missing == 1 for missing in caught.value.shortfall.values())
    for category in caught.value.shortfall:
        assert f"category {category} requests 5 but the best 2 clients found hold 4" in message


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("requests", "counts", "match"),
    [
        ({3: 1}, np.ones((2, 2), int), "unknown category index 3"),
        ([1, 1, 1], np.ones((2, 2), int), "one entry per category"),
        ([1, -1], np.ones((2, 2), int), "non-negative"),
        ([1.5, 1], np.ones((2, 2), int), "whole numbers"),
        ([1, 1], -np.ones((2, 2), int), "non-negative"),
        ([1, 1], np.ones(2, int), "2-D"),
    ],
)
def test_bad_input_is_rejected(requests: object, counts: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_by_category(requests, counts, np.ones(2), np.ones(2), MODEL_BYTES)  # type: ignore[arg-type]


def test_bad_settings_are_rejected() -> None:
    counts = np.ones((2, 2), int)
    with pytest.raises(ValueError, match="positive"):
        select_by_category([1, 1], counts, np.array([1.0, 0.0]), np.ones(2), MODEL_BYTES)
    with pytest.raises(ValueError, match="shape"):
        select_by_category([1, 1], counts, np.ones(3), np.ones(2), MODEL_BYTES)
    with pytest.raises(ValueError, match="budget"):
        select_by_category([1, 1], counts, np.ones(2), np.ones(2), MODEL_BYTES, budget=-1)
    with pytest.raises(ValueError, match="method"):
        select_by_category([1, 1], counts, np.ones(2), np.ones(2), MODEL_BYTES, method="lp")  # type: ignore[arg-type]
