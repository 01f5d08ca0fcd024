"""Options several commands share, declared once so their flags and help agree."""

from __future__ import annotations

import argparse


def add_fleet_launch_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """How an emulated fleet is laid out on this machine (``deploy local``, ``fidelity``)."""
    parser.add_argument(
        "--devices-per-process", type=int, default=10, help=f"{prefix}devices per process"
    )
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=10.0,
        help=f"{prefix}time for the devices online at the start to connect before round 0",
    )


def add_overrides(
    parser: argparse.ArgumentParser, help: str = "override a dotted config key"
) -> None:
    """``--set KEY=VALUE`` (repeatable), as every command that takes a run config has it."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )
