"""An analyst's SQL query run by a standing coordinator.

The request (SQL and its options, as ``fedsys query`` takes them) is planned and checked
when it is submitted, so a query that cannot run is refused before it is queued; when
it starts it runs on the connected sites, beside other jobs, through the fair-share
gate (:class:`~fedsys.federation.gate.AnalystView`) with the same engine as a one-shot
``fedsys query`` (:class:`~fedsys.analytics.query.FederatedQueryEngine`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedsys.analytics.dp import PrivacySpec
from fedsys.analytics.encoding import to_json_value
from fedsys.analytics.ledger import PrivacyLedger
from fedsys.analytics.planner import plan_query
from fedsys.analytics.query import FederatedQueryEngine, QueryOptions, QueryResult, check_options
from fedsys.federation.gate import AnalystView
from fedsys.silo.mode import EngineMode

__all__ = ["MAX_SQL_BYTES", "check_query", "options_of", "result_json", "run_query"]

MAX_SQL_BYTES = 64 * 1024
"""Longest SQL text a coordinator accepts."""


def options_of(request: Mapping[str, Any]) -> QueryOptions:
    """Query options from a request's fields (``epsilon`` 0: exact).

    Raises
    ------
    ValueError
        On a negative epsilon, a delta without epsilon, or malformed bounds.
    """
    epsilon = float(request.get("epsilon") or 0.0)
    delta = float(request.get("delta") or 0.0)
    if epsilon < 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    privacy = None
    if epsilon > 0:
        bounds = {str(k): (float(v[0]), float(v[1]))
                  for k, v in dict(request.get("bounds") or {}).items()}
        privacy = PrivacySpec(epsilon, delta, str(request.get("mechanism") or "laplace"),
                              bounds)
    elif delta:
        raise ValueError("delta needs epsilon")
    return QueryOptions(privacy=privacy, secure=bool(request.get("secure")),
                        domains=dict(request.get("domains") or {}),
                        parts=max(1, int(request.get("parts") or 1)))


def check_query(request: Mapping[str, Any]) -> str:
    """Plan and check a query request before it is queued; a one-line summary.

    Raises
    ------
    ValueError
        If the SQL is empty or too long, or its options do not fit it.
    UnsupportedQueryError
        If the query has no mergeable (or DP, or secure) form.
    """
    sql = str(request.get("sql") or "").strip()
    if not sql:
        raise ValueError("a query needs SQL text")
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise ValueError(f"the SQL text exceeds {MAX_SQL_BYTES} bytes")
    options = options_of(request)
    check_options(plan_query(sql), options)
    flags = [f"epsilon={options.privacy.epsilon:g}"] if options.privacy else []
    flags += ["secure"] if options.secure else []
    return " ".join([sql[:120], *(f"[{f}]" for f in flags)])


async def run_query(view: AnalystView, request: Mapping[str, Any],
                    ledger: PrivacyLedger | None, timeout_s: float) -> dict[str, Any]:
    """Run a query request on the sites; its answer as JSON."""
    engine = FederatedQueryEngine(
        view, str(request.get("dataset") or "data"),  # type: ignore[arg-type]
        EngineMode.sol(), ledger, max_dropouts=1, job_timeout_s=timeout_s)
    result = await engine.run(str(request["sql"]), options_of(request))
    return result_json(result)


def result_json(result: QueryResult) -> dict[str, Any]:
    """A result as a JSON object (columns, rows, cost, noise scales)."""
    return {"columns": result.columns,
            "rows": [[to_json_value(v) for v in row] for row in result.rows],
            "duration_s": result.duration_s, "bytes_moved": result.bytes_moved,
            "noise": {k: {"mechanism": m, "scale": s} for k, (m, s) in result.noise.items()},
            "dropped_sites": result.dropped}
