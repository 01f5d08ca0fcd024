"""Solvers behind category-testing selection: max-flow quotas and the makespan MILP.

Max-flow. Once a makespan ``T`` is fixed, the request without a client budget is a flow
problem: client ``i`` can evaluate at most ``u_i(T) = floor((T - transfer_i) / s_i)`` samples
(``s_i`` seconds per sample) and at most ``a_ij = min(count_ij, n_j)`` of category ``j``.
Requests are met within ``T`` exactly when the network

    source --n_j--> category j --a_ij--> client i --u_i(T)--> sink

carries ``sum_j n_j``. All capacities are integers, so the maximum flow is integral and its
edge flows are the quotas. Feasibility only grows with ``T``, so a bisection on ``T`` finds the
smallest makespan (to a relative tolerance) of the unbudgeted problem, and, restricted to a
chosen client set, turns that set into its best integral quotas.

MILP (SciPy's HiGHS)::

    minimise    T
    subject to  sum_i x_ij >= n_j                       every category j
                x_ij <= a_ij z_i                        every client i, category j
                s_i sum_j x_ij + transfer_i z_i <= T    every client i
                sum_i z_i <= budget                     (when a budget is given)
                0 <= x_ij <= a_ij,  z_i in {0, 1},  T >= 0

Quotas ``x`` are continuous here: the solver decides the chosen set ``{i : z_i = 1}`` and the
max-flow gives it exact integral quotas. The continuous ``x`` only relax the problem, so
HiGHS's dual bound on ``T`` is also a lower bound for integral quotas. (Its LP relaxation is
weak, ``z_i`` may be fractional and ``transfer_i z_i`` small, which is why the fast path
avoids solving it over many clients.)

Internal helpers of :mod:`fedsys.selection.testing_category`; not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse.csgraph import maximum_flow

_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Problem:
    """A validated category request restricted to clients that hold requested data.

    Parameters
    ----------
    useful
        ``(P, C)`` int64 matrix ``a_ij = min(count_ij, request_j)``.
    speed_s
        ``(P,)`` seconds per sample.
    transfer_s
        ``(P,)`` model transfer time of each client.
    requests
        ``(C,)`` requested samples per category.
    """

    useful: np.ndarray
    speed_s: np.ndarray
    transfer_s: np.ndarray
    requests: np.ndarray

    def subset(self, rows: np.ndarray) -> Problem:
        """The same request over the clients ``rows`` only."""
        return Problem(self.useful[rows], self.speed_s[rows], self.transfer_s[rows], self.requests)

    def capacity_at(self, makespan_s: float) -> np.ndarray:
        """Samples each client can evaluate and still finish by ``makespan_s`` (int64)."""
        room = np.maximum(makespan_s - self.transfer_s, 0.0) / self.speed_s
        room = np.minimum(room, self.useful.sum(axis=1))
        # A hair above the floor so that T = transfer + k * speed grants k samples despite
        # rounding; the resulting makespan can exceed T by at most 1e-9 samples' time.
        return np.floor(room + 1e-9).astype(np.int64)

    def completion_s(self, quotas: np.ndarray) -> np.ndarray:
        """Completion time of each client under ``quotas`` (0 for clients given nothing)."""
        samples = quotas.sum(axis=1)
        return np.where(samples > 0, self.transfer_s + self.speed_s * samples, 0.0)

    def makespan_s(self, quotas: np.ndarray) -> float:
        """Slowest completion time under ``quotas``."""
        return float(self.completion_s(quotas).max(initial=0.0))


def max_flow_quotas(problem: Problem, capacity: np.ndarray) -> np.ndarray:
    """Integral quotas of a maximum flow: as much of every request as the capacities allow.

    Parameters
    ----------
    problem
        The request and the clients' useful data.
    capacity
        ``(P,)`` most samples each client may evaluate.

    Returns
    -------
    numpy.ndarray
        ``(P, C)`` int64 quotas, each at most the client's useful data, with row sums at most
        ``capacity`` and column sums at most the requests, maximising the total.
    """
    num_clients, num_categories = problem.useful.shape
    quotas = np.zeros((num_clients, num_categories), dtype=np.int64)
    active = np.flatnonzero(capacity > 0)
    rows, cols = np.nonzero(problem.useful[active])
    if problem.requests.sum() == 0 or len(rows) == 0:
        return quotas
    sink = num_categories + len(active) + 1
    tails = np.concatenate(
        [np.zeros(num_categories, np.int64), 1 + cols, num_categories + 1 + np.arange(len(active))]
    )
    heads = np.concatenate(
        [1 + np.arange(num_categories), num_categories + 1 + rows, np.full(len(active), sink)]
    )
    caps = np.concatenate([problem.requests, problem.useful[active][rows, cols], capacity[active]])
    graph = sp.csr_array(
        (np.minimum(caps, _INT32_MAX).astype(np.int32), (tails, heads)), shape=(sink + 1, sink + 1)
    )
    result = maximum_flow(graph, 0, sink)
    edge_flow = np.asarray(result.flow[1 + cols, num_categories + 1 + rows]).ravel()
    quotas[active[rows], cols] = edge_flow
    return quotas


def flow_quotas(problem: Problem, capacity: np.ndarray) -> np.ndarray | None:
    """Integral quotas meeting every request within per-client sample capacities.

    Returns
    -------
    numpy.ndarray or None
        ``(P, C)`` int64 quotas with column sums equal to the requests (see
        :func:`max_flow_quotas`), or ``None`` when the capacities cannot meet them.
    """
    quotas = max_flow_quotas(problem, capacity)
    if np.any(quotas.sum(axis=0) < problem.requests):
        return None
    return quotas


@dataclass(frozen=True)
class FlowSolution:
    """Best quotas found by :func:`min_makespan_flow` and the bracket around the optimum."""

    quotas: np.ndarray
    makespan_s: float
    lower_bound_s: float


def min_makespan_flow(problem: Problem, rel_tol: float = 1e-4) -> FlowSolution:
    """Smallest makespan at which integral quotas meet the requests, by bisection.

    Parameters
    ----------
    problem
        The request and clients; must be feasible with every client's full useful data.
    rel_tol
        Stop when the feasible makespan is within this fraction of the proven lower bound.

    Returns
    -------
    FlowSolution
        Quotas whose makespan is within ``rel_tol`` of the optimum of the unbudgeted problem
        over these clients, and a proven lower bound on that optimum.

    Raises
    ------
    ValueError
        When even the clients' full useful data cannot meet the requests.
    """
    full = problem.useful.sum(axis=1)
    best = flow_quotas(problem, full)
    if best is None:
        raise ValueError("the clients' data cannot meet the requests")
    upper = problem.makespan_s(best)
    lower = float((problem.transfer_s + problem.speed_s)[full > 0].min(initial=upper))
    lower = min(lower, upper)
    while upper > lower * (1.0 + rel_tol):
        middle = float(np.sqrt(lower * upper)) if lower > 0 else upper / 2.0
        quotas = flow_quotas(problem, problem.capacity_at(middle))
        if quotas is None:
            lower = middle
        else:
            best, upper = quotas, problem.makespan_s(quotas)
    return FlowSolution(best, upper, lower)


@dataclass(frozen=True)
class MilpOutcome:
    """What HiGHS returned: the chosen clients (``None`` without a solution) and its status."""

    chosen: np.ndarray | None
    status: str
    objective_s: float
    optimal: bool
    infeasible: bool
    dual_bound_s: float


def build_milp(problem: Problem, budget: int | None) -> dict:
    """Arguments for :func:`scipy.optimize.milp` (variables ``x``, then ``z``, then ``T``).

    Parameters
    ----------
    problem
        Clients and requests.
    budget
        Most clients that may be chosen, or ``None``.

    Returns
    -------
    dict
        Keyword arguments ``c``, ``integrality``, ``bounds`` and ``constraints``.
    """
    num_clients, num_categories = problem.useful.shape
    rows, cols = np.nonzero(problem.useful)
    num_x, num_vars = len(rows), len(rows) + num_clients + 1
    var_x, var_z = np.arange(num_x), num_x + np.arange(num_clients)
    demand = sp.csr_array((np.ones(num_x), (cols, var_x)), shape=(num_categories, num_vars))
    timing = sp.csr_array(
        (
            np.r_[problem.speed_s[rows], problem.transfer_s, -np.ones(num_clients)],
            (
                np.r_[rows, np.arange(num_clients), np.arange(num_clients)],
                np.r_[var_x, var_z, np.full(num_clients, num_vars - 1)],
            ),
        ),
        shape=(num_clients, num_vars),
    )
    a_vals = problem.useful[rows, cols].astype(float)
    link = sp.csr_array(
        (np.r_[np.ones(num_x), -a_vals], (np.r_[var_x, var_x], np.r_[var_x, var_z[rows]])),
        shape=(num_x, num_vars),
    )
    constraints = [
        LinearConstraint(demand, problem.requests.astype(float), np.inf),
        LinearConstraint(timing, -np.inf, 0.0),
        LinearConstraint(link, -np.inf, 0.0),
    ]
    if budget is not None:
        row = sp.csr_array(
            (np.ones(num_clients), (np.zeros(num_clients, int), var_z)), shape=(1, num_vars)
        )
        constraints.append(LinearConstraint(row, 0.0, float(budget)))
    upper = np.r_[a_vals, np.ones(num_clients), np.inf]
    lower = np.zeros(num_vars)
    integrality = np.r_[np.zeros(num_x), np.ones(num_clients), 0.0]
    objective = np.zeros(num_vars)
    objective[-1] = 1.0
    return {
        "c": objective,
        "integrality": integrality,
        "bounds": Bounds(lower, upper),
        "constraints": constraints,
    }


def solve_milp(
    problem: Problem,
    budget: int | None,
    time_limit_s: float,
    mip_rel_gap: float,
) -> MilpOutcome:
    """Solve the MILP with HiGHS under a time limit and a relative MIP gap.

    Returns
    -------
    MilpOutcome
        ``chosen`` indexes the clients with ``z_i = 1`` that received samples, or is
        ``None`` when HiGHS found no feasible point within the limit (``infeasible`` tells
        whether it proved there is none); ``dual_bound_s`` is HiGHS's proven lower bound on
        ``T`` (0 when it has none), valid for integral quotas too.
    """
    arguments = build_milp(problem, budget)
    result = milp(**arguments, options={"time_limit": time_limit_s, "mip_rel_gap": mip_rel_gap})
    dual = getattr(result, "mip_dual_bound", None)
    dual_bound_s = float(dual) if dual is not None and np.isfinite(dual) else 0.0
    if result.x is None:
        return MilpOutcome(None, result.message, np.inf, False, result.status == 2, dual_bound_s)
    num_x = len(arguments["c"]) - problem.useful.shape[0] - 1
    rows, _ = np.nonzero(problem.useful)
    given = np.bincount(rows, weights=result.x[:num_x], minlength=problem.useful.shape[0])
    chosen = np.flatnonzero((result.x[num_x:-1] > 0.5) & (given > 1e-9))
    return MilpOutcome(
        chosen, result.message, float(result.fun), result.status == 0, False, dual_bound_s
    )
