"""The site's own privacy budget: charged before any row is read, per analyst and in total.

One JSON file per site (its path is in ``site.yaml``; it never leaves the site). A
charge reads the file, checks both the analyst's and the site's total budget and
appends the charge, all under an exclusive ``flock``, and rewrites the file atomically:
concurrent tasks (several workers, several site processes) cannot both spend the last
of a budget, and a crash never loses a charge. A task whose charge went through and
then failed still counts (the safe way). Epsilons and deltas add up (basic
sequential composition).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsys.metrics.writers import atomic_write_text, exclusive_lock, read_json_file

__all__ = ["BudgetRefusedError", "SiteLedger", "Spending"]

_SLACK = 1e-9
"""Relative slack of budget comparisons (sums of floats)."""


class BudgetRefusedError(ValueError):
    """A task would spend more than the analyst's or the site's budget allows."""


@dataclass(frozen=True)
class Spending:
    """What has been spent: by one analyst and by everyone."""

    analyst_epsilon: float
    analyst_delta: float
    total_epsilon: float
    total_delta: float
    charges: int


class SiteLedger:
    """The budget ledger of one site.

    Parameters
    ----------
    path
        The JSON file (created at the first charge).
    budget_epsilon, budget_delta
        The site's total budget over every analyst.
    analyst_epsilon, analyst_delta
        What one analyst may spend (``None``: the total).
    """

    def __init__(
        self,
        path: Path,
        budget_epsilon: float,
        budget_delta: float = 0.0,
        analyst_epsilon: float | None = None,
        analyst_delta: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.budget_epsilon = budget_epsilon
        self.budget_delta = budget_delta
        self.analyst_epsilon = analyst_epsilon
        self.analyst_delta = analyst_delta

    def spent(self, analyst: str) -> Spending:
        """What ``analyst`` and everyone have spent so far."""
        with exclusive_lock(self.path):
            return _spending(self._read(), analyst)

    def charge(self, analyst: str, epsilon: float, delta: float, what: str) -> Spending:
        """Record a charge if both budgets allow it; return the spending after it.

        Raises
        ------
        BudgetRefusedError
            If the analyst's or the site's budget cannot pay (nothing is recorded).
        """
        with exclusive_lock(self.path):
            data = self._read()
            now = _spending(data, analyst)
            limits = (
                (
                    "the site's total",
                    now.total_epsilon,
                    self.budget_epsilon,
                    now.total_delta,
                    self.budget_delta,
                ),
                (
                    f"analyst {analyst or '(none)'}'s",
                    now.analyst_epsilon,
                    self.analyst_epsilon
                    if self.analyst_epsilon is not None
                    else self.budget_epsilon,
                    now.analyst_delta,
                    self.analyst_delta if self.analyst_delta is not None else self.budget_delta,
                ),
            )
            for label, eps_spent, eps_cap, dlt_spent, dlt_cap in limits:
                if (
                    eps_spent + epsilon > eps_cap * (1 + _SLACK)
                    or dlt_spent + delta > dlt_cap * (1 + _SLACK) + 1e-15
                ):
                    raise BudgetRefusedError(
                        f"{label} privacy budget is spent: the task needs epsilon={epsilon:g}"
                        f" delta={delta:g}; {max(0.0, eps_cap - eps_spent):g} epsilon left "
                        f"of {eps_cap:g}"
                    )
            data.setdefault("charges", []).append(
                {
                    "analyst": analyst,
                    "epsilon": epsilon,
                    "delta": delta,
                    "what": what,
                    "time": time.time(),
                }
            )
            atomic_write_text(self.path, json.dumps(data, indent=1))
            return _spending(data, analyst)

    def _read(self) -> dict[str, Any]:
        data = read_json_file(self.path, "site ledger")
        if not isinstance(data, dict) or not isinstance(data.get("charges", []), list):
            raise ValueError(f"site ledger {self.path} is not a ledger")
        return data



def _spending(data: dict[str, Any], analyst: str) -> Spending:
    charges = data.get("charges", [])
    mine = [c for c in charges if c.get("analyst") == analyst]
    return Spending(
        sum(c["epsilon"] for c in mine),
        sum(c["delta"] for c in mine),
        sum(c["epsilon"] for c in charges),
        sum(c["delta"] for c in charges),
        len(charges),
    )
