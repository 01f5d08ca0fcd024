"""Small reference models for the built-in datasets; users bring any ``nn.Module``."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from torch import nn


def mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (64,)) -> nn.Module:
    """A ReLU multilayer perceptron over flattened inputs."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = prod(input_shape)
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def logistic_regression(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Multinomial logistic regression (the LEAF Synthetic baseline model)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(prod(input_shape), num_classes))


def cnn1d(input_shape: Sequence[int], num_classes: int, channels: int = 16) -> nn.Module:
    """A small 1-D convolutional net for sequence-like inputs such as MNIST-1D."""
    length = prod(input_shape)
    return nn.Sequential(
        nn.Unflatten(1, (1, length)),
        nn.Conv1d(1, channels, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Conv1d(channels, channels, kernel_size=5, padding=2, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * ((length + 1) // 2), num_classes),
    )
