"""Where local training runs: ``train.device`` resolved to a torch device.

The server side of a run (global weights, strategy and selector states, compression,
checkpoints) always stays on the CPU, so a checkpoint resumes on any machine; only the
clients' local training and the central evaluation run on the chosen device, with the
model and every client's data moved there once.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from fedsys.config.loader import ConfigError
from fedsys.core.weights import ModelWeights
from fedsys.data.federated import FederatedDataset


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cpu``; ``cuda``.

    Raises
    ------
    ConfigError
        If ``cuda`` is asked for and torch sees no CUDA GPU, or the name is unknown.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "train.device=cuda but torch sees no CUDA GPU "
                "(torch.cuda.is_available() is False): use auto or cpu"
            )
        return torch.device("cuda")
    raise ConfigError(f"train.device must be auto, cpu or cuda, got {name!r}")


def dataset_on(dataset: FederatedDataset, device: torch.device) -> FederatedDataset:
    """``dataset`` with its training and test tensors on ``device`` (itself on the CPU)."""
    if device.type == "cpu":
        return dataset
    return replace(
        dataset,
        features=dataset.features.to(device),
        labels=dataset.labels.to(device),
        test_features=dataset.test_features.to(device),
        test_labels=dataset.test_labels.to(device),
    )


def model_on(model: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``model`` on ``device`` (the model itself on the CPU)."""
    return model if device.type == "cpu" else copy.deepcopy(model).to(device)


def weights_on(weights: ModelWeights, device: torch.device) -> ModelWeights:
    """``weights`` with their flat vector on ``device`` (themselves when already there)."""
    if weights.flat.device == device:
        return weights
    return ModelWeights(weights.specs, weights.flat.to(device))
