"""A durable per-dataset privacy budget: every DP query is charged before any site runs it.

The ledger is one JSON file, rewritten atomically under an exclusive lock, so concurrent
queries cannot both spend the last of a budget and a crash never loses a charge (charge
first, then run: a query that fails after its charge still counts, which is the safe way).
Epsilons and deltas add up (basic sequential composition).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsys.metrics.writers import atomic_write_text, exclusive_lock, read_json_file

__all__ = ["BudgetExceededError", "PrivacyLedger", "Spent"]


class BudgetExceededError(ValueError):
    """A query would spend more than what is left of a dataset's budget."""


@dataclass(frozen=True)
class Spent:
    """What a dataset has spent so far."""

    epsilon: float
    delta: float
    queries: int


class PrivacyLedger:
    """The budget ledger in ``path``.

    Parameters
    ----------
    path
        The JSON file (created on first charge).
    budget_epsilon, budget_delta
        Total budget of every dataset charged through this ledger.
    """

    def __init__(self, path: Path, budget_epsilon: float, budget_delta: float = 0.0) -> None:
        self.path = Path(path)
        self.budget_epsilon = budget_epsilon
        self.budget_delta = budget_delta

    def spent(self, dataset: str) -> Spent:
        """What ``dataset`` has spent."""
        entries = self._read().get("datasets", {}).get(dataset, [])
        return Spent(sum(e["epsilon"] for e in entries), sum(e["delta"] for e in entries),
                     len(entries))

    def charge(self, dataset: str, epsilon: float, delta: float, query: str) -> Spent:
        """Record a query's cost if the budget allows it; return the new total.

        Raises
        ------
        BudgetExceededError
            If the dataset's budget cannot pay for it (nothing is recorded).
        """
        with exclusive_lock(self.path):
            data = self._read()
            entries = data.setdefault("datasets", {}).setdefault(dataset, [])
            eps = sum(e["epsilon"] for e in entries) + epsilon
            dlt = sum(e["delta"] for e in entries) + delta
            over_delta = dlt > self.budget_delta * (1 + 1e-9) + 1e-15
            if eps > self.budget_epsilon * (1 + 1e-9) or over_delta:
                left = self.budget_epsilon - (eps - epsilon)
                raise BudgetExceededError(
                    f"privacy budget of dataset {dataset!r} exceeded: query needs "
                    f"epsilon={epsilon:g}, delta={delta:g}, {left:g} epsilon left of "
                    f"{self.budget_epsilon:g} (ledger {self.path})")
            entries.append({"epsilon": epsilon, "delta": delta, "query": query,
                            "time": time.time()})
            self._write(data)
            return Spent(eps, dlt, len(entries))

    def _read(self) -> dict[str, Any]:
        data = read_json_file(self.path, "privacy ledger")
        if not isinstance(data, dict):
            raise ValueError(f"privacy ledger {self.path} is not a JSON object")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.path, json.dumps(data, indent=1))

