"""Small real federations for backend tests: ragged client sizes, a two-layer MLP."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedsys.aggregation.fedavg import FedAvg
from fedsys.core.training import LocalTrainer, TrainConfig
from fedsys.core.weights import ModelWeights
from fedsys.data.federated import FederatedDataset
from fedsys.selection.random import RandomSelector
from fedsys.sim.backends import TrainingBackend, TrainingParts, TrainJob
from fedsys.sim.rounds.base import RoundMode
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.sim.simulator import Simulator
from fedsys.traces.fleet import DeviceFleet

SIZES = (1, 3, 7, 8, 9, 16, 23, 40, 2, 12, 5, 31)
"""Client sizes around the batch size 8: smaller, equal, larger, not a multiple."""


def ragged_dataset(sizes: tuple[int, ...] = SIZES, seed: int = 0) -> FederatedDataset:
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    features = rng.normal(size=(n, 6)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] - features[:, 2] > 0).astype(np.int64)
    labels += (features[:, 3] > 1.0).astype(np.int64)
    test_x = rng.normal(size=(300, 6)).astype(np.float32)
    test_y = (test_x[:, 0] + test_x[:, 1] - test_x[:, 2] > 0).astype(np.int64)
    test_y += (test_x[:, 3] > 1.0).astype(np.int64)
    bounds = np.cumsum((0, *sizes))
    partition = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(sizes))]
    return FederatedDataset.from_partition("ragged", features, labels, partition, test_x, test_y, 3)


def small_mlp(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def training_parts(model: nn.Module, config: TrainConfig) -> TrainingParts:
    return TrainingParts(
        model=model,
        dataset=ragged_dataset(),
        trainer=LocalTrainer(config),
        device=torch.device("cpu"),
    )


def jobs_for(model: nn.Module, clients: list[int], version: int = 0) -> list[TrainJob]:
    start = ModelWeights.from_module(model)
    return [
        TrainJob(client_id=c, start=start, seed=(0, version, c, i)) for i, c in enumerate(clients)
    ]


def simulator(
    backend: TrainingBackend,
    round_mode: RoundMode | None = None,
    config: TrainConfig | None = None,
    rounds: int = 4,
    clients_per_round: int = 8,
) -> Simulator:
    dataset = ragged_dataset()
    return Simulator(
        dataset=dataset,
        model=small_mlp(),
        fleet=DeviceFleet.always_available(
            dataset.num_clients, compute_s_per_sample=np.linspace(0.5, 3.0, dataset.num_clients)
        ),
        selector=RandomSelector(seed=0),
        strategy=FedAvg(),
        trainer=LocalTrainer(config or TrainConfig(local_steps=5, batch_size=8, lr=0.2)),
        round_mode=round_mode or SyncRounds(overcommit=1.3),
        rounds=rounds,
        clients_per_round=clients_per_round,
        eval_every=1,
        seed=3,
        backend=backend,
    )
