"""Run federated queries on a silo coordinator: plan, push down, merge, finish in DuckDB.

First the types of the columns the query reads are unified across sites
(:mod:`fedsys.analytics.schema`). Exact queries run as one silo job of ``parts``
partial-aggregate tasks per site (Sol binds them early and pipelines them; the baseline
asks for each one). Differentially
private queries are charged to the ledger first, then the sites compute clamped
summable partials and the coordinator adds OpenDP noise to the merged totals. Secure
queries sum pairwise-masked vectors, so the coordinator learns only totals; sites that
drop out after the key exchange are tolerated up to ``max_dropouts`` by a recovery round
in which the survivors reveal the seeds they share with the dropped sites.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any

import numpy as np

from fedsys.analytics import secure_sum
from fedsys.analytics.aggregates import (
    SUMMABLE,
    finalize_sums,
    merge_partials,
    result_type,
    summable_vector,
)
from fedsys.analytics.dp import NoisyMeasure, PrivacySpec, calibrate
from fedsys.analytics.encoding import decode_table, to_json_value
from fedsys.analytics.ledger import PrivacyLedger
from fedsys.analytics.planner import (
    MERGED_TABLE,
    QueryPlan,
    UnsupportedQueryError,
    plan_query,
    slot_of,
)
from fedsys.analytics.schema import STALE_SCHEMA, ColumnTypes, fetch_column_types, unify_columns
from fedsys.analytics.secure_sum import job_bytes
from fedsys.silo.coordinator import JobResult, SiloCoordinator
from fedsys.silo.job import Job, JobBuilder
from fedsys.silo.mode import EngineMode, JobFailedError

__all__ = ["FederatedQueryEngine", "QueryOptions", "QueryResult", "check_options"]


@dataclass(frozen=True)
class QueryOptions:
    """How one query runs.

    Parameters
    ----------
    privacy
        Differential privacy of the result (``None``: exact).
    secure
        Sum the sites' partials under pairwise masking.
    domains
        Declared values of GROUP BY keys (by key column), needed by DP and secure sums:
        every site then reports every group, so the set of groups reveals nothing.
    parts
        Partial-aggregate tasks per site (exact queries).
    """

    privacy: PrivacySpec | None = None
    secure: bool = False
    domains: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    parts: int = 1


@dataclass(frozen=True)
class QueryResult:
    """A query's answer and what it cost.

    Attributes
    ----------
    columns, rows
        The result table.
    duration_s
        Wall time of the whole query: planning, every job, merging and finishing.
    bytes_moved
        Payload bytes the sites sent to the coordinator.
    noise
        ``column -> (mechanism, scale)`` for each noisy aggregate (DP only).
    dropped
        Sites whose share was lost and recovered around (secure sums).
    """

    columns: list[str]
    rows: list[tuple[Any, ...]]
    duration_s: float
    bytes_moved: int
    noise: dict[str, tuple[str, float]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    measures: dict[int, list[NoisyMeasure]] = field(default_factory=dict)


class FederatedQueryEngine:
    """Federated SQL over the sites connected to a coordinator.

    Parameters
    ----------
    coordinator
        A started coordinator whose sites hold ``dataset`` (a table catalog each).
    dataset
        The dataset name the sites were started with (``--data NAME=catalog.json``).
    mode
        Sol (default) or baseline engine mode.
    ledger
        The querier's own privacy budget ledger, charged before a DP query runs;
        ``None``: no charge here (a standing federation's sites charge their own
        ledgers for their DP-only data, and they are the authority on budgets).
    max_dropouts
        Sites a secure sum may lose and still answer.
    job_timeout_s
        Deadline of each job.
    """

    def __init__(self, coordinator: SiloCoordinator, dataset: str = "data",
                 mode: EngineMode | None = None, ledger: PrivacyLedger | None = None,
                 max_dropouts: int = 1, job_timeout_s: float = 300.0) -> None:
        self.coordinator = coordinator
        self.dataset = dataset
        self.mode = mode or EngineMode.sol()
        self.ledger = ledger
        self.max_dropouts = max_dropouts
        self.job_timeout_s = job_timeout_s
        self.keys_: dict[str, bytes] = {}
        self.schemas_: dict[tuple[str, str], ColumnTypes] = {}

    def sites(self) -> list[str]:
        """Connected sites holding the dataset, sorted."""
        return sorted(v.name for v in self.coordinator.live_sites()
                      if self.dataset in v.datasets)

    async def run(self, sql: str, options: QueryOptions | None = None) -> QueryResult:
        """Answer ``sql`` over the union of the sites' tables.

        Raises
        ------
        UnsupportedQueryError
            If the query (or its DP/secure variant) has no mergeable form.
        BudgetExceededError
            If a DP query would overspend the dataset's budget (no site runs it).
        JobFailedError
            If a site fails the query (its error is in the message).
        """
        started = time.perf_counter()
        options = options or QueryOptions()
        plan = plan_query(sql)
        sites = self.sites()
        if not sites:
            raise JobFailedError(f"no connected site holds dataset {self.dataset!r}")
        types = await self.column_types(plan, sites)
        summable = options.privacy is not None or options.secure
        try:
            if summable:
                result = await self._run_summable(plan, options, sites, types)
            else:
                result = await self._run_exact(plan, options, sites, types)
        except JobFailedError as exc:
            self._forget_types(plan, sites)  # a site may have restarted with other files
            if summable or STALE_SCHEMA not in str(exc):
                raise  # a DP query is charged: it never silently runs twice
            result = await self._run_exact(plan, options, sites,
                                           await self.column_types(plan, sites))
        return replace(result, duration_s=time.perf_counter() - started)

    async def column_types(self, plan: QueryPlan, sites: Sequence[str]) -> dict[str, str]:
        """The type every site reads each column of ``plan`` as (unified across sites).

        A site's types are asked once per table and column, then kept (a failed query
        forgets them).

        Raises
        ------
        UnsupportedQueryError
            If a column is a string at one site and a number at another, or some sites
            lack it (see :func:`fedsys.analytics.schema.unify_columns`).
        """
        if not plan.columns:
            return {}
        wanted = [c.lower() for c in plan.columns]
        missing = [s for s in sites
                   if any(c not in self.schemas_.get((s, plan.table), {}) for c in wanted)]
        if missing:
            fetched = await fetch_column_types(self._run_job, self.dataset, plan, missing)
            for site, types in fetched.items():
                self.schemas_.setdefault((site, plan.table), {}).update(types)
        return unify_columns(plan.columns, {s: self.schemas_[(s, plan.table)] for s in sites})

    def _forget_types(self, plan: QueryPlan, sites: Sequence[str]) -> None:
        for site in sites:
            self.schemas_.pop((site, plan.table), None)

    # ------------------------------------------------------------------ exact

    async def _run_exact(self, plan: QueryPlan, options: QueryOptions, sites: list[str],
                         types: Mapping[str, str]) -> QueryResult:
        job = JobBuilder("query")
        ids = [job.site_task(f"{site}/{part}", "analytics.partial",
                             {"query": plan.sql, "part": part, "parts": options.parts,
                              "types": dict(types)},
                             dataset=self.dataset, site=site)
               for site in sites for part in range(max(1, options.parts))]
        result = await self._run_job(job.build(ids))
        tables = [decode_table(result.outputs[i].payload) for i in ids]
        nkeys = len(plan.keys)
        groups: dict[tuple[Any, ...], list[list[Any]]] = {}
        key_types: list[str] = []
        agg_types: dict[int, str] = {}
        for columns, types, rows in tables:
            key_types = types[:nkeys]
            for column, typ in zip(columns[nkeys:], types[nkeys:], strict=True):
                agg_types.setdefault(slot_of(column), typ)
            for row in rows:
                groups.setdefault(tuple(_hashable(v) for v in row[:nkeys]), []).append(row)
        slots = _slot_columns(tables[0][0], nkeys)
        sources = plan.column_sources()
        merged = []
        for key, rows in groups.items():
            values = [merge_partials(spec, [[row[c] for c in slots[sources[i]]] for row in rows])
                      for i, spec in enumerate(plan.aggregates)]
            merged.append([*key, *values])
        types = [*key_types, *(result_type(s, agg_types.get(sources[i]))
                               for i, s in enumerate(plan.aggregates))]
        columns, rows = finish(plan, types, merged)
        return QueryResult(columns, rows, result.duration_s, job_bytes(result))

    # -------------------------------------------------------------- summable

    async def _run_summable(self, plan: QueryPlan, options: QueryOptions, sites: list[str],
                            types: Mapping[str, str]) -> QueryResult:
        domains = check_options(plan, options)
        # off the loop: OpenDP's first import takes seconds, a ledger charge locks and
        # syncs a file, and the sites' pings must be heard meanwhile
        clamps, measures = await asyncio.to_thread(calibrate, plan.aggregates, options.privacy)
        if options.privacy is not None and self.ledger is not None:
            await asyncio.to_thread(self.ledger.charge, self.dataset, options.privacy.epsilon,
                                    options.privacy.delta, plan.sql)
        if options.secure:
            keys = await self.public_keys(sites)
            summed = await secure_sum.secure_sums(self._run_job, self.dataset, plan, clamps,
                                                  domains, sites, keys, self.max_dropouts,
                                                  _wire_privacy(options.privacy))
            sums, duration_s = summed.total, summed.duration_s
            moved, dropped = summed.bytes_moved, summed.dropped
        else:
            sums, duration_s, moved = await self._plain_sums(plan, clamps, domains, sites,
                                                             types, options.privacy)
            dropped = []
        groups = list(product(*[[to_json_value(v) for v in d] for d in domains])) or [()]
        widths = [3 if s.kind.startswith(("var", "stddev")) else (1 if s.kind == "count" else 2)
                  for s in plan.aggregates]
        width = sum(widths)
        merged = []
        for g, key in enumerate(groups):
            row = sums[g * width:(g + 1) * width]
            values, offset = [], 0
            for slot, (spec, w) in enumerate(zip(plan.aggregates, widths, strict=True)):
                part = list(row[offset:offset + w])
                offset += w
                for j, noise in enumerate(measures.get(slot, [])):
                    part[j] = noise(part[j])
                if spec.kind == "sum" and slot in measures:
                    part[1] = 1  # a noisy SUM is released even for an empty group
                values.append(finalize_sums(spec, part))
            merged.append([*key, *values])
        types = [*_key_types(domains), *("DOUBLE" for _ in plan.aggregates)]
        columns, rows = finish(plan, types, merged)
        noise = {_label(plan.aggregates[slot]): (m[0].mechanism, m[0].scale)
                 for slot, m in measures.items()}
        return QueryResult(columns, rows, duration_s, moved, noise, dropped, measures)

    async def _plain_sums(self, plan: QueryPlan, clamps: Mapping[int, tuple[float, float]],
                          domains: list[list[Any]], sites: list[str],
                          types: Mapping[str, str], privacy: PrivacySpec | None = None,
                          ) -> tuple[np.ndarray, float, int]:
        job = JobBuilder("query-dp")
        params: dict[str, Any] = {"query": plan.sql, "secure": True, "types": dict(types),
                                  "clamps": {str(k): list(v) for k, v in clamps.items()}}
        if privacy is not None:
            params["privacy"] = _wire_privacy(privacy)
        ids = [job.site_task(site, "analytics.partial", params, dataset=self.dataset,
                             site=site) for site in sites]
        result = await self._run_job(job.build(ids))
        total: np.ndarray | None = None
        for i in ids:
            columns, _, rows = decode_table(result.outputs[i].payload)
            vector = summable_vector(plan, columns, rows, domains)
            total = vector if total is None else total + vector
        assert total is not None
        return total, result.duration_s, job_bytes(result)

    async def public_keys(self, sites: Sequence[str]) -> dict[str, bytes]:
        """The sites' X25519 public keys (asked once per site, then kept)."""
        missing = [s for s in sites if s not in self.keys_]
        if missing:
            self.keys_.update(
                await secure_sum.fetch_public_keys(self._run_job, self.dataset, missing))
        return {s: self.keys_[s] for s in sites}

    async def _run_job(self, job: Job) -> JobResult:
        """Run ``job`` on the coordinator in this engine's mode, within its deadline."""
        return await self.coordinator.run_job(job, self.mode, self.job_timeout_s)


def check_options(plan: QueryPlan, options: QueryOptions) -> list[list[Any]]:
    """Refuse what a DP or secure query cannot do, before anything runs; the key domains.

    Raises
    ------
    UnsupportedQueryError
        If an aggregate has no summable (secure) or noisy (DP) form, or a GROUP BY key
        lacks declared values.
    ValueError
        If a DP sum lacks declared bounds.
    """
    if options.privacy is None and not options.secure:
        return []
    for spec in plan.aggregates:
        if spec.kind not in SUMMABLE:
            raise UnsupportedQueryError(
                f"{spec.name} has no form under differential privacy or secure summation"
                f" (COUNT, SUM, AVG, VAR, STDDEV only)")
        if options.privacy is not None and spec.kind not in ("count", "sum", "avg"):
            raise UnsupportedQueryError(f"{spec.name} is not supported under differential "
                                        f"privacy (COUNT, SUM, AVG)")
        if options.privacy is not None and spec.kind != "count":
            if spec.column is None:
                raise UnsupportedQueryError(f"{spec.name}({spec.arg}): differential privacy "
                                            f"needs a bare column with declared bounds")
            options.privacy.bound_of(spec.column)
    return _domains(plan, options)


def finish(plan: QueryPlan, types: Sequence[str], merged: Sequence[Sequence[Any]]
           ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Evaluate the rest of the query (expressions, HAVING, ORDER BY, LIMIT) in DuckDB."""
    nkeys = len(plan.keys)
    names = [f"_k{i}" for i in range(nkeys)] + [f"_a{i}" for i in range(len(types) - nkeys)]
    con = _finishing_database().cursor()  # a connection of its own: its temp table too
    con.execute(f"CREATE TEMP TABLE {MERGED_TABLE} ("
                + ", ".join(f"{n} {t}" for n, t in zip(names, types, strict=True)) + ")")
    if merged:
        marks = ", ".join("?" for _ in names)
        con.executemany(f"INSERT INTO {MERGED_TABLE} VALUES ({marks})",
                        [list(row) for row in merged])
    try:
        cursor = con.execute(plan.final_sql)
        return [d[0] for d in cursor.description], cursor.fetchall()
    finally:
        con.close()


_FINISHING: Any = None


def _finishing_database() -> Any:
    """One in-memory DuckDB per process for finishing queries (opening one costs)."""
    global _FINISHING
    if _FINISHING is None:
        import duckdb

        _FINISHING = duckdb.connect(config={"threads": 1})
    return _FINISHING


def _slot_columns(columns: Sequence[str], nkeys: int) -> dict[int, list[int]]:
    slots: dict[int, list[int]] = {}
    for index, column in enumerate(columns[nkeys:], start=nkeys):
        slots.setdefault(slot_of(column), []).append(index)
    return slots


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _domains(plan: QueryPlan, options: QueryOptions) -> list[list[Any]]:
    domains = []
    for key, column in zip(plan.keys, plan.key_columns, strict=True):
        if column is None or column not in options.domains:
            raise UnsupportedQueryError(
                f"GROUP BY {key} under differential privacy or secure summation needs the "
                f"key's declared values (domains: {{{column or key}: [...]}})")
        domains.append(list(options.domains[column]))
    return domains


def _wire_privacy(privacy: PrivacySpec | None) -> dict[str, Any] | None:
    """A query's privacy as task parameters: a site noises its DP-only data itself, at
    this epsilon, charged to its own ledger (its bounds and domains are its own)."""
    if privacy is None:
        return None
    return {"epsilon": privacy.epsilon, "delta": privacy.delta, "mechanism": privacy.mechanism}


def _key_types(domains: Sequence[Sequence[Any]]) -> list[str]:
    types = []
    for domain in domains:
        values = [v for v in domain if v is not None]
        if values and all(isinstance(v, bool) for v in values):
            types.append("BOOLEAN")
        elif values and all(isinstance(v, int) for v in values):
            types.append("BIGINT")
        elif values and all(isinstance(v, (int, float)) for v in values):
            types.append("DOUBLE")
        else:
            types.append("VARCHAR")
    return types


def _label(spec: Any) -> str:
    return f"{spec.name}({spec.arg or '*'})"
