"""Update compression on a bandwidth-limited fleet: accuracy and time-to-accuracy vs bytes.

Clients upload their update through a slow uplink (generated fleet with the median
bandwidth lowered to 1 Mbit/s, a 3G-class link; heavy-tailed as in the calibrated
generator). A 300k-parameter MLP makes the upload matter next to local compute. Four
codecs, each encoded to real wire bytes that set the simulated upload time:

* ``none``: float32 (4 bytes per value);
* ``int8``: 8-bit stochastic quantization, one float32 scale per 256 values;
* ``topk``: top-1% sparsification (int32 index + float32 value), error feedback on
  the client;
* ``topk_int8``: both.

Downloads stay float32 (the server broadcasts the full model). The same seed drives
data, model, fleet and selection, so the variants differ only by the codec.

Run: ``python benchmarks/compression.py [--rounds 80] [--seeds 0 1]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from fedsys.aggregation import FedAvg, Int8Quantizer, NoCompression, TopK, TopKInt8
from fedsys.aggregation.compression import Compressor
from fedsys.core.training import LocalTrainer, TrainConfig
from fedsys.data import load_digits, partition_central
from fedsys.models import mlp
from fedsys.selection import RandomSelector
from fedsys.sim import Simulator, SyncRounds
from fedsys.traces import FleetProfile, generate_fleet, model_cost_ratio

RESULTS = Path(__file__).parent / "results"
CODECS: dict[str, Compressor] = {
    "none": NoCompression(),
    "int8": Int8Quantizer(),
    "topk 1%": TopK(fraction=0.01),
    "topk 1% + int8": TopKInt8(fraction=0.01),
}


def run(codec: str, seed: int, rounds: int, target: float) -> dict:
    data = partition_central(
        load_digits(seed), kind="dirichlet", num_clients=100, seed=seed, alpha=0.5
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = mlp(data.input_shape, data.num_classes, (512, 512))
    fleet = generate_fleet(100, seed, FleetProfile(bandwidth_kbps_median=1_000.0))
    result = Simulator(
        dataset=data,
        model=model,
        fleet=fleet.without_availability(),
        selector=RandomSelector(seed=seed),
        strategy=FedAvg(),
        trainer=LocalTrainer(TrainConfig(local_steps=10, batch_size=20, lr=0.05)),
        round_mode=SyncRounds(overcommit=1.3),
        rounds=rounds,
        clients_per_round=10,
        eval_every=2,
        seed=seed,
        model_cost_ratio=model_cost_ratio(model, input_shape=data.input_shape),
        compressor=CODECS[codec],
    ).run()
    participants = sum(r.participants for r in result.records)
    bytes_up = sum(r.bytes_up for r in result.records)
    return {
        "codec": codec,
        "seed": seed,
        "bytes_per_update": bytes_up / participants,
        "bytes_up": bytes_up,
        "time_to_target_h": _hours(result.time_to_accuracy(target)),
        "bytes_to_target": _bytes_until(result, target),
        "final_accuracy": result.final_accuracy,
        "mean_round_s": statistics.mean(r.duration_s for r in result.records),
        "params": sum(p.numel() for p in model.parameters()),
    }


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def _bytes_until(result, target: float) -> int | None:
    sent = 0
    for record in result.records:
        sent += record.bytes_up
        if record.accuracy is not None and record.accuracy >= target:
            return sent
    return None


def _megabytes(count: int | None) -> float | None:
    return None if count is None else count / 1e6


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if len(known) == len(values) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=80)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--json", type=Path, default=RESULTS / "compression.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    runs = [run(codec, seed, args.rounds, args.target) for codec in CODECS for seed in args.seeds]
    summary = []
    for codec in CODECS:
        mine = [r for r in runs if r["codec"] == codec]
        summary.append(
            {
                "codec": codec,
                "bytes_per_update": mine[0]["bytes_per_update"],
                "round_s": statistics.mean(r["mean_round_s"] for r in mine),
                "tta_h": _median([r["time_to_target_h"] for r in mine]),
                "mb_to_target": _median(
                    [
                        None if r["bytes_to_target"] is None else r["bytes_to_target"] / 1e6
                        for r in mine
                    ]
                ),
                "final_accuracy": statistics.mean(r["final_accuracy"] for r in mine),
            }
        )
    base = summary[0]
    print(
        f"compression: digits, MLP 64-512-512-10 ({runs[0]['params']:,} params), 100 clients "
        f"Dirichlet 0.5, K=10 sync x1.3, 1 Mbit/s median uplink, {args.rounds} rounds, "
        f"seeds {args.seeds}, target {args.target:.0%}"
    )
    header = (
        f"{'codec':<16}{'KB/update':>11}{'x smaller':>10}{'round s':>9}"
        f"{'TTA h':>8}{'MB to target':>14}{'final acc':>11}"
    )
    print(header)
    for row in summary:
        smaller = base["bytes_per_update"] / row["bytes_per_update"]
        tta = "-" if row["tta_h"] is None else f"{row['tta_h']:.3f}"
        mb = "-" if row["mb_to_target"] is None else f"{row['mb_to_target']:.1f}"
        print(
            f"{row['codec']:<16}{row['bytes_per_update'] / 1e3:>11.1f}{smaller:>10.1f}"
            f"{row['round_s']:>9.1f}{tta:>8}{mb:>14}{row['final_accuracy']:>11.3f}"
        )
    reached = [r for r in summary[1:] if r["tta_h"] is not None]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    if base["tta_h"] is not None and reached:
        best = min(reached, key=lambda r: r["tta_h"])
        print(
            f"speedup: {base['tta_h'] / best['tta_h']:.2f}x time-to-{args.target:.0%} "
            f"with {best['codec']} vs none"
        )


if __name__ == "__main__":
    main()
