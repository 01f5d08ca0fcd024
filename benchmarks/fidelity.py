"""Sim-to-real fidelity: does the simulator predict what a real deployment does?

The same job runs twice: on the simulator's virtual clock, and as a real loopback
deployment (one TLS gRPC aggregator, 100 emulated devices in client processes:
compute paced to each profile, links shaped by a per-device token bucket, devices
connecting and disconnecting by their availability trace). Both read the same
fleet file, data shards and seeds; the comparison is ``fedsys fidelity``'s.

Setting
-------
* 100 clients of digits (Dirichlet alpha 0.5), K = 20 per round, 10 rounds, sync
  rounds without over-commitment (see "Stragglers" below), FedAvg, an MLP.
* Fleet: the calibrated generated fleet (lognormal compute and bandwidth, diurnal
  sessions) with its day compressed to four hours, so devices come and go during the
  run; compute charged as the traces' reference model (``model_cost_ratio 1``) and
  transfers as its 14 MB of weights (``transfer_cost_ratio: reference``).
* Time scale 0.01 on both sides: the fleet runs 100x faster than real phones, so a
  round of the slowest of 20 phones (minutes) takes seconds of wall-clock time.
* Selection: random, then Oort, both seeded. Random is run with ``--calibrate``: the
  server's own time per round and each task's protocol messages beyond the device
  profile measured on it (``clock.server_round_s``, ``clock.client_task_s``) are then
  used, out of sample, by the Oort run.
* Stragglers: with over-commitment, a real straggler keeps its device busy until it
  uploads while the simulator frees it when the round closes, so the two would pick
  from different pools; over-commitment 1.0 keeps the comparison about the clock.

Targets: median |relative error| of round duration <= 10 %, of time-to-target
accuracy <= 15 %, identical participants in every round for seeded random selection
(availability agreeing), and ``ratio: X`` = measured / simulated total time of both
runs together within 0.9-1.1. The machine is shared: timings are noisy.

Usage: ``python benchmarks/fidelity.py [--rounds N] [--clients N] [--per-round K]``.
Writes ``benchmarks/results/fidelity.json`` and ``fidelity_<selector>.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from fedsys.config.schema import RunConfig
from fedsys.fidelity.report import plot_overlay
from fedsys.fidelity.runner import run_fidelity
from fedsys.traces import generate_fleet, save_fleet

RESULTS = Path(__file__).parent / "results"
DAY_COMPRESSION = 6.0
"""The generated fleet's day lasts 4 hours of device time, so availability changes in-run."""


def fleet_file(num_clients: int, seed: int, folder: Path) -> Path:
    """The heterogeneous fleet with its availability compressed, as a trace file."""
    fleet = generate_fleet(num_clients, seed)
    fleet = replace(
        fleet,
        period_s=fleet.period_s / DAY_COMPRESSION,
        avail_starts=fleet.avail_starts / DAY_COMPRESSION,
        avail_ends=fleet.avail_ends / DAY_COMPRESSION,
    )
    return save_fleet(fleet, folder / "bench_fleet.csv")


def base_config(args: argparse.Namespace, traces: Path, output_dir: Path) -> dict:
    return {
        "seed": args.seed,
        "rounds": args.rounds,
        "clients_per_round": args.per_round,
        "target_accuracy": args.target,
        "output_dir": str(output_dir),
        "dataset": {
            "name": "digits",
            "num_clients": args.clients,
            "partition": {"kind": "dirichlet", "alpha": 0.5},
        },
        "model": {"name": "mlp", "hidden": [64]},
        "train": {"local_steps": 10, "batch_size": 20, "lr": 0.1},
        "devices": {
            "source": "file",
            "path": str(traces),
            "always_available": False,
            "model_cost_ratio": 1.0,
            "transfer_cost_ratio": "reference",
            "time_scale": args.time_scale,
        },
        "round": {"mode": "sync", "overcommit": 1.0},
        "eval": {"every": 1},
        "deploy": {"upload_slots": args.per_round, "download_slots": args.per_round},
    }


def summarize(name: str, run, calibrated: bool) -> dict:
    totals = run.report.totals
    return {
        "selector": name,
        "clock": "calibrated" if calibrated else "uncalibrated",
        "sim_total_s": totals["sim_total_s"],
        "real_total_s": totals["real_total_s"],
        "ratio": totals["ratio"],
        "median_round_error": totals["median_abs_round_error"],
        "sim_tta_s": totals["sim_time_to_target_s"],
        "real_tta_s": totals["real_time_to_target_s"],
        "tta_error": totals["time_to_target_error"],
        "same_participants": f"{totals['rounds_same_participants']}/{totals['rounds']}",
        "dropouts": f"{totals['sim_dropouts']}/{totals['real_dropouts']}",
        "accuracy": f"{totals['sim_final_accuracy']:.3f}/{totals['real_final_accuracy']:.3f}",
        "terms_s": totals["terms_s"],
        "rounds": run.report.to_json()["rounds"],
    }


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'selector':<8} {'clock':<12} {'sim s':>7} {'real s':>7} {'ratio':>6} "
        f"{'med|err|':>8} {'sim tta':>7} {'real tta':>8} {'tta err':>7} "
        f"{'same':>5} {'drop s/r':>8} {'acc s/r':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        tta_err = "-" if r["tta_error"] != r["tta_error"] else f"{100 * r['tta_error']:+.1f}%"
        sim_tta = "-" if r["sim_tta_s"] is None else f"{r['sim_tta_s']:.1f}"
        real_tta = "-" if r["real_tta_s"] is None else f"{r['real_tta_s']:.1f}"
        print(
            f"{r['selector']:<8} {r['clock']:<12} {r['sim_total_s']:>7.1f} "
            f"{r['real_total_s']:>7.1f} {r['ratio']:>6.3f} "
            f"{100 * r['median_round_error']:>7.1f}% {sim_tta:>7} {real_tta:>8} {tta_err:>7} "
            f"{r['same_participants']:>5} {r['dropouts']:>8} {r['accuracy']:>11}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.6)
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--warmup-s", type=float, default=15.0)
    parser.add_argument("--devices-per-process", type=int, default=25)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-fidelity"))
    args = parser.parse_args()

    started = time.perf_counter()
    console = Console(stderr=True)  # the deployments' own summaries; the table goes to stdout
    args.work_dir.mkdir(parents=True, exist_ok=True)
    traces = fleet_file(args.clients, args.seed, args.work_dir)
    rows, runs = [], {}
    clock = None
    for name, selector in (("random", {"name": "random"}), ("oort", {"name": "oort"})):
        data = base_config(args, traces, args.work_dir / name)
        data["selector"] = selector
        if clock is not None:
            data["clock"] = clock
        config = RunConfig.model_validate(data)
        run = run_fidelity(
            config,
            args.work_dir / name,
            calibrate_clock=clock is None,
            devices_per_process=args.devices_per_process,
            warmup_s=args.warmup_s,
            note=lambda text: console.print(text, highlight=False),
        )
        if run.calibration is not None:
            clock = run.calibration
        if run.uncalibrated is not None:
            rows.append(summarize(name, replace(run, report=run.uncalibrated), False))
        rows.append(summarize(name, run, True))
        runs[name] = run
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot_overlay(
            list(run.sim), list(run.real), RESULTS / f"fidelity_{name}.png", config.target_accuracy
        )
    print_table(rows)
    calibrated = [r for r in rows if r["clock"] == "calibrated"]
    ratio = sum(r["real_total_s"] for r in calibrated) / sum(r["sim_total_s"] for r in calibrated)
    median_round = statistics.median(r["median_round_error"] for r in calibrated)
    tta = [abs(r["tta_error"]) for r in calibrated if r["tta_error"] == r["tta_error"]]
    random_same = next(r["same_participants"] for r in calibrated if r["selector"] == "random")
    verdict = {
        "median_round_error": median_round,
        "median_round_error_met": median_round <= 0.10,
        "tta_error": max(tta) if tta else None,
        "tta_error_met": bool(tta) and max(tta) <= 0.15,
        "random_same_participants": random_same,
        "participants_met": random_same.split("/")[0] == random_same.split("/")[1],
        "ratio": ratio,
        "ratio_met": 0.9 <= ratio <= 1.1,
        "calibrated_clock": clock,
    }
    out = RESULTS / "fidelity.json"
    out.write_text(
        json.dumps(
            {
                "settings": vars(args) | {"work_dir": str(args.work_dir)},
                "rows": rows,
                "verdict": verdict,
            },
            indent=2,
            default=str,
        )
    )
    terms = ", ".join(f"{k}={v:.4f} s" for k, v in clock.items())
    print(f"clock calibrated on random: {terms} (used as is by the oort run)")
    print(
        f"median |round error| {100 * median_round:.1f}% (target <= 10%), time-to-target "
        f"error {'-' if not tta else f'{100 * max(tta):.1f}%'} (target <= 15%), random "
        f"participants identical in {random_same} rounds; shared 2-core machine: noisy timings"
    )
    print(f"wall time {time.perf_counter() - started:.0f} s; results in {out}")
    print(f"ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
