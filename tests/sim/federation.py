"""Small real federations for simulator tests: a separable problem, tiny model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedsys.aggregation.fedavg import FedAvg
from fedsys.core.training import LocalTrainer, TrainConfig
from fedsys.data.federated import FederatedDataset
from fedsys.selection.random import RandomSelector
from fedsys.sim.rounds.base import RoundMode
from fedsys.sim.simulator import Simulator
from fedsys.traces.fleet import DeviceFleet


def tiny_dataset(num_clients: int, per_client: int = 12, seed: int = 0) -> FederatedDataset:
    rng = np.random.default_rng(seed)
    n = num_clients * per_client
    features = rng.normal(size=(n, 4)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(np.int64)
    test_x = rng.normal(size=(200, 4)).astype(np.float32)
    test_y = (test_x[:, 0] + test_x[:, 1] > 0).astype(np.int64)
    partition = [np.arange(i * per_client, (i + 1) * per_client) for i in range(num_clients)]
    return FederatedDataset.from_partition("tiny", features, labels, partition, test_x, test_y, 2)


def tiny_model(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(4, 2)


def make_simulator(
    fleet: DeviceFleet,
    round_mode: RoundMode,
    *,
    rounds: int = 1,
    clients_per_round: int = 3,
    num_clients: int | None = None,
    steps: int = 2,
    batch_size: int = 4,
) -> Simulator:
    n = fleet.num_clients if num_clients is None else num_clients
    return Simulator(
        dataset=tiny_dataset(n),
        model=tiny_model(),
        fleet=fleet,
        selector=RandomSelector(seed=0),
        strategy=FedAvg(),
        trainer=LocalTrainer(TrainConfig(local_steps=steps, batch_size=batch_size, lr=0.1)),
        round_mode=round_mode,
        rounds=rounds,
        clients_per_round=clients_per_round,
        eval_every=1,
        seed=0,
    )
