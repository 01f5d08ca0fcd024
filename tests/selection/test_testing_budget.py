"""Budgeted category testing internals: greedy, candidate sets, cover MILP, max-flow."""

from __future__ import annotations

import numpy as np

from fedsys.selection.testing_budget import (
    budget_lower_bound_s,
    candidates,
    greedy_at,
    refine_by_cover,
    solve_cover,
)
from fedsys.selection.testing_solvers import Problem, max_flow_quotas, min_makespan_flow


def _problem(useful: list[list[int]], requests: list[int]) -> Problem:
    rows = len(useful)
    return Problem(np.array(useful), np.ones(rows), np.ones(rows), np.array(requests))


def test_greedy_takes_the_largest_cover_first() -> None:
    problem = _problem([[2, 0], [3, 3], [0, 2]], [3, 3])
    quotas = greedy_at(problem, np.array([9, 9, 9]), budget=1)
    assert quotas is not None
    np.testing.assert_array_equal(quotas, [[0, 0], [3, 3], [0, 0]])


def test_greedy_fills_scarce_categories_first_within_capacity() -> None:
    # Client 0 can do 3 samples and is the only holder of category 1: it must spend them
    # there, or category 1 stays short; client 1 covers category 0.
    problem = _problem([[3, 3], [3, 0]], [3, 3])
    quotas = greedy_at(problem, np.array([3, 9]), budget=2)
    assert quotas is not None
    np.testing.assert_array_equal(quotas, [[0, 3], [3, 0]])


def test_greedy_gives_up_when_the_budget_runs_out() -> None:
    problem = _problem([[2, 0], [0, 2]], [2, 2])
    assert greedy_at(problem, np.array([9, 9]), budget=1) is None
    assert greedy_at(problem, np.array([9, 1]), budget=2) is None


def test_candidates_keep_seeds_best_deliverers_and_category_holders() -> None:
    problem = _problem([[1, 0], [5, 0], [4, 0], [0, 1], [3, 0]], [5, 1])
    rows = candidates(problem, np.full(5, 9), budget=1, seeds=np.array([0]), factor=1.0)
    # seed 0, best deliverer 1, and the best holder of category 1 (client 3).
    np.testing.assert_array_equal(rows, [0, 1, 3])


def test_cover_finds_a_pair_or_reports_the_smallest_shortfall() -> None:
    problem = _problem([[4, 4, 0], [0, 4, 4], [4, 0, 4]], [4, 4, 4])
    full = problem.useful.sum(axis=1)
    found = solve_cover(problem, full, budget=2, time_limit_s=10.0)
    assert found.decided and len(found.chosen) == 2
    np.testing.assert_array_equal(found.shortfall, [0, 0, 0])
    tight = Problem(problem.useful, problem.speed_s, problem.transfer_s, np.array([5, 5, 5]))
    missed = solve_cover(tight, full, budget=2, time_limit_s=10.0, mip_rel_gap=0.0)
    assert missed.decided
    assert missed.shortfall.sum() == 2


def test_max_flow_quotas_meet_what_capacity_allows() -> None:
    problem = _problem([[3, 3], [0, 2]], [3, 4])
    quotas = max_flow_quotas(problem, np.array([4, 1]))
    assert quotas.sum() == 5  # client 0 does 4, client 1 does 1
    assert np.all(quotas.sum(axis=0) <= problem.requests)
    assert np.all(quotas.sum(axis=1) <= [4, 1])
    assert np.all(quotas <= problem.useful)


def test_refinement_never_returns_a_slower_set() -> None:
    rng = np.random.default_rng(0)
    useful = rng.integers(0, 4, size=(40, 3))
    problem = Problem(
        useful, rng.uniform(0.1, 1.0, 40), rng.uniform(0.1, 2.0, 40), np.array([8, 8, 8])
    )
    lower = min_makespan_flow(problem).lower_bound_s
    quotas = greedy_at(problem, useful.sum(axis=1), budget=6)
    assert quotas is not None
    seeds = np.flatnonzero(quotas.sum(axis=1) > 0)
    upper = min_makespan_flow(problem.subset(seeds)).makespan_s
    refined = refine_by_cover(problem, 6, (lower, upper), seeds, 3.0, 5.0)
    if refined.rows is not None:
        assert len(refined.rows) <= 6
        assert min_makespan_flow(problem.subset(refined.rows)).makespan_s <= upper


def test_lp_bound_certifies_only_makespans_no_selection_reaches() -> None:
    # Two clients holding 4 samples each, 1 s transfer, 1 s per sample; 8 requested, so
    # both must do all 4: the optimum is 5 s. Below 5 s each can do only 3.
    problem = _problem([[4], [4]], [8])
    np.testing.assert_allclose(budget_lower_bound_s(problem, 2, 5.0), 5.0 / 1.002)
    # From 5.5 s, the margins 0.2 %, 1 % and 5 % land above 5 s (feasible); 20 % below.
    np.testing.assert_allclose(budget_lower_bound_s(problem, 2, 5.5), 5.5 / 1.2)
    # Nothing below 5 s is tried from 5.01 s with a 0.1 % margin, so nothing is certified.
    assert budget_lower_bound_s(problem, 2, 5.01, margins=(0.001,)) == 0.0
    # One client can never do it: the smallest margin is certified straight away.
    np.testing.assert_allclose(budget_lower_bound_s(problem, 1, 50.0), 50.0 / 1.002)
