r"""Oort's federated testing: choose the participants that evaluate a model.

Two questions, after Lai et al., "Oort: Efficient Federated Learning via Guided Participant
Selection", OSDI 2021, §5 (https://www.usenix.org/conference/osdi21/presentation/lai):

1. *How many random participants keep their data within epsilon of the population's?*
   :func:`participants_for_deviation`, used by :class:`DeviationTestingSelector`.
2. *Which participants give at least ``n_j`` samples of each category ``j``, finishing
   soonest?* :func:`select_by_category`, used by :class:`CategoryTestingSelector`.

Deviation bound
---------------
Let each of the ``N`` clients hold a value ``v_i`` in an interval of width ``R`` (a category's
share of its data, its sample count, ...) and let ``n`` of them be drawn uniformly *without
replacement*. Serfling's inequality (Hoeffding's, with the finite-population factor
``1 - (n - 1)/N``) bounds the deviation of the sample mean from the population mean ``mu``:

.. math::
    P(|\bar v_n - \mu| \ge \epsilon) \le 2 \exp\Big(-\frac{2 n \epsilon^2}
    {(1 - (n-1)/N) R^2}\Big).

Asking this to be at most ``delta = 1 - confidence`` and writing
``L = R^2 ln(2/delta) / (2 epsilon^2)`` (the infinite-population Hoeffding count) gives
``n >= L (1 - (n-1)/N)``, that is

.. math::
    n \ge \frac{L (N + 1)}{N + L}.

For ``N -> infinity`` this is Hoeffding's ``L``; for ``L >> N`` it tends to ``N``. Oort's code
has the same form with the one-sided ``ln(1/delta)``; we keep the two-sided ``ln(2/delta)``.
With ``num_categories = C`` values per client that must *all* stay within ``epsilon``, a union
bound replaces ``delta`` by ``delta / C``.

Category requests
-----------------
See :func:`select_by_category`; the exact MILP and the fast path live in
:mod:`fedsys.selection.testing_category`, :mod:`fedsys.selection.testing_solvers` (max-flow,
makespan MILP) and :mod:`fedsys.selection.testing_budget` (greedy, cover MILP).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from fedsys.core.update import ClientId
from fedsys.selection.base import Selector
from fedsys.selection.testing_category import CategorySelection, Method, select_by_category
from fedsys.selection.testing_checks import InfeasibleRequestError, SolverLimitError

__all__ = [
    "CategorySelection",
    "CategoryTestingSelector",
    "DeviationTestingSelector",
    "InfeasibleRequestError",
    "SolverLimitError",
    "participants_for_deviation",
    "select_by_category",
]


def participants_for_deviation(
    epsilon: float,
    confidence: float,
    value_range: float,
    population: int,
    *,
    num_categories: int = 1,
) -> int:
    """Participants to sample so their mean stays within ``epsilon`` of the population's.

    Parameters
    ----------
    epsilon
        Tolerated absolute deviation of the participants' mean from the population mean,
        in the units of ``value_range``.
    confidence
        Probability, in (0, 1), with which the deviation must stay below ``epsilon``.
    value_range
        Width ``max - min`` of the per-client value (1 for a category share).
    population
        Number ``N`` of clients sampled from (without replacement).
    num_categories
        Values per client that must all stay within ``epsilon`` (union bound).

    Returns
    -------
    int
        ``ceil(L (N + 1) / (N + L))`` with ``L = R^2 ln(2 C / (1 - confidence)) / (2 eps^2)``,
        between 1 and ``population`` (see the module docstring for the derivation).

    Raises
    ------
    ValueError
        On a non-positive ``epsilon``, a ``confidence`` outside (0, 1), a negative
        ``value_range`` or a ``population``/``num_categories`` below 1.
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if not value_range >= 0:
        raise ValueError(f"value_range must be non-negative, got {value_range}")
    if population < 1 or num_categories < 1:
        raise ValueError(f"population ({population}) and num_categories must be >= 1")
    if value_range == 0:
        return 1
    delta = (1.0 - confidence) / num_categories
    hoeffding = value_range**2 * math.log(2.0 / delta) / (2.0 * epsilon**2)
    needed = hoeffding * (population + 1) / (population + hoeffding)
    return int(min(population, max(1, math.ceil(needed - 1e-9))))


class DeviationTestingSelector(Selector[None]):
    """Sample as many available clients as the deviation bound asks for.

    The number drawn is :func:`participants_for_deviation` with the available clients as the
    population; ``k`` is ignored, since the bound, not the caller, decides how many are
    needed. The draw depends only on ``(seed, round_idx)`` and the available set.

    Parameters
    ----------
    epsilon, confidence, value_range, num_categories
        As in :func:`participants_for_deviation`.
    seed
        Base seed of the sampling stream.
    """

    def __init__(
        self,
        epsilon: float = 0.05,
        confidence: float = 0.95,
        value_range: float = 1.0,
        seed: int = 0,
        num_categories: int = 1,
    ) -> None:
        self.epsilon = epsilon
        self.confidence = confidence
        self.value_range = value_range
        self.seed = seed
        self.num_categories = num_categories

    def select(
        self, state: None, round_idx: int, available: np.ndarray, k: int, now_s: float
    ) -> tuple[list[ClientId], None]:
        """Draw the bound's number of distinct clients uniformly among ``available``."""
        pool = np.asarray(available)
        if len(pool) == 0:
            return [], None
        take = participants_for_deviation(
            self.epsilon,
            self.confidence,
            self.value_range,
            len(pool),
            num_categories=self.num_categories,
        )
        rng = np.random.default_rng([self.seed, round_idx])
        return [int(c) for c in rng.choice(pool, size=take, replace=False)], None


class CategoryTestingSelector(Selector[None]):
    """Choose, among available clients, those meeting per-category requests soonest.

    Deterministic and stateless. :meth:`plan` returns the full :class:`CategorySelection`
    (quotas included) that a simulator needs to tell each client how many samples of each
    category to evaluate; :meth:`select` returns just the ids. ``k`` is ignored.

    Parameters
    ----------
    requests, client_counts, client_speed, client_bandwidth, model_bytes, budget
        As in :func:`select_by_category`; rows of the arrays are client ids.
    method, time_limit_s, mip_rel_gap
        Solver settings, as in :func:`select_by_category`.
    """

    def __init__(
        self,
        requests: Mapping[int, int] | Sequence[int] | np.ndarray,
        client_counts: np.ndarray,
        client_speed: np.ndarray,
        client_bandwidth: np.ndarray,
        model_bytes: float,
        budget: int | None = None,
        method: Method = "fast",
        time_limit_s: float = 60.0,
        mip_rel_gap: float = 1e-2,
    ) -> None:
        self.requests = requests
        self.client_counts = client_counts
        self.client_speed = client_speed
        self.client_bandwidth = client_bandwidth
        self.model_bytes = model_bytes
        self.budget = budget
        self.method = method
        self.time_limit_s = time_limit_s
        self.mip_rel_gap = mip_rel_gap

    def plan(self, available: np.ndarray) -> CategorySelection:
        """Solve the request over the ``available`` clients; ids in the result are global.

        Raises
        ------
        InfeasibleRequestError
            When the available clients cannot meet the request.
        """
        ids = np.unique(np.asarray(available, dtype=np.int64))
        chosen = select_by_category(
            self.requests,
            np.asarray(self.client_counts)[ids],
            np.asarray(self.client_speed)[ids],
            np.asarray(self.client_bandwidth)[ids],
            self.model_bytes,
            self.budget,
            method=self.method,
            time_limit_s=self.time_limit_s,
            mip_rel_gap=self.mip_rel_gap,
        )
        return replace(chosen, clients=ids[chosen.clients])

    def select(
        self, state: None, round_idx: int, available: np.ndarray, k: int, now_s: float
    ) -> tuple[list[ClientId], None]:
        """Ids of the clients :meth:`plan` chooses."""
        return [int(c) for c in self.plan(available).clients], None

    def describe(self) -> dict[str, object]:
        """Settings for logs, without the per-client arrays."""
        return {
            "name": type(self).__name__,
            "requests": self.requests,
            "budget": self.budget,
            "method": self.method,
            "model_bytes": self.model_bytes,
        }
