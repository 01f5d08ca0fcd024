"""``fedsys client --profile``: one process hosting one or many emulated devices.

A phone fleet of a hundred devices would be a hundred Python processes with torch
each; on a laptop that is most of its memory. One host process runs any number of
:class:`~fedsys.deploy.client.DeployClient` coroutines instead, each with its own
token, TLS channel, data shard, device profile and availability, so the server sees
exactly as many independent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy (torch, grpc): imported when a device is built, not by the CLI parser
    from rich.console import Console

    from fedsys.config.schema import RunConfig
    from fedsys.data.federated import FederatedDataset
    from fedsys.deploy.client import DataProvider, DeployClient, LocalData
    from fedsys.deploy.emulation import AvailabilitySchedule
    from fedsys.traces.fleet import DeviceFleet
    from fedsys.wire.transport import ChannelSecurity


def add_emulation_arguments(client: argparse.ArgumentParser) -> None:
    """The ``fedsys client`` flags that turn it into emulated traced devices."""
    group = client.add_argument_group("device emulation")
    group.add_argument(
        "--profile", help="emulate device ID of --traces (or a range A-B, or a comma list)"
    )
    group.add_argument("--traces", type=Path, help="device traces: fedsys CSV or FedScale folder")
    group.add_argument(
        "--config", type=Path, help="the run's config (devices section, data, model)"
    )
    epoch = group.add_mutually_exclusive_group()
    epoch.add_argument(
        "--epoch", type=float, help="unix time at which the trace's clock reads 0 (default: now)"
    )
    epoch.add_argument(
        "--epoch-file", type=Path, help="say ready beside this file, then read the epoch from it"
    )
    group.add_argument("--latency-ms", type=float, default=0.0, help="one-way link latency")
    group.add_argument("--timings", type=Path, help="append each task's timings as JSON lines")
    group.add_argument(
        "--token-dir", type=Path, help="several profiles: tokens at DIR/<prefix>NNNN.token"
    )
    group.add_argument("--token-prefix", default="client-", help="token file names' prefix")


@dataclass(frozen=True)
class EmulatedDevice:
    """One device a host runs: who it is and where its token and data come from."""

    profile: int
    token: str
    data: DataProvider


def parse_profiles(text: str) -> list[int]:
    """``"3"``, ``"0-24"`` or ``"1,4,9-11"`` as a sorted list of device ids.

    Raises
    ------
    ValueError
        If the text is not such a list.
    """
    ids: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high) if high else int(low)
            if first < 0 or last < first:
                raise ValueError
            ids.update(range(first, last + 1))
    except ValueError:
        raise ValueError(
            f"--profile {text!r} is not a device id, a range A-B or a comma list of them"
        ) from None
    return sorted(ids)


def build_device_client(
    device: EmulatedDevice,
    config: RunConfig,
    traces: Path | DeviceFleet,
    address: str,
    security: ChannelSecurity,
    epoch: float,
    latency_s: float = 0.0,
    timings: Path | None = None,
    max_attempts: int = 20,
) -> tuple[DeployClient, AvailabilitySchedule]:
    """A client whose compute, link and availability follow ``device``'s profile.

    Its data and model are built now from ``config`` (the run's config), so a device
    online when the trace starts is ready to connect at once.
    """
    from fedsys.deploy.client import DeployClient
    from fedsys.deploy.emulation import AvailabilitySchedule, DeviceEmulation, profile_for
    from fedsys.wire.transport import Backoff

    run = config.model_dump(mode="json")
    local = device.data(run)
    profile = profile_for(traces, config.devices, device.profile, local.model, latency_s)
    client = DeployClient(
        address=address,
        token=device.token,
        security=security,
        data=device.data,
        backoff=Backoff(base_s=0.05, cap_s=2.0, max_attempts=max_attempts),
        emulation=DeviceEmulation(profile, timings, epoch),
    )
    client.local_ = local
    warm_up(local)
    return client, AvailabilitySchedule(profile.availability)


def warm_up(local: LocalData) -> None:
    """Train one step once, so torch's first-call set-up is not charged to a round."""
    from fedsys.core.training import LocalTrainer, TrainConfig
    from fedsys.core.weights import ModelWeights

    trainer = LocalTrainer(TrainConfig(local_steps=1))
    trainer.train(
        local.model, ModelWeights.from_module(local.model), local.features, local.labels, 0
    )


async def run_devices(clients: list[tuple[DeployClient, AvailabilitySchedule]]) -> list[str]:
    """Run every device until the server finishes (or its trace ends); their reasons."""

    from fedsys.deploy.emulation import follow_availability

    async def one(client: DeployClient, schedule: AvailabilitySchedule) -> str:
        emulation = client.emulation
        assert emulation is not None
        return await follow_availability(client.run, schedule, emulation.trace_time_s)

    return list(await asyncio.gather(*(one(c, s) for c, s in clients)))


def shared_shards(config: RunConfig) -> Callable[[int], DataProvider]:
    """Providers of the run's shards that build its dataset once for every device of a host.

    Raises
    ------
    ValueError
        (when a provider is called) If the dataset has no client of that index.
    """
    from fedsys.deploy.client import LocalData
    from fedsys.sim.build import build_dataset, build_model

    built: list[FederatedDataset] = []

    def for_index(index: int) -> DataProvider:
        def provide(run: dict[str, object]) -> LocalData:
            if not built:
                built.append(build_dataset(config.dataset, config.seed))
            dataset = built[0]
            if not 0 <= index < dataset.num_clients:
                raise ValueError(
                    f"device {index} has no data: the run's dataset has "
                    f"{dataset.num_clients} clients"
                )
            features, labels = dataset.client_data(index)
            return LocalData(build_model(config.model, dataset, config.seed), features, labels)

        return provide

    return for_index


def default_epoch() -> float:
    """The trace's clock starts when the process starts unless ``--epoch`` says otherwise."""
    return time.time()


def run_from_args(args: argparse.Namespace, console: Console) -> int:
    """``fedsys client --profile ...``: build the devices, run them, report how they ended."""
    from fedsys.cli import resolve_config
    from fedsys.deploy.build import channel_security, folder_provider
    from fedsys.deploy.cli import _run_until_signal, client_name
    from fedsys.deploy.client import ClientRefusedError
    from fedsys.deploy.emulation import load_traces, ready_marker, wait_for_epoch
    from fedsys.deploy.logs import setup_logging
    from fedsys.wire.auth import read_token

    profiles = parse_profiles(args.profile)
    if args.traces is None or args.config is None:
        raise ValueError("--profile needs --traces FILE and --config RUN.yaml")
    single = len(profiles) == 1
    if not single and (args.token_dir is None or args.data is not None):
        raise ValueError("several --profile devices need --token-dir (and take shard = profile)")
    if single and args.token_dir is None and args.token_file is None:
        raise ValueError("--profile needs --token-file (or --token-dir)")
    if args.latency_ms < 0:
        raise ValueError(f"--latency-ms must be >= 0, got {args.latency_ms}")
    setup_logging()
    config = resolve_config(str(args.config), {})
    fleet = load_traces(args.traces, config.devices)
    shard = shared_shards(config)
    devices = []
    for profile in profiles:
        token_path = (
            args.token_file
            if args.token_dir is None
            else args.token_dir / f"{client_name(args.token_prefix, profile)}.token"
        )
        if single and args.data is not None:
            data = folder_provider(args.data)
        else:
            index = args.data_index if single and args.data_index is not None else profile
            data = shard(index)
        devices.append(EmulatedDevice(profile, read_token(token_path), data))
    security = channel_security(args.ca, args.cert, args.key, args.insecure)
    clients = [
        build_device_client(
            device,
            config,
            fleet,
            args.server,
            security,
            0.0,
            args.latency_ms / 1000.0,
            args.timings,
            args.max_attempts,
        )
        for device in devices
    ]

    async def main() -> list[str]:
        if args.epoch_file is not None:
            ready_marker(args.epoch_file, profiles[0]).write_text(f"{os.getpid()}\n")
            epoch = await wait_for_epoch(args.epoch_file)
        else:
            epoch = args.epoch if args.epoch is not None else default_epoch()
        for client, _ in clients:
            assert client.emulation is not None
            client.emulation.epoch = epoch
        return await run_devices(clients)

    try:
        reasons = _run_until_signal(main())
    except (ClientRefusedError, ConnectionError, TimeoutError) as exc:
        console.print(f"[bold red]error[/]: {exc}", highlight=False)
        return 1
    return 130 if reasons is None else 0
