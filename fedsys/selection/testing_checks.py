"""Input validation and infeasibility reports for category-testing selection.

Internal helpers of :mod:`fedsys.selection.testing`; the errors are re-exported there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fedsys.selection.testing_solvers import Problem

_MAX_SAMPLES = int(np.iinfo(np.int32).max)  # max-flow capacities are int32


class InfeasibleRequestError(ValueError):
    """A category request the clients cannot meet.

    Attributes
    ----------
    shortfall
        ``{category_index: missing_samples}`` for every category that cannot be met.
    budget
        The client budget the check was made under, or ``None``.
    """

    def __init__(self, message: str, shortfall: dict[int, int], budget: int | None) -> None:
        super().__init__(message)
        self.shortfall = shortfall
        self.budget = budget


class SolverLimitError(RuntimeError):
    """HiGHS hit its time limit with neither a selection nor a proof that none exists."""


def _as_vector(values: object, size: int, name: str, dtype: type) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


def _integral(values: object, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iuf" and array.size:
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ValueError(f"{name} must hold whole numbers of samples")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be non-negative")
    return array.astype(np.int64)


def request_vector(
    requests: Mapping[int, int] | Sequence[int] | np.ndarray, num: int
) -> np.ndarray:
    """Requests as a length-``num`` int64 vector; a mapping is ``{category_index: n}``.

    Raises
    ------
    ValueError
        On an unknown category index, a wrong length, or negative or fractional requests.
    """
    if isinstance(requests, Mapping):
        vector = np.zeros(num, dtype=np.int64)
        for category, wanted in requests.items():
            if not isinstance(category, int | np.integer) or not 0 <= category < num:
                raise ValueError(
                    f"unknown category index {category!r}: client_counts has {num} categories"
                )
            vector[category] = _integral(wanted, f"request of category {category}")
        return vector
    vector = _integral(requests, "requests")
    if vector.shape != (num,):
        raise ValueError(f"requests must have one entry per category ({num}), got {vector.shape}")
    return vector


def prepare(
    requests: Mapping[int, int] | Sequence[int] | np.ndarray,
    client_counts: np.ndarray,
    client_speed: np.ndarray,
    client_bandwidth: np.ndarray,
    model_bytes: float,
) -> tuple[Problem, np.ndarray]:
    """Validate the inputs and keep only the clients that hold requested data.

    Returns
    -------
    tuple of Problem and numpy.ndarray
        The problem over the kept clients and their row indices in ``client_counts``.

    Raises
    ------
    ValueError
        On mismatched shapes, negative or non-integral counts or requests, non-positive
        speed or bandwidth, a negative model size, or an unknown category index.
    """
    counts = _integral(client_counts, "client_counts")
    if counts.ndim != 2:
        raise ValueError(
            f"client_counts must be a 2-D (clients, categories) matrix, got {counts.shape}"
        )
    num_clients, num_categories = counts.shape
    wanted = request_vector(requests, num_categories)
    speed = _as_vector(client_speed, num_clients, "client_speed", float)
    bandwidth = _as_vector(client_bandwidth, num_clients, "client_bandwidth", float)
    if np.any(speed <= 0) or np.any(bandwidth <= 0):
        raise ValueError("client_speed (s/sample) and client_bandwidth (bytes/s) must be positive")
    if wanted.sum() > _MAX_SAMPLES:
        raise ValueError(f"requests total {wanted.sum()} samples; at most {_MAX_SAMPLES} supported")
    if not (np.isfinite(model_bytes) and model_bytes >= 0):
        raise ValueError(f"model_bytes must be finite and non-negative, got {model_bytes}")
    useful = np.minimum(counts, wanted)
    pool = np.flatnonzero(useful.any(axis=1))
    problem = Problem(useful[pool], speed[pool], model_bytes / bandwidth[pool], wanted)
    return problem, pool


def _describe(shortfall: dict[int, int], wanted: np.ndarray, held: np.ndarray, who: str) -> str:
    parts = [
        f"category {j} requests {wanted[j]} but {who} hold {held[j]} (short by {missing})"
        for j, missing in shortfall.items()
    ]
    return "; ".join(parts)


def check_totals(problem: Problem) -> None:
    """Raise when some category's request exceeds what all clients hold together.

    Raises
    ------
    InfeasibleRequestError
        Naming every such category and its shortfall.
    """
    held = problem.useful.sum(axis=0)
    missing = problem.requests - held
    shortfall = {int(j): int(missing[j]) for j in np.flatnonzero(missing > 0)}
    if shortfall:
        detail = _describe(shortfall, problem.requests, held, "all clients")
        raise InfeasibleRequestError(f"requests cannot be met: {detail}", shortfall, None)


def check_budget(problem: Problem, budget: int) -> None:
    """Raise when no ``budget`` clients can hold enough of some category, or of all together.

    These are necessary conditions; a request passing them may still need more clients.

    Raises
    ------
    InfeasibleRequestError
        Naming every category the ``budget`` largest holders cannot meet, or the total
        shortfall of the ``budget`` clients with most requested data.
    """
    num_clients = problem.useful.shape[0]
    take = min(budget, num_clients)
    if take == 0:
        top = np.zeros_like(problem.requests)
        totals = 0
    else:
        top = -np.partition(-problem.useful, take - 1, axis=0)[:take].sum(axis=0)
        totals = int(-np.partition(-problem.useful.sum(axis=1), take - 1)[:take].sum())
    missing = problem.requests - top
    shortfall = {int(j): int(missing[j]) for j in np.flatnonzero(missing > 0)}
    if shortfall:
        detail = _describe(shortfall, problem.requests, top, f"the {budget} largest holders")
        raise InfeasibleRequestError(
            f"requests cannot be met with at most {budget} clients: {detail}", shortfall, budget
        )
    total_missing = int(problem.requests.sum()) - totals
    if total_missing > 0:
        raise InfeasibleRequestError(
            f"requests cannot be met with at most {budget} clients: the {budget} clients with "
            f"most requested data hold {totals} of the {int(problem.requests.sum())} samples "
            f"requested (short by {total_missing})",
            {},
            budget,
        )


def shortfall_error(
    requests: np.ndarray, shortfall: np.ndarray, budget: int
) -> InfeasibleRequestError:
    """The error for a budget that no selection meets, given the best selection's shortfall.

    Parameters
    ----------
    requests
        ``(C,)`` requested samples.
    shortfall
        ``(C,)`` samples the best selection found of at most ``budget`` clients misses.
    budget
        The client budget.
    """
    missing = {int(j): int(shortfall[j]) for j in np.flatnonzero(shortfall > 0)}
    detail = _describe(missing, requests, requests - shortfall, f"the best {budget} clients found")
    return InfeasibleRequestError(
        f"requests cannot be met with at most {budget} clients: {detail} "
        f"({int(shortfall.sum())} samples short in total)",
        missing,
        budget,
    )
