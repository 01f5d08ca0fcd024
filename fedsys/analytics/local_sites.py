"""A federated-analytics deployment on loopback from a ``sites.yaml``.

One site manager process per site (each loading its own tables into DuckDB), a silo
coordinator and the WAN shaper between them, with the analytics tasks registered;
used by ``fedsys query``, the tests and ``benchmarks/analytics_wan.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fedsys.analytics.catalog import SitesFile, write_catalog
from fedsys.analytics.ledger import PrivacyLedger
from fedsys.analytics.query import FederatedQueryEngine
from fedsys.core.names import plain_name
from fedsys.silo.coordinator import CoordinatorSettings
from fedsys.silo.local_federation import LocalCluster
from fedsys.silo.mode import EngineMode
from fedsys.silo.shaper import LinkSettings

__all__ = ["TASK_MODULE", "local_cluster", "local_engine"]

TASK_MODULE = "fedsys.analytics.tasks"


def local_cluster(spec: SitesFile, workdir: Path, workers: int = 1,
                  link: LinkSettings | None = None, insecure: bool = True,
                  settings: CoordinatorSettings | None = None) -> LocalCluster:
    """A :class:`LocalCluster` whose sites hold the tables of ``spec`` (not started).

    Each site's name names its catalog folder, token, certificate and log: checked
    again here (a spec may be built in code, or changed after validation), before
    anything is written, so nothing lands outside ``workdir``.

    Raises
    ------
    ValueError
        If a site or the dataset name is not a plain name.
    """
    plain_name(spec.dataset, "dataset name")
    for site in spec.sites:
        plain_name(site.name, "site name")
    catalogs = {i: {spec.dataset: write_catalog(workdir / "catalogs" / site.name / "tables.json",
                                                site.tables)}
                for i, site in enumerate(spec.sites)}
    return LocalCluster(workdir, sites=len(spec.sites), workers=workers, comm_workers=1,
                        link=link or LinkSettings(), insecure=insecure, site_data=catalogs,
                        task_modules=(TASK_MODULE,),
                        site_names=[s.name for s in spec.sites], coordinator_settings=settings)


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
