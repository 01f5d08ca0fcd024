"""The streaming FedAvg average equals the naive one and holds no update it has used."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import torch
from torch import nn

from fedsys.aggregation import FedAvg
from fedsys.core.update import ClientUpdate
from fedsys.core.weights import ModelWeights


def _updates(model_weights: ModelWeights, count: int, seed: int) -> list[ClientUpdate]:
    generator = torch.Generator().manual_seed(seed)
    return [
        ClientUpdate(
            client_id=i,
            delta=model_weights.with_flat(
                torch.randn(model_weights.flat.shape, generator=generator)
            ),
            num_samples=int(torch.randint(1, 50, (1,), generator=generator)),
        )
        for i in range(count)
    ]


def test_streaming_average_equals_naive_weighted_average() -> None:
    weights = ModelWeights.from_module(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)))
    updates = _updates(weights, count=37, seed=0)

    new, _ = FedAvg().aggregate(weights, iter(updates), None)

    stacked = torch.stack([u.delta.flat for u in updates]).double()
    samples = torch.tensor([u.num_samples for u in updates], dtype=torch.float64)
    naive = weights.flat.double() + (samples[:, None] * stacked).sum(0) / samples.sum()
    torch.testing.assert_close(new.flat.double(), naive, rtol=1e-5, atol=1e-5)


def test_streaming_releases_each_update_before_the_next_arrives() -> None:
    weights = ModelWeights.from_module(nn.Linear(20, 10))
    alive: list[weakref.ref[ClientUpdate]] = []
    max_alive = 0

    def produce() -> Iterator[ClientUpdate]:
        nonlocal max_alive
        for i in range(30):
            made = _updates(weights, count=1, seed=i)[0]
            gc.collect()
            max_alive = max(max_alive, sum(ref() is not None for ref in alive))
            alive.append(weakref.ref(made))
            yield made

    FedAvg().aggregate(weights, produce(), None)

    assert max_alive <= 1
