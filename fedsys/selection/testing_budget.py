"""Budgeted category testing: a lazy greedy, then a cover MILP bisected on the makespan.

With at most ``B`` clients the problem is NP-hard (it contains set cover), so the fast path of
:func:`fedsys.selection.testing_category.select_by_category` proceeds in two steps.

1. *Greedy* (Oort's testing selection, Lai et al., OSDI 2021, §5). At a target makespan
   ``T`` client ``i`` can evaluate ``u_i(T) = floor((T - transfer_i) / s_i)`` samples. Take,
   ``B`` times, the client covering most of what is still unmet (scarcest categories first).
   Gains only shrink as requests get met, so a lazy priority queue finds the best client
   without rescanning everyone. Bisecting ``T`` gives a feasible makespan ``T_ub``.
2. *Cover MILP.* At a fixed ``T`` the budgeted question is a small MILP with no makespan
   variable::

       minimise    sum_j m_j                          (samples still missing)
       subject to  sum_i x_ij + m_j >= n_j            every category j
                   sum_j x_ij <= u_i(T) z_i           every client i
                   x_ij <= min(a_ij, u_i(T)) z_i      every client i, category j
                   sum_i z_i <= B,   z_i in {0, 1},   0 <= m_j <= n_j

   ``T`` is feasible exactly when the optimum is 0, and HiGHS stops at the first such point.
   It runs on a candidate set (the ``factor × B`` clients able to deliver most by ``T``, the
   best holders of each category, the incumbent) for ``T`` bisected between the unbudgeted
   optimum (a proven lower bound) and ``T_ub``.

Before step 2, the LP relaxation of the cover problem over *every* client able to evaluate a
sample by ``T = T_ub / (1 + tol)`` is tried: if even it misses samples, no ``B`` clients finish
by ``T``, the greedy is within ``tol`` of the optimum and step 2 is skipped. The relaxation is
tight in practice (its bound usually equals the integer optimum's), which is what makes
:func:`budget_lower_bound_s` a useful certificate.

Internal helpers of :mod:`fedsys.selection.testing_category`; not part of the public API.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from fedsys.selection.testing_solvers import Problem, max_flow_quotas, min_makespan_flow


def _fill_by_scarcity(available: np.ndarray, capacity: int, scarcity: np.ndarray) -> np.ndarray:
    """Take up to ``capacity`` samples from ``available``, scarcest categories first."""
    if available.sum() <= capacity:
        return available.copy()
    order = np.argsort(-scarcity, kind="stable")
    taken_before = np.cumsum(available[order]) - available[order]
    share = np.clip(capacity - taken_before, 0, available[order])
    quota = np.zeros_like(available)
    quota[order] = share
    return quota


def greedy_at(problem: Problem, capacity: np.ndarray, budget: int) -> np.ndarray | None:
    """Oort-style greedy: repeatedly take the client that covers most of what is still unmet.

    Parameters
    ----------
    problem
        Clients and requests.
    capacity
        ``(P,)`` samples each client can evaluate within the target makespan.
    budget
        Most clients to take.

    Returns
    -------
    numpy.ndarray or None
        ``(P, C)`` quotas meeting every request with at most ``budget`` clients, or ``None``.
    """
    active = np.flatnonzero(capacity > 0)
    cap = capacity[active]
    reach = np.minimum(problem.useful[active], cap[:, None])
    remaining = problem.requests.copy()
    supply = reach.sum(axis=0)
    gains = np.minimum(np.minimum(reach, remaining).sum(axis=1), cap)
    queue = list(zip((-gains).tolist(), range(len(active)), strict=True))
    heapq.heapify(queue)
    quotas = np.zeros_like(problem.useful)
    taken = 0
    while queue and taken < budget and remaining.any():
        stale, row = heapq.heappop(queue)
        if stale == 0:
            break  # gains never grow, so nobody left can help
        offer = np.minimum(reach[row], remaining)
        gain = min(int(offer.sum()), int(cap[row]))
        if gain == 0:
            continue
        if queue and gain < -queue[0][0]:
            heapq.heappush(queue, (-gain, row))  # stale: someone else may now be better
            continue
        scarcity = remaining / np.maximum(supply, 1)
        quota = _fill_by_scarcity(offer, int(cap[row]), scarcity)
        quotas[active[row]] = quota
        remaining -= quota
        supply -= reach[row]
        taken += 1
    return None if remaining.any() else quotas


def greedy_min_makespan(
    problem: Problem, budget: int, lower_s: float, rel_tol: float = 2e-3
) -> np.ndarray | None:
    """Bisect the target makespan of :func:`greedy_at`; the best quotas found, or ``None``."""
    best = greedy_at(problem, problem.useful.sum(axis=1), budget)
    if best is None:
        return None
    upper = problem.makespan_s(best)
    lower = max(lower_s, 1e-12)
    while upper > lower * (1.0 + rel_tol):
        middle = float(np.sqrt(lower * upper))
        quotas = greedy_at(problem, problem.capacity_at(middle), budget)
        if quotas is None:
            lower = middle
        else:
            best, upper = quotas, problem.makespan_s(quotas)
    return best


def candidates(
    problem: Problem, capacity: np.ndarray, budget: int, seeds: np.ndarray, factor: float
) -> np.ndarray:
    """Clients worth handing to the cover MILP at per-client ``capacity``.

    Keeps ``seeds`` (the incumbent), the ``factor × budget`` clients that can deliver the
    most requested samples within their capacity and, per category, the ``ceil(factor)``
    largest holders; only clients with positive capacity. Sorted row indices.
    """
    reach = np.minimum(problem.useful, capacity[:, None])
    deliver = np.minimum(reach.sum(axis=1), capacity)
    eligible = np.flatnonzero(deliver > 0)
    keep = [seeds[capacity[seeds] > 0]]
    size = math.ceil(factor * budget)
    if len(eligible) <= size:
        return np.union1d(keep[0], eligible)
    keep.append(eligible[np.argpartition(-deliver[eligible], size - 1)[:size]])
    per_category = min(len(eligible), math.ceil(factor))
    best = np.argpartition(-reach[eligible], per_category - 1, axis=0)[:per_category]
    keep.append(eligible[best.ravel()])
    return np.unique(np.concatenate(keep))


@dataclass(frozen=True)
class CoverOutcome:
    """Result of :func:`solve_cover`.

    Attributes
    ----------
    chosen
        Rows the solver picked (``z_i = 1`` and given samples); empty without a solution.
    shortfall
        ``(C,)`` samples a maximum flow over ``chosen`` still misses per category.
    decided
        Whether the question is settled: ``shortfall`` is zero, or HiGHS proved that every
        selection of at most ``budget`` clients misses some samples.
    status
        HiGHS's message.
    """

    chosen: np.ndarray
    shortfall: np.ndarray
    decided: bool
    status: str


def _cover_model(problem: Problem, capacity: np.ndarray, budget: int) -> tuple[dict, np.ndarray]:
    """Arguments for :func:`scipy.optimize.milp` of the cover MILP (``x``, ``z``, then ``m``).

    Returns
    -------
    tuple of dict and numpy.ndarray
        The keyword arguments and the client row of each ``x`` variable.
    """
    num_clients, num_categories = problem.useful.shape
    reach = np.minimum(problem.useful, capacity[:, None])
    rows, cols = np.nonzero(reach)
    num_x = len(rows)
    var_x, var_z = np.arange(num_x), num_x + np.arange(num_clients)
    var_m = num_x + num_clients + np.arange(num_categories)
    num_vars = num_x + num_clients + num_categories
    reach_x = reach[rows, cols].astype(float)
    demand = sp.csr_array(
        (
            np.ones(num_x + num_categories),
            (np.r_[cols, np.arange(num_categories)], np.r_[var_x, var_m]),
        ),
        shape=(num_categories, num_vars),
    )
    load = sp.csr_array(
        (
            np.r_[np.ones(num_x), -capacity.astype(float)],
            (np.r_[rows, np.arange(num_clients)], np.r_[var_x, var_z]),
        ),
        shape=(num_clients, num_vars),
    )
    link = sp.csr_array(
        (np.r_[np.ones(num_x), -reach_x], (np.r_[var_x, var_x], np.r_[var_x, var_z[rows]])),
        shape=(num_x, num_vars),
    )
    count = sp.csr_array(
        (np.ones(num_clients), (np.zeros(num_clients, int), var_z)), shape=(1, num_vars)
    )
    objective = np.zeros(num_vars)
    objective[var_m] = 1.0
    arguments = {
        "c": objective,
        "integrality": np.r_[np.zeros(num_x), np.ones(num_clients), np.zeros(num_categories)],
        "bounds": Bounds(
            np.zeros(num_vars),
            np.r_[reach_x, (capacity > 0).astype(float), problem.requests.astype(float)],
        ),
        "constraints": [
            LinearConstraint(demand, problem.requests.astype(float), np.inf),
            LinearConstraint(load, -np.inf, 0.0),
            LinearConstraint(link, -np.inf, 0.0),
            LinearConstraint(count, 0.0, float(budget)),
        ],
    }
    return arguments, rows


def solve_cover(
    problem: Problem,
    capacity: np.ndarray,
    budget: int,
    time_limit_s: float,
    mip_rel_gap: float = 0.999,
) -> CoverOutcome:
    """Choose at most ``budget`` clients missing the fewest requested samples (module MILP).

    Parameters
    ----------
    problem
        Clients and requests.
    capacity
        ``(P,)`` most samples each client may evaluate (``u_i(T)``).
    budget
        Most clients to choose.
    time_limit_s
        HiGHS time limit.
    mip_rel_gap
        HiGHS relative gap. The default stops as soon as a selection missing nothing is found
        or a positive lower bound on the missing total proves there is none, which is all a
        yes/no question needs; lower it to get a near-minimal shortfall to report.

    Returns
    -------
    CoverOutcome
        The chosen rows and their exact per-category shortfall.
    """
    arguments, rows = _cover_model(problem, capacity, budget)
    options = {"time_limit": time_limit_s, "mip_rel_gap": mip_rel_gap}
    result = milp(**arguments, options=options)
    if result.x is None:
        return CoverOutcome(np.zeros(0, np.int64), problem.requests.copy(), False, result.message)
    num_clients, num_x = problem.useful.shape[0], len(rows)
    given = np.bincount(rows, weights=result.x[:num_x], minlength=num_clients)
    chosen = np.flatnonzero((result.x[num_x : num_x + num_clients] > 0.5) & (given > 1e-9))
    shortfall = problem.requests - max_flow_quotas(problem.subset(chosen), capacity[chosen]).sum(0)
    # Missing samples are whole, so a bound well above rounding noise proves some are missing.
    bound = result.get("mip_dual_bound")
    proven_short = bound is not None and np.isfinite(bound) and bound > 1e-3
    decided = not shortfall.any() or proven_short
    return CoverOutcome(chosen, shortfall, decided, result.message)


def budget_lower_bound_s(
    problem: Problem,
    budget: int,
    makespan_s: float,
    margins: tuple[float, ...] = (0.002, 0.01, 0.05, 0.2),
    time_limit_s: float = 60.0,
    max_nonzeros: int | None = None,
) -> float:
    """A proven lower bound on the budgeted optimum, close below ``makespan_s`` if possible.

    For each margin, smallest first, take ``T = makespan_s / (1 + margin)``. Every client of
    a selection finishing by ``T`` can evaluate one sample by ``T``; if the LP relaxation of
    the cover MILP over all such clients still misses samples, no ``budget`` clients meet the
    requests by ``T``, and ``T`` is returned. This certifies a solution's quality.

    Parameters
    ----------
    problem
        Clients and requests.
    budget
        Most clients to choose.
    makespan_s
        A known makespan (the solution to certify).
    margins
        Relative distances below ``makespan_s`` to try.
    time_limit_s
        HiGHS time limit of each LP.
    max_nonzeros
        Skip (and return 0 for) an LP with more quota variables than this.

    Returns
    -------
    float
        The largest ``T`` tried that the LP proves infeasible, or 0 when none is.
    """
    for margin in sorted(margins):
        target_s = makespan_s / (1.0 + margin)
        capacity = problem.capacity_at(target_s)
        active = np.flatnonzero(capacity > 0)
        arguments, rows = _cover_model(problem.subset(active), capacity[active], budget)
        if max_nonzeros is not None and len(rows) > max_nonzeros:
            return 0.0
        if _relaxed_missing(arguments, time_limit_s) > 1e-3:
            return target_s
    return 0.0


def _relaxed_missing(arguments: dict, time_limit_s: float) -> float:
    """Optimum of the cover model's LP relaxation (0 when unsolved), by HiGHS's interior point.

    On a hundred thousand clients the interior point method is several times faster than the
    dual simplex that :func:`scipy.optimize.milp` would use.
    """
    blocks, limits = [], []
    for constraint in arguments["constraints"]:
        matrix = sp.csr_array(constraint.A)
        if np.all(np.isfinite(constraint.ub)):
            blocks.append(matrix)
            limits.append(constraint.ub)
        if np.all(np.isfinite(constraint.lb)):
            blocks.append(-matrix)
            limits.append(-constraint.lb)
    bounds = arguments["bounds"]
    result = linprog(
        arguments["c"],
        A_ub=sp.vstack(blocks).tocsr(),
        b_ub=np.concatenate(limits),
        bounds=np.c_[bounds.lb, bounds.ub],
        method="highs-ipm",
        options={"time_limit": time_limit_s},
    )
    return float(result.fun) if result.status == 0 else 0.0


@dataclass(frozen=True)
class Refinement:
    """Best rows the cover bisection found (``None`` if none beat the incumbent)."""

    rows: np.ndarray | None
    steps: int
    stopped: str


def refine_by_cover(
    problem: Problem,
    budget: int,
    bracket_s: tuple[float, float],
    seeds: np.ndarray,
    factor: float,
    step_limit_s: float,
    rel_tol: float = 5e-3,
    max_steps: int = 30,
    max_nonzeros: int = 30_000,
) -> Refinement:
    """Search ``T`` in ``bracket_s = (T_lb, T_ub)`` with the cover MILP on candidate sets.

    The greedy's ``T_ub`` is usually close to the optimum and ``T_lb`` (unbudgeted) far below
    it, so the search first steps down from ``T_ub`` by ``2 rel_tol``, doubling the step
    while the answer is yes, then bisects. A yes lowers ``T_ub`` to the exact makespan of the
    chosen set, a no (proven on the candidates) raises ``T_lb``, and a step that hits
    ``step_limit_s`` undecided ends the search. So does a candidate set with more than
    ``max_nonzeros`` quota variables: HiGHS rarely settles those within seconds (and may
    overrun its time limit), so the greedy's answer stands.
    """
    lower, upper = bracket_s
    best: np.ndarray | None = None
    steps, stride = 0, 2.0 * rel_tol
    while upper > lower * (1.0 + rel_tol) and steps < max_steps:
        middle = float(np.sqrt(lower * upper))
        if stride > 0:
            middle = max(middle, upper / (1.0 + stride))
        capacity = problem.capacity_at(middle)
        rows = candidates(problem, capacity, budget, seeds, factor)
        size = int(np.count_nonzero(np.minimum(problem.useful[rows], capacity[rows, None])))
        if size > max_nonzeros:
            return Refinement(best, steps, f"candidate MILP too large ({size} quota variables)")
        outcome = solve_cover(problem.subset(rows), capacity[rows], budget, step_limit_s)
        steps += 1
        if not outcome.decided:
            return Refinement(best, steps, f"step at T={middle:.4g} s undecided")
        if outcome.shortfall.any():
            lower, stride = middle, 0.0
        else:
            best = seeds = rows[outcome.chosen]
            upper = min(upper, min_makespan_flow(problem.subset(best)).makespan_s)
            stride *= 2.0
    return Refinement(best, steps, "converged" if steps < max_steps else "step cap")
