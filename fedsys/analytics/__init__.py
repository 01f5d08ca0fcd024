"""Federated analytics: SQL across silo sites and secure, differentially private sums.

Queries are planned with a real SQL parser into per-site partial aggregates that DuckDB
computes where the data is (:mod:`~fedsys.analytics.planner`), merged at the coordinator
(exactly, or with DataSketches KLL/HLL sketches for quantiles and distinct counts), made
differentially private with OpenDP under a durable budget (:mod:`~fedsys.analytics.dp`,
:mod:`~fedsys.analytics.ledger`) or summed under pairwise masking
(:mod:`~fedsys.analytics.masking`). Device-population statistics for the simulator live
in :mod:`~fedsys.data.device_stats`.

Exports load on first use, so the simulator can use the pure parts (DP, device
statistics) without importing the silo runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BudgetExceededError": "fedsys.analytics.ledger",
    "FederatedQueryEngine": "fedsys.analytics.query",
    "PrivacyLedger": "fedsys.analytics.ledger",
    "PrivacySpec": "fedsys.analytics.dp",
    "QueryOptions": "fedsys.analytics.query",
    "QueryPlan": "fedsys.analytics.planner",
    "QueryResult": "fedsys.analytics.query",
    "SiteSpec": "fedsys.analytics.catalog",
    "SitesFile": "fedsys.analytics.catalog",
    "UnsupportedQueryError": "fedsys.analytics.planner",
    "label_histograms": "fedsys.data.device_stats",
    "load_sites": "fedsys.analytics.catalog",
    "plan_query": "fedsys.analytics.planner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fedsys.analytics' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
