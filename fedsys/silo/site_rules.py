"""``site.yaml``: what a site exposes and the rules it enforces, read only at the site.

The file never leaves the site. It names the site's tables (CSV or Parquet, queried
through DuckDB) and training datasets, which columns of each table may be read, the
smallest group an exact aggregate may release, which columns or tables are released
only with differential privacy (with the site's own budget, clamping bounds and key
domains), whether secure aggregation is required, and which job kinds and models the
site runs. :mod:`fedsys.silo.gate` checks every task against these rules before it runs.

A site started without a ``site.yaml`` runs whatever its coordinator sends (today's
behaviour): that is for trusted, local deployments only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from fedsys.config.loader import ConfigError, format_validation_error, parse_yaml
from fedsys.config.settings import Settings
from fedsys.config.workload import DatasetConfig
from fedsys.metrics.writers import atomic_write_text

__all__ = [
    "JOB_KINDS",
    "PrivacyRules",
    "SiteRules",
    "SqlRules",
    "TableRules",
    "TrainingDataset",
    "TrainingRules",
    "load_site_rules",
]

JOB_KINDS = ("analytics", "training", "histogram", "test")
"""Job kinds a site may accept (each registered task belongs to one)."""

_TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


class TableRules(Settings):
    """One table the site exposes, and who may read what of it."""

    path: str = Field(description="the table's file: .csv or .parquet (relative to site.yaml)")
    columns: tuple[str, ...] | None = Field(
        None, description="columns a query may read (omitted: every column)"
    )
    dp_only: bool = Field(
        False, description="the whole table is released only with differential privacy"
    )
    dp_columns: tuple[str, ...] = Field(
        (), description="columns released only with differential privacy"
    )
    min_group_size: int | None = Field(
        None,
        ge=1,
        description="smallest group an exact aggregate releases (default: sql.min_group_size)",
    )
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="clamping bounds [lo, hi] of each summed column under differential privacy",
    )
    domains: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="declared values of each GROUP BY key under differential privacy",
    )

    @field_validator("path")
    @classmethod
    def _format(cls, path: str) -> str:
        if Path(path).suffix.lower() not in _TABLE_SUFFIXES:
            raise ValueError(f"{path} is not a .csv or .parquet file")
        return path

    @model_validator(mode="after")
    def _consistent(self) -> TableRules:
        for lo, hi in self.bounds.values():
            if not lo <= hi:
                raise ValueError(f"bounds [{lo}, {hi}]: lo is above hi")
        if self.columns is not None:
            hidden = [
                c for c in (*self.dp_columns, *self.bounds, *self.domains) if c not in self.columns
            ]
            if hidden:
                raise ValueError(
                    f"columns {sorted(set(hidden))} have rules but are not in the readable columns"
                )
        return self

    def readable(self, column: str) -> bool:
        """Whether a query may read ``column`` at all."""
        return self.columns is None or column in self.columns

    def needs_dp(self, column: str) -> bool:
        """Whether ``column`` may only be released with differential privacy."""
        return self.dp_only or column in self.dp_columns


class SqlRules(Settings):
    """The tables a site exposes to federated SQL."""

    dataset: str = Field(
        "data", min_length=1, description="the dataset name queries address these tables by"
    )
    tables: dict[str, TableRules] = Field(
        default_factory=dict, description="exposed tables by name"
    )
    min_group_size: int = Field(
        1,
        ge=1,
        description="smallest group an exact aggregate "
        "releases; smaller groups are suppressed at the site",
    )
    secure_required: bool = Field(
        False, description="only answer with pairwise-masked (secure) sums"
    )

    @field_validator("tables")
    @classmethod
    def _names(cls, tables: dict[str, TableRules]) -> dict[str, TableRules]:
        for name in tables:
            if not name.isidentifier():
                raise ValueError(f"table name {name!r} is not an identifier")
        return tables


class PrivacyRules(Settings):
    """The site's own differential-privacy budget, kept in its own ledger."""

    ledger: str = Field(
        "site_ledger.json", description="the site's budget ledger file (relative to site.yaml)"
    )
    budget_epsilon: float = Field(
        1.0, gt=0, description="total epsilon of the site's DP-only data, over every analyst"
    )
    budget_delta: float = Field(0.0, ge=0, lt=1, description="total delta, every analyst")
    analyst_epsilon: float | None = Field(
        None, gt=0, description="epsilon one analyst may spend (default: the whole budget)"
    )
    analyst_delta: float | None = Field(None, ge=0, lt=1, description="delta one analyst may spend")
    max_query_epsilon: float | None = Field(
        None, gt=0, description="largest epsilon one task may spend (default: no limit)"
    )


class TrainingDataset(Settings):
    """A dataset the site trains on: an ``.npz`` file, or a run config's dataset section."""

    path: str | None = Field(
        None, description=".npz file with arrays x (float32) and y (int64), relative to site.yaml"
    )
    dataset: DatasetConfig | None = Field(
        None, description="a run config's dataset section (built-in or by path)"
    )
    client: int = Field(0, ge=0, description="with dataset: which client's share this site holds")
    seed: int = Field(
        0,
        description="with dataset: the seed the dataset is generated and "
        "split with (every site of one federation uses the same)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> TrainingDataset:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of path (an .npz file) and dataset")
        return self


class TrainingRules(Settings):
    """Training datasets and the models the site agrees to run."""

    datasets: dict[str, TrainingDataset] = Field(
        default_factory=dict, description="training datasets by name"
    )
    models: tuple[str, ...] = Field(
        ("mlp", "logreg", "logistic_regression", "cnn1d"),
        description="built-in model names a training job may use",
    )
    factories: tuple[str, ...] = Field(
        (),
        description="'package.module:function' model factories a job may use (running "
        "an analyst's code at the site is the site's decision)",
    )


class SiteRules(Settings):
    """A site's ``site.yaml``."""

    name: str | None = Field(None, description="the site's name (default: the token file's stem)")
    coordinator: str | None = Field(
        None, description="HOST:PORT of the coordinator (--coordinator overrides)"
    )
    accept: tuple[Literal["analytics", "training", "histogram", "test"], ...] = Field(
        ("analytics", "training"), description="job kinds the site runs"
    )
    sql: SqlRules = Field(default_factory=SqlRules, description="tables for federated SQL")
    privacy: PrivacyRules = Field(
        default_factory=PrivacyRules, description="the site's differential-privacy budget"
    )
    training: TrainingRules = Field(
        default_factory=TrainingRules, description="training datasets and allowed models"
    )
    audit_log: str = Field(
        "site_audit.jsonl",
        description="append-only audit log of every task run or refused (relative to site.yaml)",
    )
    state_dir: str = Field(
        ".fedsys-site",
        description="folder for the site's generated files (table catalog), relative to site.yaml",
    )

    def table(self, name: str) -> TableRules | None:
        """The rules of table ``name``, ``None`` if the site does not expose it."""
        return self.sql.tables.get(name)

    def datasets(self) -> dict[str, str]:
        """Dataset name -> path, as the site's workers see them.

        The SQL tables appear as one dataset (a table catalog written into
        :attr:`state_dir`); a training dataset given by ``path`` is that file, one given
        by a run config's section is a small JSON spec beside the catalog.
        """
        state = Path(self.state_dir)
        found: dict[str, str] = {}
        if self.sql.tables:
            catalog = {
                "tables": {t: r.path for t, r in self.sql.tables.items()},
                "columns": {
                    t: list(r.columns) for t, r in self.sql.tables.items() if r.columns is not None
                },
            }
            found[self.sql.dataset] = str(_write_json(state / "catalog.json", catalog))
        for name, data in self.training.datasets.items():
            if data.path is not None:
                found[name] = data.path
            else:
                assert data.dataset is not None
                spec = {
                    "dataset": data.dataset.model_dump(mode="json"),
                    "client": data.client,
                    "seed": data.seed,
                }
                found[name] = str(_write_json(state / f"dataset-{name}.json", spec))
        return found


def load_site_rules(path: str | Path) -> SiteRules:
    """Read and check ``site.yaml`` (strict YAML; every wrong key named).

    Paths in the file become absolute, relative to the file's folder.

    Raises
    ------
    ConfigError
        If the file is missing, unparsable, names an unknown key or a missing table file.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"site rules {file} not found")
    try:
        raw = parse_yaml(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {file}: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of keys to values")
    try:
        rules = SiteRules.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{file}: {format_validation_error(exc, SiteRules)}") from None
    return _absolute(rules, file.parent.resolve(), file)


def _absolute(rules: SiteRules, base: Path, file: Path) -> SiteRules:
    tables = {}
    for name, table in rules.sql.tables.items():
        full = (base / table.path).resolve()
        if not full.is_file():
            raise ConfigError(f"{file}: sql.tables.{name}.path: no file {full}")
        tables[name] = table.model_copy(update={"path": str(full)})
    datasets = {}
    for name, data in rules.training.datasets.items():
        if data.path is not None:
            full = (base / data.path).resolve()
            if not full.is_file():
                raise ConfigError(f"{file}: training.datasets.{name}.path: no file {full}")
            data = data.model_copy(update={"path": str(full)})
        datasets[name] = data
    return rules.model_copy(
        update={
            "sql": rules.sql.model_copy(update={"tables": tables}),
            "training": rules.training.model_copy(update={"datasets": datasets}),
            "privacy": rules.privacy.model_copy(
                update={"ledger": str((base / rules.privacy.ledger).resolve())}
            ),
            "audit_log": str((base / rules.audit_log).resolve()),
            "state_dir": str((base / rules.state_dir).resolve()),
        }
    )


def _write_json(path: Path, data: Any) -> Path:
    """Write ``data`` atomically (several site processes may share one site.yaml)."""
    atomic_write_text(path, json.dumps(data, indent=1))
    return path
