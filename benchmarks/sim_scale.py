"""Simulator cost per round as the number of registered clients grows.

A real federation registers far more devices than it selects: FedScale's traces hold
hundreds of thousands. The per-round work of the simulator (availability, selection,
timelines, training K clients, aggregation) must not grow with the registered
population beyond what selection itself needs. This benchmark registers 1,000 /
10,000 / 100,000 clients with realistic device traces (heavy-tailed speeds and
bandwidth, diurnal availability from :func:`fedsys.traces.generate_fleet`), trains
K=100 of them per round (sync rounds, over-commitment 1.3) with a small model, and
reports the host's wall time per round for the random and the Oort selector.

Run: ``python benchmarks/sim_scale.py [--rounds 10] [--populations 1000 10000 100000]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedsys.aggregation import FedAvg
from fedsys.core.training import LocalTrainer, TrainConfig
from fedsys.data.federated import FederatedDataset
from fedsys.selection import OortSelector, RandomSelector
from fedsys.sim import Simulator, SyncRounds
from fedsys.traces import generate_fleet

RESULTS = Path(__file__).parent / "results"
FEATURES, CLASSES, SAMPLES_PER_CLIENT = 16, 10, 20


def federation(num_clients: int, seed: int) -> FederatedDataset:
    """A linearly separable task split evenly: 20 samples per registered client."""
    rng = np.random.default_rng(seed)
    n = num_clients * SAMPLES_PER_CLIENT
    centres = rng.normal(size=(CLASSES, FEATURES)).astype(np.float32)
    labels = rng.integers(0, CLASSES, size=n)
    features = centres[labels] + rng.normal(size=(n, FEATURES)).astype(np.float32)
    test_labels = rng.integers(0, CLASSES, size=2000)
    test = centres[test_labels] + rng.normal(size=(2000, FEATURES)).astype(np.float32)
    parts = np.arange(n).reshape(num_clients, SAMPLES_PER_CLIENT)
    return FederatedDataset.from_partition(
        f"blobs-{num_clients}", features, labels, list(parts), test, test_labels, CLASSES
    )


def simulator(num_clients: int, selector_name: str, rounds: int, k: int) -> Simulator:
    torch.manual_seed(0)
    selector = OortSelector(seed=0) if selector_name == "oort" else RandomSelector(seed=0)
    return Simulator(
        dataset=federation(num_clients, seed=0),
        model=nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES)),
        fleet=generate_fleet(num_clients, seed=0),
        selector=selector,
        strategy=FedAvg(),
        trainer=LocalTrainer(TrainConfig(local_steps=5, batch_size=10, lr=0.1)),
        round_mode=SyncRounds(overcommit=1.3),
        rounds=rounds,
        clients_per_round=k,
        eval_every=rounds,
        model_cost_ratio=1.0,
    )


def per_round_ms(sim: Simulator) -> tuple[float, float]:
    """Median and p90 host milliseconds per round, the first (warm-up) round excluded."""
    walls = [1000 * record.wall_s for record in sim.run().records[1:]]
    return statistics.median(walls), float(np.percentile(walls, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients-per-round", type=int, default=100)
    parser.add_argument("--populations", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", type=Path, default=RESULTS / "sim_scale.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    cells = [(s, n) for s in ("random", "oort") for n in args.populations]
    sims = {
        cell: simulator(cell[1], cell[0], args.rounds + 1, args.clients_per_round) for cell in cells
    }
    trials: dict[tuple[str, int], list[tuple[float, float]]] = {cell: [] for cell in cells}
    for _ in range(args.trials):  # interleaved, so background load hits every cell alike
        for cell in cells:
            trials[cell].append(per_round_ms(sims[cell]))
    rows = []
    for (selector, population), measured in trials.items():
        median_ms, p90_ms = min(measured)
        rows.append(
            {
                "selector": selector,
                "registered": population,
                "median_ms_per_round": median_ms,
                "p90_ms_per_round": p90_ms,
                "trials_ms": [m for m, _ in measured],
            }
        )

    def cost(selector: str, population: int) -> float:
        return next(
            r["median_ms_per_round"]
            for r in rows
            if r["selector"] == selector and r["registered"] == population
        )

    smallest, largest = min(args.populations), max(args.populations)
    print(
        f"sim_scale: K={args.clients_per_round} per round, sync x1.3, generated traces with "
        f"availability, MLP {FEATURES}-32-{CLASSES}, median of {args.rounds} rounds, best of "
        f"{args.trials} interleaved trials, 1 thread"
    )
    print(f"{'selector':<10}{'registered':>12}{'ms/round':>12}{'p90 ms':>10}{'vs smallest':>13}")
    for row in rows:
        relative = row["median_ms_per_round"] / cost(row["selector"], smallest)
        row["relative_to_smallest"] = relative
        print(
            f"{row['selector']:<10}{row['registered']:>12,}{row['median_ms_per_round']:>12.1f}"
            f"{row['p90_ms_per_round']:>10.1f}{relative:>12.2f}x"
        )
    ratios = {s: cost(s, largest) / cost(s, smallest) for s in ("random", "oort")}
    print(f"oort ratio: {ratios['oort']:.2f}x ({largest:,} vs {smallest:,} registered)")
    print(
        f"ratio: {ratios['random']:.2f}x (random, {largest:,} vs {smallest:,} registered; "
        f"target <= 1.3x)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
