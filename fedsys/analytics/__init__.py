"""Federated analytics: SQL across silo sites and secure, differentially private sums.

Queries are planned with a real SQL parser into per-site partial aggregates that DuckDB
computes where the data is (:mod:`~fedsys.analytics.planner`), merged at the coordinator
(exactly, or with DataSketches KLL/HLL sketches for quantiles and distinct counts), made
differentially private with OpenDP under a durable budget (:mod:`~fedsys.analytics.dp`,
:mod:`~fedsys.analytics.ledger`) or summed under pairwise masking
(:mod:`~fedsys.analytics.masking`).
"""

from fedsys.analytics.catalog import SitesFile, SiteSpec, load_sites
from fedsys.analytics.dp import PrivacySpec
from fedsys.analytics.ledger import BudgetExceededError, PrivacyLedger
from fedsys.analytics.planner import QueryPlan, UnsupportedQueryError, plan_query
from fedsys.analytics.query import FederatedQueryEngine, QueryOptions, QueryResult

__all__ = [
    "BudgetExceededError",
    "FederatedQueryEngine",
    "PrivacyLedger",
    "PrivacySpec",
    "QueryOptions",
    "QueryPlan",
    "QueryResult",
    "SiteSpec",
    "SitesFile",
    "UnsupportedQueryError",
    "load_sites",
    "plan_query",
]
