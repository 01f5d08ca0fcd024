"""The workload of ``backends.py``, in plain PyTorch and NumPy only.

Shared by the fedsys side and the Flower side (which runs in its own virtual
environment without fedsys): the two models, the partition file format and the bare
sequential loop, so every system trains the same models on the same client data with
the same local steps, batch size and learning rate.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOCAL_STEPS, BATCH_SIZE, LR = 10, 32, 0.05


def mlp() -> nn.Module:
    """The digits MLP 64-128-10."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn() -> nn.Module:
    """A small CNN on the 8x8 digit images: two 3x3 convolutions, one linear layer."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 10),
    )


MODELS = {"mlp": mlp, "cnn": cnn}


def build_model(name: str, seed: int = 0) -> nn.Module:
    """The named model with weights drawn from ``seed`` (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name]()


def save_partition(
    path: Path, features: np.ndarray, labels: np.ndarray, offsets: np.ndarray
) -> None:
    """Client ``i`` holds rows ``offsets[i]:offsets[i+1]``; plain ``.npz``, no pickle."""
    np.savez(path, features=features, labels=labels, offsets=offsets)


def load_partition(path: Path) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Features, labels and client offsets written by :func:`save_partition`."""
    with np.load(path, allow_pickle=False) as data:
        return (
            torch.from_numpy(data["features"]),
            torch.from_numpy(data["labels"]),
            data["offsets"].copy(),
        )


def local_sgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> None:
    """``LOCAL_STEPS`` SGD steps of batch ``min(BATCH_SIZE, n)`` on one client's data."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    n = len(y)
    batch = min(BATCH_SIZE, n)
    passes = -(-LOCAL_STEPS * batch // n)
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])
    for step in range(LOCAL_STEPS):
        idx = order[step * batch : (step + 1) * batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bare_loop(
    model: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    offsets: np.ndarray,
    rounds: int,
) -> list[float]:
    """The floor: every client of every round, load global weights, SGD, weighted average.

    Returns the wall seconds of each round.
    """
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    generator = torch.Generator()
    generator.manual_seed(0)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        sums = {k: torch.zeros_like(v) for k, v in global_state.items()}
        total = 0
        for client in range(len(offsets) - 1):
            begin, end = int(offsets[client]), int(offsets[client + 1])
            if end == begin:
                continue
            model.load_state_dict(global_state)
            local_sgd(model, features[begin:end], labels[begin:end], generator)
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    sums[k] += v * (end - begin)
            total += end - begin
        global_state = {k: v / total for k, v in sums.items()}
        times.append(time.perf_counter() - started)
    return times
