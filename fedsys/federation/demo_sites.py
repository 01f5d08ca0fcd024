"""The demo sites' own rules: a ``site.yaml`` per sample hospital, different at each.

A standing federation's sites hold their rules themselves (:mod:`fedsys.silo.site_rules`);
the demo writes one into each site's folder so ``fedsys silo local`` shows them at work.
Each hospital's ``visits`` table gets two private columns besides the sample ones: a
``patient_id`` no site exposes, and a household ``income`` every site releases only with
differential privacy, from its own budget (per analyst and in total) kept in its own
ledger. The smallest group released, the budgets and the models allowed differ from
site to site, as they would between hospitals.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fedsys.analytics.sample_data import DIAGNOSES

__all__ = [
    "INCOME_BOUNDS",
    "SiteFiles",
    "add_private_columns",
    "demo_site_rules",
    "write_site_yaml",
]

INCOME_BOUNDS = (0.0, 300_000.0)
"""Clamping bounds of the DP-only ``income`` column at every demo site."""

_MIN_GROUP = (10, 25, 15, 20)
"""Smallest group each demo site releases (cycled): the children's hospital, with few
cardiac stays, suppresses that group."""

_BUDGETS = ((4.0, 2.0), (3.0, 1.0), (3.0, 1.5), (2.0, 1.0))
"""(total, per analyst) epsilon of each demo site's DP-only data (cycled)."""


@dataclass(frozen=True)
class SiteFiles:
    """Where one site keeps its rules, its budget ledger and its audit log."""

    rules: Path
    ledger: Path
    audit: Path


def add_private_columns(table: Path, site_index: int, seed: int = 0) -> None:
    """Add ``patient_id`` (hidden) and ``income`` (DP-only) to a sample ``visits`` table.

    Drawn from ``[seed, site_index]``, written back in the table's own format (CSV or
    Parquet) through a temporary file and an atomic rename.
    """
    import duckdb

    con = duckdb.connect()
    try:
        quoted = str(table).replace("'", "''")
        columns = con.execute(f"SELECT * FROM '{quoted}'").fetchnumpy()
        rows = len(next(iter(columns.values())))
        rng = np.random.default_rng([seed, site_index, 17])
        age = np.asarray(columns["age"], dtype=float)
        working = np.where((age >= 25) & (age < 65), 1.0, 0.6)  # retired, young: less
        income = np.clip(rng.lognormal(np.log(42_000.0), 0.6, rows) * working, *INCOME_BOUNDS)
        columns = {
            **{k: np.asarray(v) for k, v in columns.items()},
            "patient_id": np.asarray([f"p{site_index}-{i:06d}" for i in range(rows)]),
            "income": np.round(income, 2),
        }
        con.register("visits", columns)
        fmt = "PARQUET" if table.suffix.lower() in (".parquet", ".pq") else "CSV, HEADER"
        temp = table.with_name(f".{table.name}.tmp")
        quoted_temp = str(temp).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM visits) TO '{quoted_temp}' (FORMAT {fmt})")
    finally:
        con.close()
    os.replace(temp, table)


def demo_site_rules(
    index: int,
    name: str,
    table: Path,
    dataset: str,
    training: str,
    shard: Path,
    models: tuple[str, ...] = ("mlp", "logreg"),
) -> dict[str, Any]:
    """Site ``index``'s ``site.yaml`` (as a mapping): its table, rules, budget, models.

    Parameters
    ----------
    index, name
        The site's place in the federation and its name.
    table
        Its ``visits`` table (with the private columns).
    dataset
        The name queries address the tables by.
    training, shard
        The training dataset's name and the site's ``.npz`` of it.
    models
        Built-in models the site trains (every other one is refused).
    """
    total, per_analyst = _BUDGETS[index % len(_BUDGETS)]
    return {
        "name": name,
        "accept": ["analytics", "training"],
        "sql": {
            "dataset": dataset,
            "min_group_size": _MIN_GROUP[index % len(_MIN_GROUP)],
            "tables": {
                "visits": {
                    "path": str(table.resolve()),
                    "columns": ["age", "sex", "diagnosis", "length_of_stay", "cost", "income"],
                    "dp_columns": ["income"],
                    "bounds": {"income": list(INCOME_BOUNDS)},
                    "domains": {"sex": ["F", "M"], "diagnosis": list(DIAGNOSES)},
                }
            },
        },
        "privacy": {
            "budget_epsilon": total,
            "analyst_epsilon": per_analyst,
            "max_query_epsilon": 1.0,
        },
        "training": {
            "datasets": {training: {"path": str(shard.resolve())}},
            "models": list(models),
        },
    }


def write_site_yaml(folder: Path, rules: Mapping[str, Any]) -> SiteFiles:
    """Write a site's ``site.yaml`` into its ``folder``; where its files will be."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "site.yaml"
    header = "# this site's own rules (generated by the standing demo); they never leave the site\n"
    path.write_text(header + yaml.safe_dump(dict(rules), sort_keys=False))
    privacy = dict(rules.get("privacy") or {})
    return SiteFiles(
        path,
        folder / str(privacy.get("ledger", "site_ledger.json")),
        folder / str(rules.get("audit_log", "site_audit.jsonl")),
    )
