"""Plan a SQL query into per-site partial aggregates and a merge, with a real parser.

sqlglot parses the query (DuckDB dialect). The plan pushes the WHERE clause and the
arguments of every aggregate down to the sites as SQL (``site_sql``); the coordinator
merges the partials per group and evaluates the rest of the query (the SELECT
expressions over merged aggregates, HAVING, ORDER BY, LIMIT) in DuckDB over the merged
table (``final_sql``). A query with no mergeable form is refused with an error naming
the operator as the user wrote it: exact MEDIAN or quantiles, COUNT(DISTINCT), joins,
subqueries, windows; so is one nested deeper than the sites can run
(:mod:`fedsys.analytics.sql_text`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from fedsys.analytics import sql_text
from fedsys.analytics.aggregates import AggSpec, partial_sql, secure_sql

__all__ = ["MERGED_TABLE", "QueryPlan", "UnsupportedQueryError", "plan_query"]

MERGED_TABLE = "merged"

_KINDS: dict[type[exp.Expression], str] = {
    exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max",
    exp.Variance: "var_samp", exp.VariancePop: "var_pop", exp.Stddev: "stddev_samp",
    exp.StddevSamp: "stddev_samp", exp.StddevPop: "stddev_pop",
    exp.ApproxDistinct: "distinct", exp.ApproxQuantile: "quantile",
}
_HINTS = {
    "MEDIAN": "use APPROX_QUANTILE(x, 0.5)",
    "QUANTILE_CONT": "use APPROX_QUANTILE(x, q)",
    "QUANTILE_DISC": "use APPROX_QUANTILE(x, q)",
    "QUANTILE": "use APPROX_QUANTILE(x, q)",
    "MODE": "use HISTOGRAM(x)",
}


class UnsupportedQueryError(ValueError):
    """A query that has no mergeable federated form (the message names the operator)."""


@dataclass(frozen=True)
class QueryPlan:
    """A planned federated query.

    Attributes
    ----------
    sql
        The query as written.
    table
        The one table it reads (each site holds its own rows of it).
    where
        Its WHERE clause (pushed to the sites), or ``None``.
    keys
        GROUP BY expressions as the sites evaluate them.
    key_columns
        The bare column of each key (``None`` for an expression).
    aggregates
        Aggregates in slot order (``_a0``, ``_a1``...).
    final_sql
        The query over the merged table ``merged(_k0.., _a0..)``.
    columns
        The table's columns the sites evaluate (in WHERE, keys and aggregate arguments),
        whose types are unified across sites before any partial is computed.
    """

    sql: str
    table: str
    where: str | None
    keys: tuple[str, ...]
    key_columns: tuple[str | None, ...]
    aggregates: tuple[AggSpec, ...]
    final_sql: str
    columns: tuple[str, ...] = ()

    def column_sources(self, clamps: dict[int, tuple[float, float]] | None = None
                       ) -> tuple[int, ...]:
        """For each aggregate slot, the slot whose plain partial columns it merges.

        Aggregates with identical partials share them (``APPROX_QUANTILE(x, 0.5)`` and
        ``(x, 0.99)`` one KLL sketch, ``SUM(x)`` and ``AVG(x)`` one sum and count), so a
        site computes and sends each partial once.
        """
        first: dict[tuple[str, ...], int] = {}
        return tuple(first.setdefault(tuple(partial_sql(spec, (clamps or {}).get(slot))), slot)
                     for slot, spec in enumerate(self.aggregates))

    def site_sql(self, row_range: tuple[int, int] | None = None, secure: bool = False,
                 clamps: dict[int, tuple[float, float]] | None = None,
                 casts: Mapping[str, str] | None = None) -> str:
        """The partial-aggregate SQL a site runs on its rows ``row_range`` (by rowid).

        ``secure``: summable partials only; ``clamps``: per-aggregate clamping bounds;
        ``casts``: column -> type the site reads it as (checked plain names and types,
        see :func:`fedsys.analytics.schema.site_casts`), so every site's partials have
        the unified types.
        """
        columns = [f"{key} AS _k{i}" for i, key in enumerate(self.keys)]
        sources = None if secure else self.column_sources(clamps)
        for slot, spec in enumerate(self.aggregates):
            if sources is not None and sources[slot] != slot:
                continue  # reads an earlier slot's partial columns
            clamp = (clamps or {}).get(slot)
            exprs = secure_sql(spec, clamp) if secure else partial_sql(spec, clamp)
            columns += [f"{e} AS _a{slot}_{j}" for j, e in enumerate(exprs)]
        conditions = [f"({self.where})"] if self.where else []
        rows = (f"rowid >= {int(row_range[0])} AND rowid < {int(row_range[1])}"
                if row_range is not None else None)
        source = self.table
        if casts:
            replaced = ", ".join(f"CAST({_quoted(c)} AS {t}) AS {_quoted(c)}"
                                 for c, t in sorted(casts.items()))
            source = (f"(SELECT * REPLACE ({replaced}) FROM {self.table}"
                      + (f" WHERE {rows}" if rows else "") + f") AS {self.table}")
        elif rows:
            conditions.append(rows)
        sql = f"SELECT {', '.join(columns)} FROM {source}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if self.keys:
            sql += " GROUP BY " + ", ".join(f"_k{i}" for i in range(len(self.keys)))
        return sql


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def slot_of(column: str) -> int:
    """The aggregate slot of a site partial column ``_a{slot}_{j}`` (see ``site_sql``)."""
    return int(column[2:].split("_")[0])


def plan_query(sql: str) -> QueryPlan:
    """Plan ``sql`` for federated execution.

    Raises
    ------
    UnsupportedQueryError
        If the query has no mergeable form (the message names the operator as written),
        or nests deeper than :data:`~fedsys.analytics.sql_text.MAX_NESTING`.
    ValueError
        If it does not parse.
    """
    try:
        toks = sql_text.tokens(sql)
    except sqlglot.errors.SqlglotError as exc:
        raise ValueError(f"query does not parse: {_first_line(exc)}") from None
    depth = sql_text.nesting_depth(toks)
    if depth > sql_text.MAX_NESTING:
        raise UnsupportedQueryError(
            f"the query nests parentheses {depth} deep; at most {sql_text.MAX_NESTING} "
            f"levels can be planned")
    try:
        with sql_text.recursion_room(depth):
            return _plan(sql, sql_text.call_names(toks))
    except RecursionError:
        raise UnsupportedQueryError(
            "the query's expressions nest too deeply to plan (a long chain of operators "
            "or calls): split or simplify it") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _plan(sql: str, written: list[str]) -> QueryPlan:
    """:func:`plan_query` once the query's depth is known to fit the recursion limit."""
    try:
        statements = sqlglot.parse(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ValueError(f"query does not parse: {_first_line(exc)}") from None
    if len(statements) != 1 or statements[0] is None:
        raise UnsupportedQueryError("a federated query is exactly one SELECT statement")
    select = statements[0]
    depth = sql_text.expression_depth(select)
    if depth > sql_text.MAX_EXPRESSION_DEPTH:
        raise UnsupportedQueryError(
            f"the query's expressions nest {depth} deep (a long chain of operators or "
            f"calls); at most {sql_text.MAX_EXPRESSION_DEPTH} can run at the sites: split "
            f"or simplify it")
    if not isinstance(select, exp.Select):
        raise UnsupportedQueryError(
            f"{type(select).__name__.upper()} is not supported: only one SELECT (no UNION, "
            f"no DDL) has a mergeable form")
    table = _check_shape(select)
    keys = _group_keys(select)
    aggregates: list[AggSpec] = []
    slots: dict[str, int] = {}
    evaluated: list[exp.Expression] = list(keys)  # what the sites evaluate

    def rewrite(node: exp.Expression) -> exp.Expression:
        for i, key in enumerate(keys):
            if node == key:
                return exp.column(f"_k{i}")
        spec = _aggregate(node, sql, written)
        if spec is None:
            return node
        evaluated.append(node)
        ident = f"{spec.kind}|{spec.arg}|{spec.q}"
        if ident not in slots:
            slots[ident] = len(aggregates)
            aggregates.append(spec)
        return exp.column(f"_a{slots[ident]}")

    projections = []
    for item in select.expressions:
        if isinstance(item, exp.Star):
            raise UnsupportedQueryError("SELECT * returns raw rows: no mergeable form")
        name = item.alias_or_name if isinstance(item, exp.Alias) else item.sql("duckdb")
        body = item.this if isinstance(item, exp.Alias) else item
        projections.append(exp.alias_(_rewrite_all(body.copy(), rewrite), name, quoted=True))
    final = exp.select(*projections).from_(MERGED_TABLE)
    having = select.args.get("having")
    if having is not None:
        final = final.where(_rewrite_all(having.this.copy(), rewrite))
    order = select.args.get("order")
    if order is not None:
        final.set("order", _rewrite_all(order.copy(), rewrite))
    for arg in ("limit", "offset"):
        if select.args.get(arg) is not None:
            final.set(arg, select.args[arg].copy())
    _check_leftovers(final, select)
    if not aggregates and not keys:
        raise UnsupportedQueryError("a query without aggregates returns raw rows: no mergeable"
                                    " form (add COUNT, SUM, AVG, ... or GROUP BY)")
    where = select.args.get("where")
    if where is not None:
        evaluated.append(where.this)
    columns = {c.name: None for node in evaluated for c in node.find_all(exp.Column)}
    return QueryPlan(
        sql=sql, table=table, where=where.this.sql("duckdb") if where is not None else None,
        keys=tuple(k.sql("duckdb") for k in keys),
        key_columns=tuple(k.name if isinstance(k, exp.Column) else None for k in keys),
        aggregates=tuple(aggregates), final_sql=final.sql("duckdb"), columns=tuple(columns))


def _check_shape(select: exp.Select) -> str:
    if select.args.get("joins"):
        raise UnsupportedQueryError("JOIN across sites has no mergeable form (each site holds "
                                    "only its own rows)")
    if select.args.get("distinct") is not None:
        raise UnsupportedQueryError("SELECT DISTINCT returns raw rows: no mergeable form "
                                    "(use GROUP BY or APPROX_COUNT_DISTINCT)")
    for node in select.find_all(exp.Window):
        raise UnsupportedQueryError(f"window function {node.this.sql('duckdb')} OVER (...) has "
                                    f"no mergeable form")
    for node in select.find_all(exp.Select, exp.Subquery):
        if node is not select:
            raise UnsupportedQueryError("subqueries have no mergeable form")
    if select.args.get("with") is not None:
        raise UnsupportedQueryError("WITH (common table expressions) has no mergeable form")
    source = select.args.get("from_")
    if (source is None or not isinstance(source.this, exp.Table)
            or not isinstance(source.this.this, exp.Identifier)):
        raise UnsupportedQueryError("a federated query reads exactly one table (FROM name)")
    return source.this.sql("duckdb")


def _group_keys(select: exp.Select) -> list[exp.Expression]:
    group = select.args.get("group")
    if group is None:
        return []
    if group.args.get("all"):
        raise UnsupportedQueryError("GROUP BY ALL is not supported: name the keys")
    keys = []
    for key in group.expressions:
        if isinstance(key, exp.Literal) and key.is_int:
            index = int(key.this) - 1
            if not 0 <= index < len(select.expressions):
                raise UnsupportedQueryError(f"GROUP BY {key.this} is out of range")
            key = select.expressions[index]
            key = key.this if isinstance(key, exp.Alias) else key
        elif isinstance(key, exp.Column) and not key.table:
            for item in select.expressions:  # GROUP BY an alias of the SELECT list
                if isinstance(item, exp.Alias) and item.alias == key.name:
                    key = item.this
        if _contains_aggregate(key):
            raise UnsupportedQueryError("GROUP BY an aggregate is not allowed")
        keys.append(key)
    return keys


def _aggregate(node: exp.Expression, sql: str, written: list[str]) -> AggSpec | None:
    """The AggSpec of an aggregate call, ``None`` for anything else.

    ``sql`` and ``written`` (its call names): errors and specs name the operator as the
    user spelled it, not as sqlglot normalised it.
    """
    if not isinstance(node, exp.Func):
        return None
    name = sql_text.name_as_written(node, sql, written)
    if isinstance(node, exp.Anonymous) and name == "HISTOGRAM":
        if len(node.expressions) != 1:
            raise UnsupportedQueryError("HISTOGRAM(x) takes one column (bounded bins: GROUP BY "
                                        "FLOOR(x / width))")
        return _spec("histogram", node.expressions[0], name)
    if not isinstance(node, exp.AggFunc):
        if name in _HINTS or (isinstance(node, exp.Anonymous) and _is_duckdb_aggregate(name)):
            raise _refusal(name)
        return None
    kind = _KINDS.get(type(node))
    if kind is None:
        raise _refusal(name)
    arg = node.this
    if isinstance(arg, exp.Distinct):
        raise UnsupportedQueryError(f"{name}(DISTINCT ...) has no exact mergeable form "
                                    f"(use APPROX_COUNT_DISTINCT)")
    if kind == "count" and (arg is None or isinstance(arg, exp.Star)):
        return AggSpec("count", None, name)
    if kind == "quantile":
        quantile = node.args.get("quantile")
        if not isinstance(quantile, exp.Literal) or quantile.is_string:
            raise UnsupportedQueryError("APPROX_QUANTILE(x, q) needs a constant q in [0, 1]")
        q = float(quantile.this)
        if not 0 <= q <= 1:
            raise UnsupportedQueryError(f"APPROX_QUANTILE rank {q} is outside [0, 1]")
        return _spec("quantile", arg, name, q)
    if _contains_aggregate(arg):
        raise UnsupportedQueryError(f"nested aggregate inside {name} is not allowed")
    return _spec(kind, arg, name)


def _spec(kind: str, arg: exp.Expression, name: str, q: float | None = None) -> AggSpec:
    column = arg.name if isinstance(arg, exp.Column) else None
    return AggSpec(kind, arg.sql("duckdb"), name, column, q)


def _refusal(name: str) -> UnsupportedQueryError:
    hint = _HINTS.get(name)
    return UnsupportedQueryError(
        f"{name} has no mergeable form across sites" + (f" ({hint})" if hint else "")
        + "; supported: COUNT, SUM, AVG, MIN, MAX, VAR/STDDEV, HISTOGRAM, APPROX_QUANTILE, "
          "APPROX_COUNT_DISTINCT")


def _contains_aggregate(node: exp.Expression) -> bool:
    return any(isinstance(n, exp.AggFunc) for n in node.walk())


def _rewrite_all(node: exp.Expression, fn: object) -> exp.Expression:
    return node.transform(fn, copy=False)  # type: ignore[arg-type]


def _check_leftovers(final: exp.Select, select: exp.Select) -> None:
    aliases = {item.alias for item in select.expressions if isinstance(item, exp.Alias)}
    for column in final.find_all(exp.Column):
        name = column.name
        if name.startswith(("_k", "_a")) or (name in aliases and not column.table):
            continue
        raise UnsupportedQueryError(
            f"column {column.sql('duckdb')} is neither aggregated nor in GROUP BY: raw values "
            f"have no mergeable form")


_AGGREGATE_NAMES: frozenset[str] | None = None


def _is_duckdb_aggregate(name: str) -> bool:
    """Whether DuckDB knows ``name`` as an aggregate (so it is not a scalar function)."""
    global _AGGREGATE_NAMES
    if _AGGREGATE_NAMES is None:
        import duckdb

        rows = duckdb.connect().execute(
            "SELECT DISTINCT upper(function_name) FROM duckdb_functions() "
            "WHERE function_type = 'aggregate'").fetchall()
        _AGGREGATE_NAMES = frozenset(r[0] for r in rows)
    return name in _AGGREGATE_NAMES
