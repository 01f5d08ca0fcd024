"""Site tasks of federated analytics, registered by name on every analytics site.

A site never runs SQL it is sent: it plans the *query* itself
(:func:`~fedsys.analytics.planner.plan_query`), so it only ever computes mergeable
partial aggregates over its own tables. Start sites with ``--tasks
fedsys.analytics.tasks``. A site with rules (``site.yaml``) checks each task first
(:mod:`fedsys.analytics.site_policy`) and hands it its policy under ``site_policy``:
the smallest group it releases, or the noise it adds itself.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedsys.analytics import masking
from fedsys.analytics.aggregates import sketch_of, summable_vector
from fedsys.analytics.catalog import site_database, table_rows
from fedsys.analytics.encoding import encode_table
from fedsys.analytics.planner import QueryPlan, plan_query, slot_of
from fedsys.analytics.schema import column_types, site_casts
from fedsys.analytics.site_policy import (
    dp_partial_rows,
    in_domains,
    site_noise,
    suppress_small_groups,
)
from fedsys.silo.gate import POLICY_KEY
from fedsys.silo.task_registry import Output, TaskContext, task

__all__ = ["site_keys"]

_SKETCHED = ("quantile", "distinct")
"""Aggregates whose partial is a sketch built from the listed values."""


@functools.lru_cache(maxsize=256)
def _plan(query: str) -> QueryPlan:
    """The site's own plan of a query (parsed once per worker, not once per partition)."""
    return plan_query(query)


def _catalog(ctx: TaskContext) -> Path:
    if ctx.data_path is None:
        raise ValueError(f"task {ctx.task_id} needs an analytics dataset (a table catalog)")
    return ctx.data_path


def _clamps(params: Mapping[str, Any]) -> dict[int, tuple[float, float]]:
    return {int(k): (float(v[0]), float(v[1])) for k, v in params.get("clamps", {}).items()}


def _row_range(catalog: Path, plan: QueryPlan, part: int, parts: int) -> tuple[int, int] | None:
    if parts <= 1:
        return None
    rows = table_rows(catalog, plan.table)
    return rows * part // parts, rows * (part + 1) // parts


@task("analytics.partial", kind="analytics")
def partial(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]) -> Output:
    """Partial aggregates of ``query`` over rows ``part`` of ``parts`` of this site's table.

    Params: ``query``, ``part``, ``parts``, ``secure`` (summable partials only, for DP),
    ``clamps`` (aggregate slot -> [lo, hi]), ``types`` (column -> the type every site
    reads it as, see :mod:`fedsys.analytics.schema`); from the site's gate,
    ``site_policy``: ``min_group_size`` (smaller groups are left out) or ``dp`` (the site
    noises its partials over its own domains, see
    :func:`~fedsys.analytics.site_policy.dp_partial_rows`).
    """
    catalog = _catalog(ctx)
    plan = _plan(str(params["query"]))
    policy = params.get(POLICY_KEY) or {}
    con = site_database(catalog)
    casts = site_casts(con, plan, params.get("types") or {}, ctx.site)
    if "dp" in policy:
        columns, types, rows = dp_partial_rows(con, plan, policy["dp"], casts)
        return Output(encode_table(columns, types, rows),
                      {"rows": len(rows), "site_epsilon": policy["dp"]["epsilon"]})
    part, parts = int(params.get("part", 0)), int(params.get("parts", 1))
    secure = bool(params.get("secure", False))
    sql = plan.site_sql(_row_range(catalog, plan, part, parts), secure=secure,
                        clamps=_clamps(params), casts=casts)
    columns, types, rows = _partial_rows(con, plan, sql, secure)
    rows = suppress_small_groups(con, plan, rows, int(policy.get("min_group_size", 1)))
    return Output(encode_table(columns, types, rows), {"rows": len(rows)})


@task("analytics.schema")
def schema(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]) -> Output:
    """This site's types of the columns ``query`` evaluates (JSON: column -> type or null).

    The coordinator unifies them across sites before any partial is computed.
    """
    plan = _plan(str(params["query"]))
    types = column_types(site_database(_catalog(ctx)), plan)
    return Output(json.dumps(types).encode(), {"columns": len(types)})


def _partial_rows(con: Any, plan: QueryPlan, sql: str, secure: bool
                  ) -> tuple[list[str], list[str], list[list[Any]]]:
    """Columns, types and rows of a partial query, its value lists replaced by sketches.

    The lists a sketch is built from are fetched as NumPy arrays (a sketch takes a whole
    array at once) from a temporary copy of the result, the other columns as Python
    values: converting every listed value to a Python object cost more than the scan.
    """
    if secure or not any(spec.kind in _SKETCHED for spec in plan.aggregates):
        cursor = con.execute(sql)
        return ([d[0] for d in cursor.description], [str(d[1]) for d in cursor.description],
                [list(r) for r in cursor.fetchall()])
    con.execute(f"CREATE OR REPLACE TEMP TABLE _fedsys_partial AS {sql}")
    try:
        cursor = con.execute("SELECT * FROM _fedsys_partial LIMIT 0")
        columns = [d[0] for d in cursor.description]
        types = [str(d[1]) for d in cursor.description]
        specs = {i: plan.aggregates[slot_of(c)] for i, c in enumerate(columns)
                 if c.startswith("_a")}
        sketched = {i: spec for i, spec in specs.items() if spec.kind in _SKETCHED}
        plain = [c for i, c in enumerate(columns) if i not in sketched]
        rows = [list(r)[:len(plain)] for r in con.execute(
            f"SELECT {', '.join(plain) or 'NULL'} FROM _fedsys_partial").fetchall()]
        lists = con.execute(f"SELECT {', '.join(columns[i] for i in sketched)} "
                            f"FROM _fedsys_partial").fetchnumpy()
    finally:
        con.execute("DROP TABLE IF EXISTS _fedsys_partial")
    for i, spec in sketched.items():
        missing = np.ma.getmaskarray(lists[columns[i]])
        values = np.ma.getdata(lists[columns[i]])
        for row_index, row in enumerate(rows):
            row.insert(i, sketch_of(spec, None if missing[row_index] else values[row_index]))
        types[i] = "BLOB"
    return columns, types, rows


def site_keys(ctx: TaskContext) -> masking.KeyPair:
    """This site's long-term X25519 key pair, created once beside its catalog (mode 0600).

    The private key never leaves the site; per-query masks come from it through HKDF
    with the query id, so one key pair serves every query.
    """
    folder = _catalog(ctx).parent / ".fedsys-keys"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{ctx.site}.x25519"
    if not path.exists():
        pair = masking.KeyPair.generate()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker of this site made it first
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pair.private)
                f.flush()
                os.fsync(f.fileno())
    private = path.read_bytes()
    if len(private) != 32:
        raise ValueError(f"site key {path} is damaged")
    return masking.KeyPair.from_private(private)


@task("analytics.public_key")
def public_key(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]) -> Output:
    """This site's public key (for the pairwise masks of secure sums)."""
    return Output(site_keys(ctx).public, {"site": ctx.site})


@task("analytics.masked_partial")
def masked_partial(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]
                   ) -> Output:
    """This site's summable partials of ``query``, masked pairwise with every peer.

    Params: ``query``, ``clamps``, ``domains`` (declared key values), ``context`` (hex
    query id binding the masks) and ``peers`` (site -> public key hex, this site included).
    """
    plan = _plan(str(params["query"]))
    policy = params.get(POLICY_KEY) or {}
    dp = policy.get("dp")
    clamps = _clamps(dp if dp is not None else params)  # DP-only data: the site's bounds
    con = site_database(_catalog(ctx))
    cursor = con.execute(plan.site_sql(secure=True, clamps=clamps))
    columns = [d[0] for d in cursor.description]
    domains = params.get("domains", [])
    if dp is not None:  # the site's noise, over the layout every site shares, then masks
        rows = in_domains(plan, cursor.fetchall(), domains)
        vector = summable_vector(plan, columns, rows, domains)
        width = len(columns) - len(plan.keys)
        vector = site_noise(plan, columns[len(plan.keys):], vector.reshape(-1, width),
                            dp).ravel()
    else:
        minimum = int(policy.get("min_group_size", 1))
        rows = suppress_small_groups(con, plan, cursor.fetchall(), minimum)  # count as zeros
        vector = summable_vector(plan, columns, rows, domains)
    pair = site_keys(ctx)
    peers = {site: bytes.fromhex(key) for site, key in params["peers"].items()}
    if peers.get(ctx.site) != pair.public:
        raise ValueError(f"site {ctx.site}: the coordinator's key directory holds a stale key")
    masked = masking.mask_vector(masking.encode_fixed(vector), ctx.site, pair.private, peers,
                                 bytes.fromhex(str(params["context"])))
    return Output(masked.astype("<u8").tobytes(), {"site": ctx.site, "length": len(vector)})


@task("analytics.reveal_seeds")
def reveal_seeds(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]
                 ) -> Output:
    """The pair seeds this site shares with dropped peers for one query (recovery round).

    Params: ``context`` and ``dropped`` (site -> public key hex). Output: 32 bytes per
    dropped peer, in sorted site order.
    """
    pair = site_keys(ctx)
    context = bytes.fromhex(str(params["context"]))
    dropped = sorted(params["dropped"].items())
    if any(site == ctx.site for site, _ in dropped):
        raise ValueError(f"site {ctx.site} is listed as dropped but is running")
    seeds = b"".join(masking.pair_seed(pair.private, bytes.fromhex(key), context)
                     for _, key in dropped)
    return Output(seeds, {"site": ctx.site, "dropped": [s for s, _ in dropped]})
