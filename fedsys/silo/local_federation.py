"""A whole silo deployment on loopback: coordinator, WAN shapers and site processes.

Used by ``fedsys silo local``, the tests and ``benchmarks/silo_wan.py``. The coordinator
runs in the caller's event loop, the shaping proxies on a thread of their own (one per
site, on the site's path to the coordinator), and every site manager is a separate
process with its own compute worker pool, started with ``python -m fedsys.cli silo
site`` through :mod:`fedsys.wire.supervise` and always ended on exit (terminate, then
kill its whole process group).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from fedsys.silo.coordinator import CoordinatorSettings, SiloCoordinator
from fedsys.silo.shaper import LinkSettings, ShaperThread
from fedsys.silo.shaper_process import ShaperProcess
from fedsys.wire import auth, tls
from fedsys.wire.supervise import child_env as child_env  # re-exported for tests and tools
from fedsys.wire.supervise import end_all, end_group, fedsys_command, spawn
from fedsys.wire.transport import ServerSecurity

SITE_STOP_S = 5.0
"""Grace a site has to stop on SIGTERM before its process group is killed."""


def write_site_data(
    path: Path,
    seed: int,
    rows: int = 200_000,
    samples: int = 512,
    features: int = 64,
    classes: int = 10,
) -> Path:
    """A site's synthetic ``.npz``: ``values`` (analytics column) and ``x``/``y`` (FL).

    Labels come from a fixed random linear teacher (shared by all sites) applied to
    site-shifted features, so sites are non-IID but learnable.
    """
    rng = np.random.default_rng([seed, 7])
    teacher = np.random.default_rng(1234).normal(size=(features, classes))
    values = rng.normal(loc=0.1 * seed, scale=1.0, size=rows)
    x = rng.normal(loc=0.2 * seed, size=(samples, features)).astype(np.float32)
    y = np.argmax(x @ teacher, axis=1).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, values=values, x=x, y=y)
    return path


def site_command(
    address: str,
    token_file: Path,
    datasets: Mapping[str, Path],
    name: str,
    workers: int,
    comm_workers: int,
    ca_path: Path | None,
    task_modules: Sequence[str] = (),
    config: Path | None = None,
) -> list[str]:
    """The command line that starts one site manager (``config``: its ``site.yaml``)."""
    cmd = fedsys_command("silo", "site", "--coordinator", address,
                         "--token-file", str(token_file), "--name", name, "--workers",
                         str(workers), "--comm-workers", str(comm_workers), module="fedsys.cli")
    cmd += ["--ca", str(ca_path)] if ca_path is not None else ["--insecure"]
    for dataset, path in datasets.items():
        cmd += ["--data", f"{dataset}={path}"]
    for module in task_modules:
        cmd += ["--tasks", module]
    if config is not None:
        cmd += ["--config", str(config)]
    return cmd


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a site process and its worker processes (its own group) at once, then reap it."""
    end_group(proc, term_grace_s=0.0)


@dataclass
class LocalCluster:
    """Coordinator + one shaper and one site process per site, on loopback.

    Parameters
    ----------
    workdir
        Folder for certificates, tokens, data and logs.
    sites
        Number of sites (named ``site-0`` ...; site ``i`` holds dataset ``d<i>``).
    workers, comm_workers
        Compute and communication workers per site.
    link
        Each direction of every site's path (symmetric; change with :meth:`set_link`).
    insecure
        Plaintext gRPC (TLS and tokens are on otherwise; tokens are always checked).
    extra_datasets
        Additional datasets per site index (e.g. a replica of another site's data).
    data_rows, data_samples, data_features
        Size of each site's synthetic data.
    coordinator_settings
        Limits and timers of the coordinator.
    startup_timeout_s
        How long the sites have to connect.
    site_data
        Datasets of each site index instead of the synthetic ``.npz`` (e.g. the table
        catalogs of federated analytics).
    task_modules
        Task modules every site imports besides the built-in ones.
    site_names
        Names of the sites (default ``site-0`` ...).
    site_configs
        The ``site.yaml`` of each site index that has rules (others run every task).
    shaper_process
        Run the proxies in a child process (default), so that the coordinator's work
        never stalls the emulated network; ``False``: on a thread of this process.
    make_coordinator
        Builds the coordinator from the sites' token file and the server security
        (e.g. a standing federation's, which also serves analysts); default: a plain
        :class:`SiloCoordinator`.
    """

    workdir: Path
    sites: int = 4
    workers: int = 2
    comm_workers: int = 2
    link: LinkSettings = field(default_factory=LinkSettings)
    insecure: bool = False
    extra_datasets: Mapping[int, Mapping[str, Path]] = field(default_factory=dict)
    data_rows: int = 200_000
    data_samples: int = 512
    data_features: int = 64
    coordinator_settings: CoordinatorSettings | None = None
    startup_timeout_s: float = 90.0
    site_data: Mapping[int, Mapping[str, Path]] | None = None
    task_modules: Sequence[str] = ()
    site_names: Sequence[str] | None = None
    site_configs: Mapping[int, Path] = field(default_factory=dict)
    shaper_process: bool = True
    make_coordinator: Callable[[Path, ServerSecurity], SiloCoordinator] | None = None
    coordinator: SiloCoordinator | None = None
    shaper: ShaperThread | ShaperProcess | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """Site names."""
        if self.site_names is not None:
            return list(self.site_names)
        return [f"site-{i}" for i in range(self.sites)]

    @property
    def datasets(self) -> list[str]:
        """The dataset each site holds (``d<i>`` at ``site-<i>``)."""
        return [f"d{i}" for i in range(self.sites)]

    async def __aenter__(self) -> LocalCluster:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Provision credentials and data, start the coordinator, shapers and sites."""
        self.shaper = ShaperProcess() if self.shaper_process else ShaperThread()
        if isinstance(self.shaper, ShaperProcess):
            self.shaper.start()  # imports while the credentials and data are made
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        auth.issue_tokens(pki, self.names)
        if not self.insecure:
            tls.provision(pki, self.names)
        security = ServerSecurity(insecure=True) if self.insecure else ServerSecurity(pki)
        if self.make_coordinator is not None:
            self.coordinator = self.make_coordinator(pki / auth.TOKENS_FILE, security)
        else:
            self.coordinator = SiloCoordinator(pki / auth.TOKENS_FILE, security,
                                               settings=self.coordinator_settings)
        port = await self.coordinator.start()
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        for i, name in enumerate(self.names):
            if self.site_data is not None:
                data = dict(self.site_data[i])
            else:
                data = {self.datasets[i]: write_site_data(
                    self.workdir / "data" / f"{self.datasets[i]}.npz", seed=i,
                    rows=self.data_rows, samples=self.data_samples,
                    features=self.data_features)}
            data.update(self.extra_datasets.get(i, {}))
            proxy_port = self.shaper.add_proxy("127.0.0.1", port, self.link, self.link, seed=i)
            cmd = site_command(f"127.0.0.1:{proxy_port}", pki / "clients" / f"{name}.token",
                               data, name, self.workers, self.comm_workers,
                               None if self.insecure else pki / "ca.pem",
                               self.task_modules, self.site_configs.get(i))
            self.commands.append(cmd)
            self.processes.append(spawn(cmd, logs / f"{name}.log", cwd=self.workdir))
        await self.coordinator.wait_for_sites(self.sites, self.startup_timeout_s)

    def set_link(self, link: LinkSettings) -> None:
        """Give every site's path new settings (both directions)."""
        self.link = link
        if self.shaper is not None:
            self.shaper.set_all(link, link)

    def kill_site(self, index: int) -> None:
        """Kill site ``index``'s manager process (and so its stream) at once."""
        kill_group(self.processes[index])

    def restart_site(self, index: int) -> None:
        """Start site ``index``'s manager again (after :meth:`kill_site`): it rejoins."""
        name = self.names[index]
        log = self.workdir / "logs" / f"{name}.restarted.log"
        self.processes[index] = spawn(self.commands[index], log, cwd=self.workdir)

    async def close(self) -> None:
        """End every site process (terminate, then kill), stop the shapers and coordinator."""
        await asyncio.to_thread(end_all, self.processes, 0.0, SITE_STOP_S)
        if self.shaper is not None:
            self.shaper.close()
        if self.coordinator is not None:
            await self.coordinator.stop()

