"""Category-testing selection: meet per-category sample requests with the smallest makespan.

The public entry point is :func:`select_by_category` (re-exported by
:mod:`fedsys.selection.testing`), after Oort's federated testing (Lai et al., OSDI 2021, §5,
https://www.usenix.org/conference/osdi21/presentation/lai). The exact path is the MILP of
:mod:`fedsys.selection.testing_solvers` solved by SciPy's HiGHS over every client. The fast
path replaces it by an exact max-flow bisection when no budget binds, and otherwise runs the
greedy and the small cover MILPs of :mod:`fedsys.selection.testing_budget`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from fedsys.selection.testing_budget import (
    budget_lower_bound_s,
    greedy_min_makespan,
    refine_by_cover,
    solve_cover,
)
from fedsys.selection.testing_checks import (
    SolverLimitError,
    check_budget,
    check_totals,
    prepare,
    shortfall_error,
)
from fedsys.selection.testing_solvers import Problem, min_makespan_flow, solve_milp

__all__ = ["CategorySelection", "Method", "select_by_category"]

Method = Literal["fast", "milp"]

# Budgeted fast path: stop within this relative distance of a proven bound, and skip
# LPs/MILPs with more quota variables than HiGHS settles within seconds.
_REL_TOL = 5e-3
_MAX_NONZEROS = 30_000


@dataclass(frozen=True)
class CategorySelection:
    """Participants chosen for a category request and what each evaluates.

    Attributes
    ----------
    clients
        ``(K,)`` ids (row indices of ``client_counts``) of the chosen clients, ascending.
    quotas
        ``(K, C)`` samples of each category each chosen client evaluates; column sums equal
        the requests and no entry exceeds the client's data.
    completion_s
        ``(K,)`` model transfer + quota × seconds per sample of each chosen client.
    makespan_s
        Slowest completion time, the objective.
    lower_bound_s
        A proven lower bound on the optimal makespan (0 when none is known).
    method
        ``"fast"`` or ``"milp"``.
    status
        How the solution was reached (solver message, fallbacks taken).
    """

    clients: np.ndarray
    quotas: np.ndarray
    completion_s: np.ndarray
    makespan_s: float
    lower_bound_s: float
    method: str
    status: str

    @property
    def gap(self) -> float:
        """Relative distance of ``makespan_s`` above ``lower_bound_s`` (inf without a bound)."""
        if self.lower_bound_s <= 0:
            return math.inf if self.makespan_s > 0 else 0.0
        return self.makespan_s / self.lower_bound_s - 1.0


def _finish(
    problem: Problem, pool: np.ndarray, rows: np.ndarray, method: str, status: str, lower: float
) -> CategorySelection:
    """Exact integral quotas on the clients ``rows`` of ``problem``, packaged."""
    solution = min_makespan_flow(problem.subset(rows))
    given = solution.quotas.sum(axis=1) > 0
    quotas = solution.quotas[given]
    sub = problem.subset(rows[given])
    order = np.argsort(pool[rows[given]])
    return CategorySelection(
        clients=pool[rows[given]][order],
        quotas=quotas[order],
        completion_s=sub.completion_s(quotas)[order],
        makespan_s=solution.makespan_s,
        lower_bound_s=lower,
        method=method,
        status=status,
    )


@dataclass(frozen=True)
class _Settings:
    """Solver settings of :func:`select_by_category`."""

    time_limit_s: float
    mip_rel_gap: float
    candidate_factor: float
    step_time_limit_s: float


def _fast_budgeted(
    problem: Problem, pool: np.ndarray, budget: int, lower: float, settings: _Settings
) -> CategorySelection:
    """Greedy under the budget; if an LP cannot prove it near-optimal, cover-MILP bisection.

    When the greedy finds no selection at all, the cover MILP over every client looks for one
    (or proves there is none).
    """
    greedy = greedy_min_makespan(problem, budget, lower)
    if greedy is None:
        seeds = _budget_feasible_set(problem, budget, settings.time_limit_s, settings.mip_rel_gap)
        status = "cover MILP"
    else:
        seeds = np.flatnonzero(greedy.sum(axis=1) > 0)
        status = "greedy"
    best = _finish(problem, pool, seeds, "fast", status, lower)
    certified = budget_lower_bound_s(
        problem, budget, best.makespan_s, (_REL_TOL,), settings.step_time_limit_s, _MAX_NONZEROS
    )
    if certified > 0:
        return replace(best, lower_bound_s=max(lower, certified), status=f"{status}, LP-certified")
    refined = refine_by_cover(
        problem,
        budget,
        (lower, best.makespan_s),
        seeds,
        settings.candidate_factor,
        settings.step_time_limit_s,
        _REL_TOL,
        max_nonzeros=_MAX_NONZEROS,
    )
    if refined.rows is not None:
        tuned = _finish(problem, pool, refined.rows, "fast", f"{status} + cover MILP", lower)
        if tuned.makespan_s < best.makespan_s:
            best = tuned
    if refined.steps:  # the LP was small enough: try to certify the result at looser margins
        certified = budget_lower_bound_s(
            problem, budget, best.makespan_s, (0.02, 0.1), settings.step_time_limit_s, _MAX_NONZEROS
        )
        best = replace(best, lower_bound_s=max(lower, certified))
    return replace(best, status=f"{best.status} ({refined.steps} MILP steps, {refined.stopped})")


def _budget_feasible_set(
    problem: Problem, budget: int, time_limit_s: float, gap: float
) -> np.ndarray:
    """Rows of some ``budget`` clients meeting the requests, from the cover MILP on everyone.

    HiGHS stops at the first such selection; when there is none, ``gap`` bounds how far the
    shortfall reported is above the smallest possible.

    Raises
    ------
    InfeasibleRequestError
        When HiGHS proves that no ``budget`` clients can, naming the categories missed.
    SolverLimitError
        When HiGHS can neither find such clients nor prove there are none in time.
    """
    outcome = solve_cover(problem, problem.useful.sum(axis=1), budget, time_limit_s, gap)
    if len(outcome.chosen) and not outcome.shortfall.any():
        return outcome.chosen
    if outcome.decided:
        raise shortfall_error(problem.requests, outcome.shortfall, budget)
    raise SolverLimitError(
        f"HiGHS could not decide within {time_limit_s} s whether {budget} clients can meet "
        f"the requests ({outcome.status})"
    )


def select_by_category(
    requests: Mapping[int, int] | Sequence[int] | np.ndarray,
    client_counts: np.ndarray,
    client_speed: np.ndarray,
    client_bandwidth: np.ndarray,
    model_bytes: float,
    budget: int | None = None,
    *,
    method: Method = "fast",
    time_limit_s: float = 60.0,
    mip_rel_gap: float = 1e-2,
    candidate_factor: float = 3.0,
    step_time_limit_s: float = 5.0,
) -> CategorySelection:
    """Clients and per-category quotas meeting every request with the smallest makespan.

    A client's completion time is ``model_bytes / bandwidth + samples × seconds per sample``;
    the objective is the slowest chosen client's.

    ``method="milp"`` solves the MILP of :mod:`fedsys.selection.testing_solvers` over every
    client holding requested data with HiGHS (``time_limit_s``, ``mip_rel_gap``); on a
    timeout the best incumbent is returned, flagged in ``status``.

    ``method="fast"`` pre-selects: a client can only take part in a solution of makespan
    ``T`` if it can finish one sample by ``T``, and then contributes at most
    ``u_i(T) = floor((T - transfer_i) / s_i)`` samples. Without a binding budget the problem
    at fixed ``T`` is an integral max-flow over those clients, so a bisection on ``T``
    replaces the MILP and is optimal to a relative 1e-4. When that solution uses more than
    ``budget`` clients, an Oort-style greedy gives a feasible makespan and the cover MILP of
    :mod:`fedsys.selection.testing_budget` bisects ``T`` below it on candidate sets of about
    ``candidate_factor × budget`` clients. Either way the chosen set gets exact integral
    quotas from a max-flow.

    Parameters
    ----------
    requests
        Samples wanted per category: ``{category_index: n}`` or a length-``C`` sequence.
    client_counts
        ``(N, C)`` non-negative integer samples of each category on each client.
    client_speed
        ``(N,)`` seconds per evaluated sample, positive.
    client_bandwidth
        ``(N,)`` bytes per second for the model transfer, positive.
    model_bytes
        Size of the model each chosen client downloads.
    budget
        Most clients to choose; ``None`` for no limit.
    method
        ``"fast"`` (pre-selection + max-flow, or greedy + small MILPs) or ``"milp"``.
    time_limit_s, mip_rel_gap
        HiGHS limits of the MILP alone, and of the fast path's search for any ``budget``
        clients meeting the requests when its greedy finds none.
    candidate_factor
        Candidate-set size of the fast path's cover MILP, in multiples of ``budget``.
    step_time_limit_s
        HiGHS time limit of each cover MILP in the fast path's bisection.

    Returns
    -------
    CategorySelection
        Chosen clients, their integral quotas and completion times, and the makespan.

    Raises
    ------
    InfeasibleRequestError
        When the requests cannot be met (by all clients, or by any ``budget`` of them),
        naming each category missed and by how many samples.
    SolverLimitError
        When HiGHS finds no selection within its time limit and cannot prove there is none.
    ValueError
        On mismatched shapes, negative or non-integral counts, non-positive speed or
        bandwidth, an unknown category index, a negative budget or an unknown method.
    """
    if method not in ("fast", "milp"):
        raise ValueError(f"method must be 'fast' or 'milp', got {method!r}")
    if budget is not None and budget < 0:
        raise ValueError(f"budget must be non-negative, got {budget}")
    problem, pool = prepare(requests, client_counts, client_speed, client_bandwidth, model_bytes)
    check_totals(problem)
    if budget is not None:
        check_budget(problem, budget)
    if not problem.requests.any():
        empty = np.zeros(0, dtype=np.int64)
        shape = (0, len(problem.requests))
        return CategorySelection(
            empty, np.zeros(shape, np.int64), np.zeros(0), 0.0, 0.0, method, "nothing requested"
        )
    settings = _Settings(time_limit_s, mip_rel_gap, candidate_factor, step_time_limit_s)
    if method == "milp":
        return _milp_alone(problem, pool, budget, settings)
    flow = min_makespan_flow(problem)
    used = np.flatnonzero(flow.quotas.sum(axis=1) > 0)
    if budget is None or len(used) <= budget:
        return _finish(problem, pool, used, "fast", "max-flow bisection", flow.lower_bound_s)
    return _fast_budgeted(problem, pool, budget, flow.lower_bound_s, settings)


def _milp_alone(
    problem: Problem, pool: np.ndarray, budget: int | None, settings: _Settings
) -> CategorySelection:
    """The exact path: the MILP over every client that holds requested data."""
    outcome = solve_milp(problem, budget, settings.time_limit_s, settings.mip_rel_gap)
    if outcome.chosen is None:
        if outcome.infeasible and budget is not None:
            # Raises naming the categories missed, unless the cover MILP disagrees.
            rows = _budget_feasible_set(
                problem, budget, settings.time_limit_s, settings.mip_rel_gap
            )
            return _finish(problem, pool, rows, "milp", "cover MILP", outcome.dual_bound_s)
        raise SolverLimitError(
            f"HiGHS found no feasible selection within {settings.time_limit_s} s ({outcome.status})"
        )
    status = outcome.status if outcome.optimal else f"incumbent only: {outcome.status}"
    return _finish(problem, pool, outcome.chosen, "milp", status, outcome.dual_bound_s)
