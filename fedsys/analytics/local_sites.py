"""A federated-analytics deployment on loopback from a ``sites.yaml``.

One site manager process per site (each loading its own tables into DuckDB), a silo
coordinator and the WAN shaper between them, with the analytics tasks registered;
used by ``fedsys query``, the tests and ``benchmarks/analytics_wan.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from fedsys.analytics.catalog import SitesFile
from fedsys.analytics.ledger import PrivacyLedger
from fedsys.analytics.query import FederatedQueryEngine
from fedsys.core.names import plain_name
from fedsys.silo.coordinator import CoordinatorSettings
from fedsys.silo.local_federation import LocalCluster
from fedsys.silo.mode import EngineMode
from fedsys.silo.shaper import LinkSettings

__all__ = ["TASK_MODULE", "local_cluster", "local_engine", "write_site_rules"]

TASK_MODULE = "fedsys.analytics.tasks"


def local_cluster(spec: SitesFile, workdir: Path, workers: int = 1,
                  link: LinkSettings | None = None, insecure: bool = True,
                  settings: CoordinatorSettings | None = None,
                  site_rules: Mapping[str, Mapping[str, Any]] | None = None) -> LocalCluster:
    """A :class:`LocalCluster` whose sites hold the tables of ``spec`` (not started).

    ``site_rules``: the ``site.yaml`` of the named sites (their own rules; the tables
    must be theirs); every other site gets a permissive one from ``spec``
    (:func:`write_site_rules`): it checks and audits each task but refuses none.

    Each site's name names its folder, token, certificate and log: checked again here
    (a spec may be built in code, or changed after validation), before anything is
    written, so nothing lands outside ``workdir``.

    Raises
    ------
    ValueError
        If a site or the dataset name is not a plain name.
    """
    plain_name(spec.dataset, "dataset name")
    for site in spec.sites:
        plain_name(site.name, "site name")
    catalogs: dict[int, Mapping[str, Path]] = {}
    configs: dict[int, Path] = {}
    for i, site in enumerate(spec.sites):
        folder = workdir / "sites" / site.name
        rules = (site_rules or {}).get(site.name)
        if rules is None:
            configs[i] = write_site_rules(folder / "site.yaml", spec.dataset, site.tables)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            configs[i] = folder / "site.yaml"
            configs[i].write_text(yaml.safe_dump(dict(rules), sort_keys=False))
        catalogs[i] = {}
    return LocalCluster(workdir, sites=len(spec.sites), workers=workers, comm_workers=1,
                        link=link or LinkSettings(), insecure=insecure, site_data=catalogs,
                        task_modules=(TASK_MODULE,), site_configs=configs,
                        site_names=[s.name for s in spec.sites], coordinator_settings=settings)


def write_site_rules(path: Path, dataset: str, tables: Mapping[str, str]) -> Path:
    """A permissive ``site.yaml`` exposing ``tables`` whole (every column, every group,
    no DP-only data, every job kind): what a querier's ``sites.yaml`` implies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rules = {"accept": ["analytics", "training", "histogram", "test"],
             "sql": {"dataset": dataset,
                     "tables": {t: {"path": str(Path(f).resolve())} for t, f in tables.items()}}}
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@asynccontextmanager
async def local_engine(spec: SitesFile, workdir: Path, mode: EngineMode | None = None,
                       ledger: PrivacyLedger | None = None, max_dropouts: int = 1,
                       workers: int = 1, link: LinkSettings | None = None,
                       ) -> AsyncIterator[tuple[FederatedQueryEngine, LocalCluster]]:
    """Start the sites of ``spec`` and yield a query engine on them; always stop them."""
    cluster = local_cluster(spec, workdir, workers, link)
    async with cluster:
        assert cluster.coordinator is not None
        yield FederatedQueryEngine(cluster.coordinator, spec.dataset, mode, ledger,
                                   max_dropouts), cluster
