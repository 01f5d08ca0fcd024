"""A site's tables in DuckDB, and the ``sites.yaml`` that says which site holds what.

A site's dataset is a small JSON catalog ``{"tables": {"lineitem": "/data/li.parquet"}}``
(with ``"columns": {"lineitem": [...]}`` when the site's rules hide the others);
each compute worker loads the tables (CSV or Parquet) into an in-memory DuckDB once,
then turns off DuckDB's access to files, so a query can read only the declared tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedsys.config.loader import load_yaml_file
from fedsys.core.names import plain_name

__all__ = ["PrivacySection", "SecureSection", "SiteSpec", "SitesFile", "load_sites",
           "site_database", "table_rows", "write_catalog"]

_READERS = {".csv": "read_csv_auto", ".parquet": "read_parquet", ".pq": "read_parquet"}

MAX_SITES_FILE_BYTES = 1024 * 1024
"""Largest ``sites.yaml`` read (a federation of hundreds of sites is a few kilobytes)."""


class SiteSpec(BaseModel):
    """One site of ``sites.yaml``: its name and its tables (CSV or Parquet paths)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    tables: dict[str, str] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        return plain_name(name, "site name")  # it names the site's folders and files

    @field_validator("tables")
    @classmethod
    def _known_formats(cls, tables: dict[str, str]) -> dict[str, str]:
        for table, path in tables.items():
            if not table.isidentifier():
                raise ValueError(f"table name {table!r} is not an identifier")
            plain_name(table, "table name")
            if Path(path).suffix.lower() not in _READERS:
                raise ValueError(f"table {table!r}: {path} is not .csv or .parquet")
        return tables


class PrivacySection(BaseModel):
    """The dataset owners' privacy rules: budget, ledger, declared bounds and key values."""

    model_config = ConfigDict(extra="forbid")
    budget_epsilon: float = Field(default=1.0, gt=0)
    budget_delta: float = Field(default=0.0, ge=0, lt=1)
    ledger: str = "privacy_ledger.json"
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    domains: dict[str, list[Any]] = Field(default_factory=dict)


class SecureSection(BaseModel):
    """Secure summation settings."""

    model_config = ConfigDict(extra="forbid")
    max_dropouts: int = Field(default=1, ge=0)


class SitesFile(BaseModel):
    """``sites.yaml``: the dataset's name (privacy budgets are per dataset) and its sites."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(default="data", min_length=1)
    sites: list[SiteSpec] = Field(min_length=1)
    privacy: PrivacySection = Field(default_factory=PrivacySection)
    secure: SecureSection = Field(default_factory=SecureSection)

    @field_validator("dataset")
    @classmethod
    def _plain_dataset(cls, dataset: str) -> str:
        return plain_name(dataset, "dataset name")

    @field_validator("sites")
    @classmethod
    def _unique(cls, sites: list[SiteSpec]) -> list[SiteSpec]:
        names = [s.name for s in sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names repeat: {names}")
        return sites


def load_sites(path: Path) -> SitesFile:
    """Read and check ``sites.yaml``; table paths become absolute (relative to the file).

    Raises
    ------
    ValueError
        If the file is malformed (aliases, duplicate keys, over 1 MiB), names an unknown
        key, a name that is not plain (:func:`~fedsys.core.names.plain_name`) or a table
        file that is missing.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"sites file {path} does not exist")
    # The strict loader: an alias bomb or a duplicate key is refused before anything
    # is expanded or started.
    raw = load_yaml_file(path, "sites file", MAX_SITES_FILE_BYTES)
    try:
        spec = SitesFile.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ValueError(f"{path}: {where}: {message}") from None
    for site in spec.sites:
        for table, file in site.tables.items():
            full = (path.parent / file).resolve()
            if not full.exists():
                raise FileNotFoundError(f"{path}: site {site.name} table {table}: no file {full}")
            site.tables[table] = str(full)
    folder = path.parent.resolve()
    ledger = (folder / spec.privacy.ledger).resolve()
    if not ledger.is_relative_to(folder):  # the ledger is written: never outside
        raise ValueError(
            f"{path}: privacy.ledger {spec.privacy.ledger!r} lies outside the sites file's "
            f"folder {folder}: name a file in it (or a subfolder)"
        )
    spec.privacy.ledger = str(ledger)
    return spec


def write_catalog(path: Path, tables: Mapping[str, str]) -> Path:
    """Write a site's catalog JSON (the dataset path a site manager is started with)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tables": dict(tables)}, indent=1))
    return path


_DATABASES: dict[Path, Any] = {}
_ROWS: dict[tuple[Path, str], int] = {}


def site_database(catalog: Path) -> Any:
    """This worker's DuckDB with the catalog's tables loaded (once per process).

    Raises
    ------
    ValueError
        If the catalog is malformed.
    """
    con = _DATABASES.get(catalog)
    if con is None:
        import duckdb

        try:
            body = json.loads(Path(catalog).read_text())
            tables, readable = body["tables"], body.get("columns", {})
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"site catalog {catalog} is not {{\"tables\": {{...}}}}") from None
        con = duckdb.connect(config={"threads": 1})
        for table, file in tables.items():
            reader = _READERS[Path(file).suffix.lower()]
            # a site's rules may hide columns: they are never loaded (see site.yaml)
            names = ", ".join('"' + c.replace('"', '""') + '"' for c in readable.get(table, []))
            con.execute(f'CREATE TABLE "{table}" AS SELECT {names or "*"} FROM {reader}(?)',
                        [str(file)])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        _DATABASES[catalog] = con
    return con


def table_rows(catalog: Path, table: str) -> int:
    """Row count of ``table`` at this site (cached)."""
    key = (catalog, table)
    if key not in _ROWS:
        con = site_database(catalog)
        _ROWS[key] = int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchall()[0][0])
    return _ROWS[key]
