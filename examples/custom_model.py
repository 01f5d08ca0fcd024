"""Plug your own PyTorch model into fedsys by import path, and run it.

Run from anywhere: ``python examples/custom_model.py [--rounds 30]``. Python puts this
script's folder on ``sys.path``, so the config can name ``custom_model:small_cnn``; a
model in your own installed package is named the same way (``mypkg.models:build``).

A model factory takes the dataset's input shape and number of classes and returns an
``nn.Module`` whose ``state_dict`` holds float tensors; fedsys seeds torch's RNG from
the run's seed around the call, so the initial weights are reproducible.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from math import prod

from torch import nn

from fedsys.config import parse_config
from fedsys.sim import Simulator


def small_cnn(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """A two-layer CNN over the 8x8 ``digits`` images (flattened to 64 features)."""
    side = int(prod(input_shape) ** 0.5)
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * (side // 2) ** 2, num_classes),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    config = parse_config(
        {
            "rounds": args.rounds,
            "clients_per_round": 10,
            "dataset": {"name": "digits", "num_clients": 50, "partition": {"kind": "iid"}},
            "model": {"factory": "custom_model:small_cnn"},
            "train": {"local_steps": 10, "batch_size": 20, "lr": 0.1},
            "eval": {"every": 5},
        }
    )
    result = Simulator.from_config(config).run()
    print(f"custom model: final accuracy {result.final_accuracy:.3f} after {args.rounds} rounds")


if __name__ == "__main__":
    main()
