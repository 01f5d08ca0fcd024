"""``fedsys client --profile``: one process hosting one or many emulated devices.

A phone fleet of a hundred devices would be a hundred Python processes with torch
each; on a laptop that is most of its memory. One host process runs any number of
:class:`~fedsys.deploy.client.DeployClient` coroutines instead, each with its own
token, TLS channel, data shard, device profile and availability, so the server sees
exactly as many independent clients.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy (torch, grpc): imported when a device is built, not by the CLI parser
    from fedsys.config.schema import RunConfig
    from fedsys.data.federated import FederatedDataset
    from fedsys.deploy.client import DataProvider, DeployClient, LocalData
    from fedsys.deploy.emulation import AvailabilitySchedule
    from fedsys.traces.fleet import DeviceFleet
    from fedsys.wire.transport import ChannelSecurity


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
    from fedsys.core.threads import use_torch_threads
    from fedsys.deploy.client import DeployClient
    from fedsys.deploy.emulation import AvailabilitySchedule, DeviceEmulation, profile_for
    from fedsys.wire.transport import Backoff

    run = config.model_dump(mode="json")
    local = device.data(run)
    use_torch_threads(config.sim.threads, local.model)  # before the warm-up step
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
    from fedsys.parts.builders import build_dataset, build_model

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


@dataclass(frozen=True)
class DeviceHostOptions:
    """What ``fedsys client --profile`` was asked to emulate, typed.

    ``profiles`` are device ids of ``traces``; each device reads its token from
    ``token_file`` (one device) or ``token_dir/<prefix>NNNN.token`` and trains on the
    run's shard of its id (or ``data_index`` / ``data`` for one device).
    """

    profiles: tuple[int, ...]
    traces: Path
    config: RunConfig
    server: str
    security: ChannelSecurity
    token_file: Path | None = None
    token_dir: Path | None = None
    token_prefix: str = "client-"
    data_index: int | None = None
    data: Path | None = None
    latency_ms: float = 0.0
    timings: Path | None = None
    epoch: float | None = None
    epoch_file: Path | None = None
    max_attempts: int = 20


def check_host_options(options: DeviceHostOptions) -> None:
    """Refuse option sets that cannot name each device's token and data.

    Raises
    ------
    ValueError
        Naming the missing or conflicting option.
    """
    single = len(options.profiles) == 1
    if not single and (options.token_dir is None or options.data is not None):
        raise ValueError("several --profile devices need --token-dir (and take shard = profile)")
    if single and options.token_dir is None and options.token_file is None:
        raise ValueError("--profile needs --token-file (or --token-dir)")
    if options.latency_ms < 0:
        raise ValueError(f"--latency-ms must be >= 0, got {options.latency_ms}")


def run_device_host(options: DeviceHostOptions) -> list[str] | None:
    """Build the devices, run them until the server finishes; their reasons.

    ``None`` when SIGINT/SIGTERM stopped the host.
    """
    from fedsys.deploy.build import folder_provider
    from fedsys.deploy.emulation import load_traces, ready_marker, wait_for_epoch
    from fedsys.wire.auth import client_name, read_token
    from fedsys.wire.lifecycle import run_until_signal

    check_host_options(options)
    config = options.config
    profiles = list(options.profiles)
    single = len(profiles) == 1
    fleet = load_traces(options.traces, config.devices)
    shard = shared_shards(config)
    devices = []
    for profile in profiles:
        token_path = (
            options.token_file
            if options.token_dir is None
            else options.token_dir / f"{client_name(options.token_prefix, profile)}.token"
        )
        assert token_path is not None
        if single and options.data is not None:
            data = folder_provider(options.data)
        else:
            index = options.data_index if single and options.data_index is not None else profile
            data = shard(index)
        devices.append(EmulatedDevice(profile, read_token(token_path), data))
    clients = [
        build_device_client(
            device,
            config,
            fleet,
            options.server,
            options.security,
            0.0,
            options.latency_ms / 1000.0,
            options.timings,
            options.max_attempts,
        )
        for device in devices
    ]

    async def main() -> list[str]:
        if options.epoch_file is not None:
            ready_marker(options.epoch_file, profiles[0]).write_text(f"{os.getpid()}\n")
            epoch = await wait_for_epoch(options.epoch_file)
        else:
            epoch = options.epoch if options.epoch is not None else default_epoch()
        for client, _ in clients:
            assert client.emulation is not None
            client.emulation.epoch = epoch
        return await run_devices(clients)

    reasons: list[str] | None = run_until_signal(main())
    return reasons
