"""A standing federation on loopback with sample data: the demo, the tests, the benchmark.

Each site holds a sample hospital ``visits`` table (:mod:`fedsys.analytics.sample_data`,
catalog ``hospital_visits``) and a shard of a small run config's training data
(``digits``), under its own rules: a ``site.yaml`` in its folder
(:mod:`fedsys.federation.demo_sites`: a hidden ``patient_id``, a DP-only ``income``
with the site's own budget and ledger, a smallest group, the models it trains), its
ledger and audit log beside it. The sites sit behind the WAN shaper; the standing
coordinator runs in the caller's event loop and serves the analysts (``alice`` and
``bob``, tokens of their own) on the port it prints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedsys.analytics.catalog import load_sites
from fedsys.analytics.local_sites import TASK_MODULE
from fedsys.analytics.sample_data import HOSPITALS, Hospital, write_sample_sites
from fedsys.config.loader import parse_config
from fedsys.config.schema import RunConfig
from fedsys.federation.client import Federation
from fedsys.federation.demo_sites import (
    SiteFiles,
    add_private_columns,
    demo_site_rules,
    write_site_yaml,
)
from fedsys.federation.service import FederationSettings, StandingCoordinator
from fedsys.parts.builders import build_dataset
from fedsys.silo.coordinator import CoordinatorSettings
from fedsys.silo.local_federation import LocalCluster
from fedsys.silo.shaper import LinkSettings
from fedsys.wire import auth
from fedsys.wire.transport import ServerSecurity

__all__ = ["TABLES", "Access", "demo_config", "demo_hospitals", "standing_local",
           "write_training_shards"]

TABLES = "hospital_visits"
"""The catalog name under which every demo site holds its tables."""


def demo_config(sites: int, rounds: int = 5, seed: int = 0, **changes: Any) -> RunConfig:
    """A short training run: digits split IID over ``sites`` sites, an MLP, FedAvg."""
    raw: dict[str, Any] = {
        "seed": seed, "rounds": rounds, "clients_per_round": sites,
        "output_dir": "runs/federation-demo",
        "dataset": {"name": "digits", "num_clients": sites, "partition": {"kind": "iid"}},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"local_steps": 20, "batch_size": 32, "lr": 0.2},
        "devices": {"source": "uniform", "always_available": True},
        "selector": {"name": "random"}, "strategy": {"name": "fedavg"},
        "round": {"mode": "sync", "overcommit": 1.0}, "eval": {"every": 1},
    }
    raw.update(changes)
    return parse_config(raw)


def write_training_shards(config: RunConfig, folder: Path) -> list[Path]:
    """Client ``i``'s training data of ``config`` as site ``i``'s ``.npz`` (``x``, ``y``)."""
    dataset = build_dataset(config.dataset, config.seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(dataset.num_clients):
        features, labels = dataset.client_data(index)
        path = folder / f"{config.dataset.name}-{index}.npz"
        np.savez(path, x=features.numpy().astype(np.float32), y=labels.numpy())
        paths.append(path)
    return paths


def demo_hospitals(count: int) -> tuple[Hospital, ...]:
    """``count`` sample hospitals (the three of the query demo, then variants of them)."""
    return tuple(replace(HOSPITALS[i % len(HOSPITALS)],
                         name=HOSPITALS[i % len(HOSPITALS)].name
                         + ("" if i < len(HOSPITALS) else f"_{i}"))
                 for i in range(count))


SiteRulesHook = Callable[[int, dict[str, Any]], dict[str, Any]]
"""Changes the demo rules of site ``index`` before they are written."""


@dataclass(frozen=True)
class Access:
    """How analysts reach a standing federation (and where each site keeps its rules,
    ledger and audit log: at the site, read here only because the demo is local)."""

    address: str
    ca: Path | None
    analysts: dict[str, Path]
    sites: dict[str, SiteFiles] = field(default_factory=dict)

    def client(self, analyst: str) -> Federation:
        """A :class:`Federation` connection as ``analyst``."""
        return Federation(self.address, token_file=self.analysts[analyst], ca=self.ca,
                          insecure=self.ca is None)

    def command_options(self, analyst: str) -> str:
        """The ``fedsys query``/``submit``/``jobs`` options that reach it as ``analyst``."""
        security = f"--ca {self.ca}" if self.ca is not None else "--insecure"
        return (f"--coordinator {self.address} --token-file {self.analysts[analyst]} "
                f"{security}")


@asynccontextmanager
async def standing_local(
    workdir: Path, sites: int = 4, workers: int = 1, link: LinkSettings | None = None,
    insecure: bool = False, analysts: Sequence[str] = ("alice", "bob"),
    settings: FederationSettings | None = None, training: RunConfig | None = None,
    coordinator_settings: CoordinatorSettings | None = None,
    site_rules: SiteRulesHook | None = None,
) -> AsyncIterator[tuple[StandingCoordinator, LocalCluster, Access]]:
    """Start a standing federation of ``sites`` sample sites; always stop it.

    Each site runs under its own ``site.yaml`` in ``workdir/sites/NAME/``
    (:func:`~fedsys.federation.demo_sites.demo_site_rules`); ``site_rules(index, rules)``
    may change site ``index``'s before it is written (tests give sites other rules).
    """
    training = training or demo_config(sites)
    sites_file = write_sample_sites(workdir / "tables", hospitals=demo_hospitals(sites))
    spec = load_sites(sites_file)
    shards = write_training_shards(training, workdir / "data")
    if len(shards) != sites:
        raise ValueError(f"the training config splits its data over {len(shards)} clients, "
                         f"not the {sites} sites")
    files: dict[str, SiteFiles] = {}
    configs: dict[int, Path] = {}
    for i, site in enumerate(spec.sites):
        table = Path(site.tables["visits"])
        add_private_columns(table, i)
        rules = demo_site_rules(i, site.name, table, TABLES, training.dataset.name,
                                shards[i])
        if site_rules is not None:
            rules = site_rules(i, rules)
        files[site.name] = write_site_yaml(workdir / "sites" / site.name, rules)
        configs[i] = files[site.name].rules
    analyst_dir = workdir / "pki" / "analysts"
    auth.issue_tokens(analyst_dir, list(analysts))
    settings = replace(settings or FederationSettings(), tables=TABLES)
    standing = StandingCoordinator(workdir / "state", analyst_dir / auth.TOKENS_FILE, settings)

    def make(tokens: Path, security: ServerSecurity) -> Any:
        return standing.build(tokens, security, settings=coordinator_settings)

    cluster = LocalCluster(workdir, sites=sites, workers=workers, comm_workers=1,
                           link=link or LinkSettings(), insecure=insecure,
                           site_data={i: {} for i in configs}, site_configs=configs,
                           task_modules=(TASK_MODULE,),
                           site_names=[s.name for s in spec.sites], make_coordinator=make)
    async with cluster:
        assert cluster.coordinator is not None
        await standing.begin()
        access = Access(f"127.0.0.1:{cluster.coordinator.port}",
                        None if insecure else workdir / "pki" / "ca.pem",
                        {a: analyst_dir / "clients" / f"{a}.token" for a in analysts}, files)
        try:
            yield standing, cluster, access
        finally:
            await standing.close()
