"""A site's own rules applied to federated SQL: checked before, enforced during a task.

Before a task runs (in the site manager, see :mod:`fedsys.silo.gate`), the site plans
the query itself and refuses it when it reads a table the site does not expose, a
column it hides, or a DP-only column or table without differential privacy; for a DP
task it fixes the privacy the site applies: its own clamping bounds and key domains,
and the epsilon it charges to its own ledger. While the task runs (in a compute
worker), exact partials lose every group smaller than the site's minimum (counted
over the site's whole table, not per part), and DP partials are noised at the site
with OpenDP over every group of the site's declared domains.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np
import sqlglot
from sqlglot import exp

from fedsys.analytics import sql_text
from fedsys.analytics.dp import PrivacySpec, calibrate
from fedsys.analytics.encoding import to_json_value
from fedsys.analytics.planner import QueryPlan, plan_query, slot_of
from fedsys.silo.gate import POLICY_KEY, Admission, TaskRefusedError, TaskRequest
from fedsys.silo.site_rules import SiteRules, TableRules
from fedsys.silo.task_registry import checker

__all__ = [
    "check_keys",
    "check_masked",
    "check_partial",
    "check_schema",
    "dp_partial_rows",
    "group_sizes_sql",
    "in_domains",
    "read_columns",
    "site_noise",
    "suppress_small_groups",
]


@functools.lru_cache(maxsize=256)
def _plan(query: str) -> QueryPlan:
    return plan_query(query)


_PATTERNS = tuple(t for t in (exp.Star, getattr(exp, "Columns", None)) if t is not None)
"""Expressions that read columns by pattern: the site cannot tell which columns."""


def read_columns(plan: QueryPlan) -> set[str]:
    """Every column the site's part of ``plan`` reads (WHERE, keys, aggregate arguments).

    Raises
    ------
    TaskRefusedError
        If an expression reads columns by pattern (``*``, ``COLUMNS(...)``), so the site
        cannot tell which.
    """
    names: set[str] = set()
    fragments = [plan.where, *plan.keys, *(spec.arg for spec in plan.aggregates)]
    for fragment in fragments:
        if fragment is None:
            continue
        with sql_text.recursion_room(sql_text.nesting_depth(sql_text.tokens(fragment))):
            nodes = list(sqlglot.parse_one(fragment, read="duckdb").walk())
        for node in nodes:
            if isinstance(node, _PATTERNS) or (
                isinstance(node, exp.Anonymous) and str(node.name).upper() == "COLUMNS"
            ):
                raise TaskRefusedError(
                    "an expression reads columns by pattern (* or COLUMNS); name the columns"
                )
            if isinstance(node, exp.Column):
                names.add(node.name)
                if node.table and node.table != plan.table:
                    names.add(node.table)  # a struct field of another column
    return names


def _request_plan(rules: SiteRules, request: TaskRequest) -> tuple[QueryPlan, TableRules, set[str]]:
    if request.dataset != rules.sql.dataset:
        raise TaskRefusedError(f"dataset {request.dataset!r} has no tables at this site")
    try:
        plan = _plan(str(request.params["query"]))
    except KeyError:
        raise TaskRefusedError("the task names no query") from None
    except ValueError as exc:  # an UnsupportedQueryError too
        raise TaskRefusedError(f"the site cannot plan the query: {exc}") from None
    table = rules.table(plan.table)
    if table is None:
        raise TaskRefusedError(f"table {plan.table!r} is not exposed at this site")
    columns = read_columns(plan)
    hidden = sorted(c for c in columns if not table.readable(c))
    if hidden:
        raise TaskRefusedError(
            f"column(s) {', '.join(hidden)} of table {plan.table} may not be read at this site"
        )
    return plan, table, columns


def _dp_columns(table: TableRules, columns: set[str]) -> list[str]:
    return sorted(c for c in columns if table.needs_dp(c))


@checker("analytics.partial")
def check_partial(rules: SiteRules, request: TaskRequest) -> Admission:
    """Admit or refuse an ``analytics.partial`` task under the site's rules."""
    if rules.sql.secure_required:
        raise TaskRefusedError("this site answers only with secure (masked) sums: use --secure")
    plan, table, columns = _request_plan(rules, request)
    params = dict(request.params)
    read = (plan.table,), tuple(sorted(columns))
    dp_cols = _dp_columns(table, columns)
    if not (table.dp_only or dp_cols):
        minimum = table.min_group_size or rules.sql.min_group_size
        params[POLICY_KEY] = {"min_group_size": minimum}
        return Admission(params, *read)
    if int(request.params.get("parts", 1)) > 1:
        raise TaskRefusedError("a differentially private task reads the whole table (parts=1)")
    return _admit_dp(request, plan, table, columns, dp_cols)


def _admit_dp(
    request: TaskRequest, plan: QueryPlan, table: TableRules, columns: set[str], dp_cols: list[str]
) -> Admission:
    """Admit a task on DP-only data: the site's bounds, domains and noise, its charge."""
    what = f"table {plan.table}" if table.dp_only else f"column(s) {', '.join(dp_cols)}"
    privacy = request.params.get("privacy")
    if not isinstance(privacy, Mapping):
        raise TaskRefusedError(
            f"{what} may only be released with differential privacy: an exact answer is refused"
        )
    try:
        spec = PrivacySpec(
            float(privacy["epsilon"]),
            float(privacy.get("delta", 0.0)),
            privacy.get("mechanism", "laplace"),
            bounds=table.bounds,
        )
        clamps, _ = calibrate(plan.aggregates, spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise TaskRefusedError(
            f"{what}: {exc}".replace("(e.g. --bounds", "at this site (e.g. --bounds")
        ) from None
    domains = []
    for key, column in zip(plan.keys, plan.key_columns, strict=True):
        if column is None or column not in table.domains:
            raise TaskRefusedError(
                f"GROUP BY {key} under differential privacy needs the key's "
                f"values declared by this site"
            )
        domains.append(list(table.domains[column]))
    params = dict(request.params)
    params[POLICY_KEY] = {
        "dp": {
            "epsilon": spec.epsilon,
            "delta": spec.delta,
            "mechanism": spec.mechanism,
            "bounds": {c: list(b) for c, b in table.bounds.items()},
            "clamps": {str(k): list(v) for k, v in clamps.items()},
            "domains": domains,
        }
    }
    return Admission(
        params, (plan.table,), tuple(sorted(columns)), epsilon=spec.epsilon, delta=spec.delta
    )


@checker("analytics.masked_partial")
def check_masked(rules: SiteRules, request: TaskRequest) -> Admission:
    """Admit or refuse an ``analytics.masked_partial`` task (a secure sum)."""
    plan, table, columns = _request_plan(rules, request)
    dp_cols = _dp_columns(table, columns)
    if table.dp_only or dp_cols:  # noised at the site before masking, over the query's layout
        return _admit_dp(request, plan, table, columns, dp_cols)
    params = dict(request.params)
    params[POLICY_KEY] = {"min_group_size": table.min_group_size or rules.sql.min_group_size}
    return Admission(params, (plan.table,), tuple(sorted(columns)))


@checker("analytics.schema")
def check_schema(rules: SiteRules, request: TaskRequest) -> Admission:
    """The types of the columns a query reads: only of an exposed table's readable ones."""
    plan, _, columns = _request_plan(rules, request)
    return Admission(dict(request.params), (plan.table,), tuple(sorted(columns)))


@checker("analytics.public_key")
@checker("analytics.reveal_seeds")
def check_keys(rules: SiteRules, request: TaskRequest) -> Admission:
    """Key exchange and seed reveals of secure sums read no row: admitted on the SQL dataset."""
    if request.dataset != rules.sql.dataset:
        raise TaskRefusedError(f"dataset {request.dataset!r} has no tables at this site")
    return Admission(dict(request.params))


# ------------------------------------------------------------------ in the worker


def group_sizes_sql(plan: QueryPlan) -> str:
    """Rows per group of ``plan`` over the site's whole table (its WHERE applied)."""
    keys = [f"{key} AS _k{i}" for i, key in enumerate(plan.keys)]
    sql = f"SELECT {', '.join([*keys, 'COUNT(*) AS _n'])} FROM {plan.table}"
    if plan.where:
        sql += f" WHERE ({plan.where})"
    if plan.keys:
        sql += " GROUP BY " + ", ".join(f"_k{i}" for i in range(len(plan.keys)))
    return sql


def suppress_small_groups(
    con: Any, plan: QueryPlan, rows: Sequence[Sequence[Any]], minimum: int
) -> list[list[Any]]:
    """``rows`` without the groups holding fewer than ``minimum`` rows at this site."""
    if minimum <= 1:
        return [list(r) for r in rows]
    nkeys = len(plan.keys)
    large = {
        _key(r[:nkeys])
        for r in con.execute(group_sizes_sql(plan)).fetchall()
        if r[nkeys] >= minimum
    }
    return [list(r) for r in rows if _key(r[:nkeys]) in large]


def dp_partial_rows(
    con: Any,
    plan: QueryPlan,
    dp: Mapping[str, Any],
    casts: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str], list[list[Any]]]:
    """The site's noisy summable partials over every group of its declared domains.

    Sums are clamped to the site's bounds; rows whose key is outside the domains are
    left out; every released partial (counts included) carries OpenDP noise, except the
    row count of a SUM, which is released as 1 (it only says "not empty").
    """
    clamps = {int(k): (float(v[0]), float(v[1])) for k, v in dp["clamps"].items()}
    cursor = con.execute(plan.site_sql(secure=True, clamps=clamps, casts=casts))
    columns = [d[0] for d in cursor.description]
    types = [str(d[1]) for d in cursor.description]
    nkeys = len(plan.keys)
    groups = list(product(*[[to_json_value(v) for v in d] for d in dp["domains"]])) or [()]
    index = {g: i for i, g in enumerate(groups)}
    values = np.zeros((len(groups), len(columns) - nkeys))
    for row in cursor.fetchall():
        g = index.get(tuple(to_json_value(v) for v in row[:nkeys]))
        if g is not None:
            values[g] = [float(v or 0) for v in row[nkeys:]]
    values = site_noise(plan, columns[nkeys:], values, dp)
    rows = [[*group, *values[g].tolist()] for g, group in enumerate(groups)]
    return columns, [*types[:nkeys], *("DOUBLE" for _ in columns[nkeys:])], rows


def site_noise(
    plan: QueryPlan, value_columns: Sequence[str], values: np.ndarray, dp: Mapping[str, Any]
) -> np.ndarray:
    """``values`` (groups x partial columns ``_a{slot}_{j}``) with the site's OpenDP noise.

    Each noisy measurement of :func:`~fedsys.analytics.dp.calibrate` noises its column;
    the row count of a SUM is released as 1 (it only says "not empty").
    """
    spec = PrivacySpec(
        float(dp["epsilon"]),
        float(dp["delta"]),
        dp["mechanism"],
        bounds={c: (float(b[0]), float(b[1])) for c, b in dp["bounds"].items()},
    )
    _, measures = calibrate(plan.aggregates, spec)
    noisy = np.array(values, dtype=np.float64, copy=True)
    for i, column in enumerate(value_columns):
        slot, part = slot_of(column), int(column.rsplit("_", 1)[1])
        noises = measures.get(slot, [])
        if part < len(noises):
            noisy[:, i] = [noises[part](float(v)) for v in noisy[:, i]]
        elif plan.aggregates[slot].kind == "sum":
            noisy[:, i] = 1.0
    return noisy


def in_domains(
    plan: QueryPlan, rows: Sequence[Sequence[Any]], domains: Sequence[Sequence[Any]]
) -> list[Sequence[Any]]:
    """The rows whose group key lies in the declared ``domains`` (DP leaves the rest out)."""
    nkeys = len(plan.keys)
    allowed = set(product(*[[to_json_value(v) for v in d] for d in domains]))
    return [r for r in rows if tuple(to_json_value(v) for v in r[:nkeys]) in allowed]


def _key(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(to_json_value(v) if not isinstance(v, list) else str(v) for v in values)
