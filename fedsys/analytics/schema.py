"""One type per column across sites, settled before any partial is computed.

Sites store the same column with different physical types (CSV type inference reads
``3`` as BIGINT where a Parquet file holds DOUBLE; one site's INTEGER is another's
BIGINT). Partials of different types do not merge to the union's answer (a sketch hashes
3 and 3.0 apart; a merged INTEGER column overflows with another site's BIGINT maximum),
so the coordinator first asks each site for the types of the columns a query evaluates
(:func:`fetch_column_types`), unifies them as DuckDB types a ``UNION ALL`` of the
sites' tables (:func:`unify_columns`: integers widened, integers and floats as floats,
dates and timestamps as timestamps; a string at one site and a number at another is
refused), and every site casts its columns to the unified types itself
(:func:`site_casts`): it accepts only a plain type name that widens its own type.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fedsys.analytics.planner import QueryPlan, UnsupportedQueryError
from fedsys.silo.job import JobBuilder

__all__ = ["STALE_SCHEMA", "ColumnTypes", "column_types", "common_type", "decode_types",
           "fetch_column_types", "site_casts", "unify_columns"]

ColumnTypes = dict[str, str | None]
"""Lower-case column name -> its DuckDB type at one site (``None``: the site lacks it)."""

STALE_SCHEMA = "changed since the coordinator read it"
"""Part of a site's error when a query's unified types no longer fit its table."""

_TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_]*(?: [A-Z][A-Z0-9_]*)*(?:\(\d{1,2}(?:, ?\d{1,2})?\))?")
_INTEGERS = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                       "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"})
_FLOATS = frozenset({"FLOAT", "DOUBLE"})
_TIMES = frozenset({"DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"})
_MAX_TYPE_CHARS = 200


def _family(type_name: str) -> str:
    """``number``, ``string``, ``time``, or the type itself (unifies only with itself)."""
    if type_name in _INTEGERS or type_name in _FLOATS or type_name.startswith("DECIMAL("):
        return "number"
    if type_name == "VARCHAR":
        return "string"
    if type_name in _TIMES:
        return "time"
    return type_name


@functools.lru_cache(maxsize=256)
def common_type(types: tuple[str, ...]) -> str:
    """The type DuckDB gives a ``UNION ALL`` of columns of ``types`` (plain type names).

    Raises
    ------
    ValueError
        If a type is not a plain type name (``DECIMAL(18,3)`` is; ``INTEGER[]`` is not).
    """
    import duckdb

    for name in types:
        if not _TYPE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a plain DuckDB type name")
    union = " UNION ALL ".join(f"SELECT NULL::{name} AS c" for name in types)
    con = duckdb.connect(config={"threads": 1})
    try:
        return str(con.execute(f"SELECT typeof(c) FROM ({union}) LIMIT 1").fetchall()[0][0])
    finally:
        con.close()


def unify_columns(columns: Sequence[str], schemas: Mapping[str, ColumnTypes]
                  ) -> dict[str, str]:
    """The type every site reads each of ``columns`` as (lower-case names).

    Parameters
    ----------
    columns
        The columns a query evaluates (:attr:`QueryPlan.columns`).
    schemas
        Site -> its :data:`ColumnTypes` of those columns.

    Raises
    ------
    UnsupportedQueryError
        If a column is a string at one site and a number at another (or has two types
        with no common one), or some sites lack it; the message names the column and
        the sites.
    """
    import duckdb

    unified: dict[str, str] = {}
    for column in dict.fromkeys(c.lower() for c in columns):
        present = {s: t[column] for s, t in schemas.items() if t.get(column)}
        if not present:
            continue  # an alias, or a column no site has (each site says so itself)
        absent = sorted(s for s in schemas if s not in present)
        if absent:
            raise UnsupportedQueryError(
                f"column {column} is missing at site{'s' if len(absent) > 1 else ''} "
                f"{', '.join(absent)} (present at {', '.join(sorted(present))}): every "
                f"site's table must have it")
        distinct = sorted(set(present.values()))  # type: ignore[arg-type]
        if len(distinct) == 1:
            unified[column] = distinct[0]
            continue
        families = {_family(t) for t in distinct}
        if len(families) > 1 or families.pop() not in ("number", "time"):
            raise UnsupportedQueryError(_conflict(column, present))
        try:
            unified[column] = common_type(tuple(distinct))
        except (ValueError, duckdb.Error) as exc:
            raise UnsupportedQueryError(
                f"column {column} is {_by_type(present)}: no common type "
                f"({str(exc).splitlines()[0]})") from None
    return unified


def _by_type(present: Mapping[str, str | None]) -> str:
    """``BIGINT at sites s0, s2 and VARCHAR at site s1``: each type and who stores it."""
    sites: dict[str, list[str]] = {}
    for site, type_name in sorted(present.items(), key=lambda p: (str(p[1]), p[0])):
        sites.setdefault(str(type_name), []).append(site)
    return " and ".join(f"{t} at site{'s' if len(s) > 1 else ''} {', '.join(s)}"
                        for t, s in sites.items())


def _conflict(column: str, present: Mapping[str, str | None]) -> str:
    families = {_family(str(t)) for t in present.values()}
    why = ("a string and a number have no common type" if {"string", "number"} <= families
           else "these types have no common type")
    return (f"column {column} is {_by_type(present)}: {why}; store it as one type at "
            f"every site")


def column_types(con: Any, plan: QueryPlan) -> ColumnTypes:
    """This site's types of the columns ``plan`` evaluates, read from its own table."""
    described = {str(row[0]).lower(): str(row[1])
                 for row in con.execute(f"DESCRIBE {plan.table}").fetchall()}
    return {c.lower(): described.get(c.lower()) for c in plan.columns}


def site_casts(con: Any, plan: QueryPlan, types: Mapping[str, Any], site: str
               ) -> dict[str, str]:
    """The casts a site applies to read its columns as the unified ``types``.

    A site never takes SQL from the coordinator: ``types`` must name its own columns
    and plain DuckDB types that widen what it stores (a cast that would lose values is
    refused, as is a column it does not have).

    Returns
    -------
    dict
        The site's column name -> target type, for each column whose type differs.

    Raises
    ------
    ValueError
        If a type is not a plain type name or would narrow the site's column, or the
        column is missing (the message says the schema changed: the coordinator then
        reads it again).
    """
    if not types:
        return {}
    described = {str(row[0]).lower(): (str(row[0]), str(row[1]))
                 for row in con.execute(f"DESCRIBE {plan.table}").fetchall()}
    casts = {}
    for column, target in types.items():
        if not isinstance(column, str) or not isinstance(target, str):
            raise ValueError("unified column types must be names and type names")
        if column.lower() not in described:
            raise ValueError(f"site {site}: table {plan.table} has no column {column}: its "
                             f"schema {STALE_SCHEMA}")
        name, local = described[column.lower()]
        if local == target:
            continue
        if not _TYPE_NAME.fullmatch(target):
            raise ValueError(f"site {site}: {target[:_MAX_TYPE_CHARS]!r} is not a plain "
                             f"DuckDB type name")
        families = {_family(local), _family(target)}
        if len(families) > 1 or families.pop() not in ("number", "time") \
                or common_type((local, target)) != target:
            raise ValueError(f"site {site}: column {name} is {local} here and cannot be "
                             f"read as {target} without loss: its schema {STALE_SCHEMA}")
        casts[name] = target
    return casts


async def fetch_column_types(run_job: Any, dataset: str, plan: QueryPlan,
                             sites: Sequence[str]) -> dict[str, ColumnTypes]:
    """Ask each of ``sites`` for its types of the columns ``plan`` evaluates.

    ``run_job`` runs a job on the sites (as :func:`fedsys.analytics.secure_sum.
    fetch_public_keys` takes it).
    """
    job = JobBuilder("schema")
    ids = [job.site_task(s, "analytics.schema", {"query": plan.sql}, dataset=dataset, site=s)
           for s in sites]
    result = await run_job(job.build(ids))
    return {site: decode_types(result.outputs[site].payload, site) for site in sites}


def decode_types(payload: bytes, site: str) -> ColumnTypes:
    """A site's reported column types, checked (names and type names are short strings).

    Raises
    ------
    ValueError
        If the payload is not a JSON object of column name -> type name or null.
    """
    try:
        body = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or not all(
            isinstance(k, str) and (v is None or (isinstance(v, str)
                                                  and len(v) <= _MAX_TYPE_CHARS))
            for k, v in body.items()):
        raise ValueError(f"site {site} sent malformed column types")
    return {k.lower(): v for k, v in body.items()}
