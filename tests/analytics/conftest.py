"""Three real analytics sites (CSV and Parquet tables in DuckDB) behind a shaped loopback.

One deployment serves the whole module (site processes take seconds to start); the
fixture always kills every process it started.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from fedsys.analytics.catalog import SitesFile, SiteSpec
from fedsys.analytics.ledger import PrivacyLedger
from fedsys.analytics.local_sites import local_cluster
from fedsys.analytics.query import FederatedQueryEngine
from fedsys.silo.coordinator import CoordinatorSettings
from fedsys.silo.shaper import LinkSettings

SITES = ("s0", "s1", "s2")


def write_site_tables(folder: Path, sites: tuple[str, ...] = SITES) -> dict[str, Path]:
    """Each site's ``data`` table: ints, floats with NULLs, strings, dates; CSV or Parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    con = duckdb.connect()
    for i, site in enumerate(sites):
        rng = np.random.default_rng([i, 11])
        n = 1500 + 500 * i  # unequal sites
        x = rng.normal(i, 2.0 + i, n)
        x[rng.random(n) < 0.05] = np.nan
        table = {"label": rng.integers(0, 5, n), "v": rng.integers(0, 100, n), "x": x,
                 "city": np.array(["ams", "bos", "cpt"])[rng.integers(0, 3 - (i == 2), n)],
                 "day": rng.integers(0, 900, n)}
        con.register("raw", table)
        path = folder / f"{site}.{'parquet' if i % 2 == 0 else 'csv'}"
        con.execute(f"COPY (SELECT label, v, CASE WHEN isnan(x) THEN NULL ELSE x END AS x, "
                    f"city, DATE '2023-01-01' + CAST(day AS INTEGER) AS d FROM raw) "
                    f"TO '{path}'")
        con.unregister("raw")
        files[site] = path
    return files


def central(files: dict[str, Path], sql: str, sites: tuple[str, ...] = SITES) -> list[tuple]:
    """The same query run by DuckDB on the union of the sites' tables in one place."""
    con = duckdb.connect()
    parts = [f"SELECT * FROM '{files[s]}'" for s in sites]
    con.execute("CREATE TABLE data AS " + " UNION ALL BY NAME ".join(parts))
    return con.execute(sql).fetchall()


class LoopThread:
    """An event loop on a daemon thread: the coordinator keeps serving between tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 180.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class Federation:
    """The running deployment: an engine, its cluster, the loop and the site files."""

    def __init__(self, engine: FederatedQueryEngine, cluster: Any, loop: LoopThread,
                 files: dict[str, Path], workdir: Path) -> None:
        self.engine, self.cluster, self.loop = engine, cluster, loop
        self.files, self.workdir = files, workdir

    def query(self, sql: str, options: Any = None) -> Any:
        return self.loop.run(self.engine.run(sql, options))


@pytest.fixture(scope="package")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    workdir = tmp_path_factory.mktemp("analytics")
    files = write_site_tables(workdir / "tables")
    spec = SitesFile(dataset="demo", sites=[SiteSpec(name=s, tables={"data": str(files[s])})
                                            for s in SITES])
    cluster = local_cluster(spec, workdir, workers=1,
                            link=LinkSettings.symmetric(0.02, 50e6),
                            settings=CoordinatorSettings(site_timeout_s=6.0))
    loop = LoopThread()
    try:
        loop.run(cluster.start(), timeout_s=240)
        assert cluster.coordinator is not None
        ledger = PrivacyLedger(workdir / "ledger.json", budget_epsilon=1.0)
        engine = FederatedQueryEngine(cluster.coordinator, "demo", ledger=ledger,
                                      max_dropouts=1, job_timeout_s=60)
        yield Federation(engine, cluster, loop, files, workdir)
    finally:
        loop.run(cluster.close(), timeout_s=60)
        loop.close()
