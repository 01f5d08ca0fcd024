"""Mergeable aggregates: what each site computes, how partials merge, what is released.

Every aggregate of a federated query becomes a few *partial* columns computed by DuckDB
at the sites (SUM and COUNT for AVG; count, mean and M2 for variances; a KLL or HLL
sketch from Apache DataSketches for approximate quantiles and distinct counts), merged
at the coordinator (distinct counts hash canonical values and stay exact while small:
:mod:`fedsys.analytics.distinct`). Summable aggregates also have a *secure* form whose partials are
plain sums, so pairwise masking can hide each site's share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from fedsys.analytics.distinct import HLL_LG_K, distinct_partial, merge_distinct
from fedsys.analytics.encoding import to_json_value

__all__ = ["HLL_LG_K", "KINDS", "KLL_K", "SUMMABLE", "AggSpec", "finalize", "finalize_sums",
           "merge_partials", "partial_sql", "secure_sql", "result_type", "sketch_of",
           "summable_vector"]

KLL_K = 200
"""KLL accuracy parameter: normalized rank error about 1.65% (99% confidence)."""

KINDS = ("count", "sum", "avg", "var_samp", "var_pop", "stddev_samp", "stddev_pop", "min",
         "max", "quantile", "distinct", "histogram")
SUMMABLE = frozenset({"count", "sum", "avg", "var_samp", "var_pop", "stddev_samp",
                      "stddev_pop"})
"""Aggregates with a secure-sum (and DP) form: their partials are plain sums."""


@dataclass(frozen=True)
class AggSpec:
    """One aggregate of a query.

    Parameters
    ----------
    kind
        One of :data:`KINDS`.
    arg
        SQL of its argument as the sites evaluate it (``None``: ``COUNT(*)``).
    name
        The SQL function as the user wrote it (for error messages).
    column
        The column when the argument is a bare column (DP bounds are per column).
    q
        Quantile rank for ``quantile``.
    """

    kind: str
    arg: str | None
    name: str
    column: str | None = None
    q: float | None = None


def partial_sql(spec: AggSpec, clamp: tuple[float, float] | None = None) -> list[str]:
    """The partial columns a site computes for ``spec`` (plain merge)."""
    arg = _clamped(spec.arg, clamp)
    if spec.kind == "count":
        return [f"COUNT({arg or '*'})"]
    if spec.kind in ("sum", "avg"):
        return [f"SUM({arg})", f"COUNT({arg})"]
    if spec.kind.startswith(("var", "stddev")):
        return [f"COUNT({arg})", f"AVG(({arg})::DOUBLE)",
                f"COALESCE(VAR_POP(({arg})::DOUBLE), 0) * COUNT({arg})"]
    if spec.kind in ("min", "max"):
        return [f"{spec.kind.upper()}({arg})"]
    if spec.kind == "quantile":
        return [f"LIST(({arg})::DOUBLE) FILTER (WHERE ({arg}) IS NOT NULL)"]
    if spec.kind == "distinct":
        return [f"LIST(DISTINCT {arg}) FILTER (WHERE ({arg}) IS NOT NULL)"]
    if spec.kind == "histogram":
        return [f"HISTOGRAM({arg})"]
    raise ValueError(f"unknown aggregate kind {spec.kind!r}")


def secure_sql(spec: AggSpec, clamp: tuple[float, float] | None = None) -> list[str]:
    """Partial columns whose merge is a plain sum (for masking and DP).

    Raises
    ------
    ValueError
        If the aggregate has no summable form (MIN, MAX, sketches, HISTOGRAM).
    """
    arg = _clamped(spec.arg, clamp)
    if spec.kind == "count":
        return [f"COUNT({arg or '*'})"]
    if spec.kind in ("sum", "avg"):
        return [f"COALESCE(SUM(({arg})::DOUBLE), 0)", f"COUNT({arg})"]
    if spec.kind in SUMMABLE:
        return [f"COUNT({arg})", f"COALESCE(SUM(({arg})::DOUBLE), 0)",
                f"COALESCE(SUM(({arg})::DOUBLE * ({arg})::DOUBLE), 0)"]
    raise ValueError(f"{spec.name} has no secure-sum form (only COUNT, SUM, AVG, VAR and "
                     f"STDDEV can be summed under masking or differential privacy)")


def _clamped(arg: str | None, clamp: tuple[float, float] | None) -> str | None:
    if arg is None or clamp is None:
        return arg
    return f"LEAST(GREATEST(({arg})::DOUBLE, {clamp[0]!r}), {clamp[1]!r})"


def sketch_of(spec: AggSpec, values: Sequence[Any] | np.ndarray | None) -> bytes:
    """Serialize the site's sketch of ``values`` (KLL for quantiles; for distinct counts
    the exact set of canonical hashes while small, else an HLL sketch of them)."""
    import datasketches as ds

    if spec.kind == "quantile":
        kll = ds.kll_doubles_sketch(KLL_K)
        if values is not None and len(values):
            kll.update(np.ascontiguousarray(values, dtype=np.float64))
        return bytes(kll.serialize())
    return distinct_partial(values)


def merge_partials(spec: AggSpec, partials: Sequence[Sequence[Any]]) -> Any:
    """Merge one aggregate's partial tuples (one per site partition) into its value."""
    kind = spec.kind
    if kind in ("count", "sum", "avg"):
        sums = [_sum(p[i] for p in partials) for i in range(len(partials[0]))]
        return finalize_sums(spec, sums)
    if kind.startswith(("var", "stddev")):
        return _finalize_moments(kind, *_chan([(p[0], p[1], p[2]) for p in partials]))
    if kind in ("min", "max"):
        values = [p[0] for p in partials if p[0] is not None]
        return (min if kind == "min" else max)(values) if values else None
    if kind == "histogram":
        total: dict[Any, int] = {}
        for (pairs,) in partials:
            for key, count in pairs or ():
                total[key] = total.get(key, 0) + int(count)
        return {"key": list(total), "value": list(total.values())} if total else None
    if kind == "distinct":
        return merge_distinct([p[0] for p in partials])
    return finalize(spec, _merge_sketches(kind, [p[0] for p in partials]))


def finalize_sums(spec: AggSpec, sums: Sequence[Any]) -> Any:
    """The value of a summable aggregate from its summed partial columns."""
    kind = spec.kind
    if kind == "count":
        return round(sums[0]) if isinstance(sums[0], float) else sums[0]
    if kind == "sum":
        return sums[0] if sums[1] else None
    if kind == "avg":
        return sums[0] / sums[1] if sums[1] else None
    count, total, squares = (float(s) for s in sums)
    if count <= 0:
        return None
    mean = total / count
    return _finalize_moments(kind, count, mean, max(0.0, squares - count * mean * mean))


def finalize(spec: AggSpec, sketch: Any) -> Any:
    """The estimate of a merged KLL or HLL sketch (no values: quantile NULL, distinct
    count 0, as SQL)."""
    if sketch is None or sketch.is_empty():
        return 0 if spec.kind == "distinct" else None
    if spec.kind == "quantile":
        return float(sketch.get_quantile(spec.q))
    return round(sketch.get_estimate())


def result_type(spec: AggSpec, site_type: str | None) -> str:
    """DuckDB type of the merged value (``site_type``: the site's partial type)."""
    if spec.kind in ("count", "distinct"):
        return "BIGINT"
    if spec.kind == "sum":
        return "HUGEINT" if site_type in ("HUGEINT", "BIGINT", "INTEGER") else "DOUBLE"
    if spec.kind in ("min", "max") and site_type:
        return site_type
    if spec.kind == "histogram" and site_type:
        return site_type.replace("UBIGINT", "BIGINT")
    return "DOUBLE"


def _sum(values: Any) -> Any:
    total: Any = 0
    for value in values:
        if value is not None:
            total += value
    return total


def _chan(parts: Sequence[tuple[Any, Any, Any]]) -> tuple[float, float, float]:
    """Count, mean and M2 of the union (Chan, Golub, LeVeque's parallel update)."""
    count, mean, m2 = 0.0, 0.0, 0.0
    for n_b, mean_b, m2_b in parts:
        if not n_b:
            continue
        n_b, mean_b, m2_b = float(n_b), float(mean_b), float(m2_b)
        total = count + n_b
        delta = mean_b - mean
        mean += delta * n_b / total
        m2 += m2_b + delta * delta * count * n_b / total
        count = total
    return count, mean, m2


def _finalize_moments(kind: str, count: float, mean: float, m2: float) -> float | None:
    del mean
    if kind.endswith("pop"):
        variance = m2 / count if count > 0 else None
    else:
        variance = m2 / (count - 1) if count > 1 else None
    if variance is None:
        return None
    return math.sqrt(variance) if kind.startswith("stddev") else variance


def _merge_sketches(kind: str, blobs: Sequence[bytes | None]) -> Any:
    import datasketches as ds

    del kind  # quantiles: the one sketch kind merged here
    merged = ds.kll_doubles_sketch(KLL_K)
    for blob in blobs:
        if blob:
            merged.merge(ds.kll_doubles_sketch.deserialize(blob))
    return merged


def summable_vector(plan: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                    domains: Sequence[Sequence[Any]]) -> np.ndarray:
    """The summable partials laid out over every group of the declared key domains.

    Raises
    ------
    ValueError
        If the site holds a group value that is not in its key's declared domain.
    """
    nkeys = len(plan.keys)
    groups = list(product(*[[to_json_value(v) for v in d] for d in domains])) or [()]
    index = {g: i for i, g in enumerate(groups)}
    width = len(columns) - nkeys
    vector = np.zeros(len(groups) * width, dtype=np.float64)
    for row in rows:
        key = tuple(to_json_value(v) for v in row[:nkeys])
        if key not in index:
            raise ValueError(f"group {key} is not in the declared key values of "
                             f"{list(plan.keys)}")
        start = index[key] * width
        vector[start:start + width] = [float(v or 0) for v in row[nkeys:]]
    return vector
