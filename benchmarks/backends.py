"""Training backends side by side with Flower's Ray simulation and the bare PyTorch floor.

For K = 10, 100 and 1,000 clients per round (every client of a digits partition of K
clients, IID), with the digits MLP 64-128-10 and a small CNN, 10 local SGD steps of
batch 32 and lr 0.05, FedAvg, one torch thread, this measures the wall time per steady
round (median of rounds 2..R) and in total of:

* ``floor``: the bare sequential PyTorch loop (load global weights, SGD, weighted sum);
* fedsys ``sequential``, ``vectorized`` and ``ray`` (actors that batch their share,
  one per core, local cluster started inside the timing);
* Flower 1.42 (``flwr[simulation]``, Ray backend, 1 CPU and 1 torch thread per client,
  message-API FedAvg), run as ``flower_side.py`` in ``benchmarks/.flower-venv``, which
  ``flower_env.sh`` builds on first use (Flower pins protobuf<7 and rich<15).

"total" runs from building the run (partition, model, simulator; Ray start-up where a
Ray cluster is used) to the end of the last round. Every row runs in a fresh process:
interpreter start-up and the script's imports are not counted for anyone, but what the
run itself loads is (PyTorch imports ``torch._dynamo`` on the first optimizer step or
``torch.func.grad``, about a second on this machine, so each row pays it as a user's run
would; rows sharing one process would leave it all to the first). Prints the table,
writes ``results/backends.json``, and ends with ``speedup:`` = Flower total / fedsys
vectorized total at K=100 with the MLP.
Targets: that speedup >= 25, and vectorized >= 3x faster than the floor per steady
round at K=100 (printed as a row).

Run: ``python benchmarks/backends.py [--rounds 5] [--quick]`` (``--quick``: MLP only,
K = 10 and 100; the default runs every row above, smallest K first, and keeps what is
done in ``results/backends.partial.json``, which ``--report`` prints).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends_workload import BATCH_SIZE, LOCAL_STEPS, LR, bare_loop, build_model, save_partition

from fedsys.aggregation.fedavg import FedAvg
from fedsys.config.schema import DatasetConfig, IidPartition
from fedsys.core.training import LocalTrainer, TrainConfig
from fedsys.parts.builders import build_dataset
from fedsys.selection.random import RandomSelector
from fedsys.sim.backends import make_backend
from fedsys.sim.rounds.sync import SyncRounds
from fedsys.sim.simulator import Simulator
from fedsys.traces.fleet import DeviceFleet

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FLOWER_PYTHON = HERE / ".flower-venv" / "bin" / "python"
SYSTEMS = ("flower", "floor", "sequential", "vectorized", "ray")


def digits(k: int):
    """The digits training set split IID over ``k`` clients (seed 0)."""
    return build_dataset(DatasetConfig(num_clients=k, partition=IidPartition()), seed=0)


def run_fedsys(backend: str, model_name: str, k: int, rounds: int) -> dict:
    """Build and run a fedsys simulation; total and per-round wall seconds."""
    started = time.perf_counter()
    dataset = digits(k)
    settings = {"ray_workers": os.cpu_count(), "ray_worker_backend": "vectorized"}
    simulator = Simulator(
        dataset=dataset,
        model=build_model(model_name),
        fleet=DeviceFleet.always_available(k),
        selector=RandomSelector(seed=0),
        strategy=FedAvg(),
        trainer=LocalTrainer(TrainConfig(local_steps=LOCAL_STEPS, batch_size=BATCH_SIZE, lr=LR)),
        round_mode=SyncRounds(overcommit=1.0),
        rounds=rounds,
        clients_per_round=k,
        eval_every=rounds,
        seed=0,
        backend=make_backend(backend, **(settings if backend == "ray" else {})),
    )
    result = simulator.run()
    total_s = time.perf_counter() - started
    assert all(r.participants == k for r in result.records), "every client must train"
    return {
        "total_s": total_s,
        "round_s": [r.wall_s for r in result.records],
        "accuracy": result.final_accuracy,
    }


def run_floor(model_name: str, k: int, rounds: int) -> dict:
    """The bare sequential PyTorch loop over the same partition."""
    started = time.perf_counter()
    dataset = digits(k)
    times = bare_loop(
        build_model(model_name), dataset.features, dataset.labels, dataset.offsets, rounds
    )
    return {"total_s": time.perf_counter() - started, "round_s": times}


def run_flower(model_name: str, k: int, rounds: int, workdir: Path, timeout_s: float) -> dict:
    """Flower's simulation in its own venv; its own timings, read back as JSON."""
    dataset = digits(k)
    partition = workdir / f"digits-{k}.npz"
    save_partition(partition, dataset.features.numpy(), dataset.labels.numpy(), dataset.offsets)
    out = workdir / f"flower-{model_name}-{k}.json"
    log = workdir / f"flower-{model_name}-{k}.log"
    with open(log, "w") as sink:
        completed = subprocess.run(
            [
                str(FLOWER_PYTHON),
                str(HERE / "flower_side.py"),
                str(partition),
                model_name,
                str(rounds),
                str(out),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            check=False,
        )
    if completed.returncode != 0 or not out.exists():
        tail = log.read_text().strip().splitlines()[-5:]
        raise RuntimeError(f"flower run failed (exit {completed.returncode}): {' | '.join(tail)}")
    return json.loads(out.read_text())


def in_fresh_process(system: str, model_name: str, k: int, rounds: int) -> dict:
    """``run_floor`` or ``run_fedsys`` in a new interpreter (see the module docstring)."""
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--row", system, model_name, str(k),
         str(rounds)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{system} row failed: {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def retried(measure: Callable[[], dict], attempts: int = 3) -> dict:
    """Run ``measure`` again when Ray fails to start (its raylet waits only 30 s on a busy host).

    A retried row is marked ``retries``; its timing is the successful attempt's.
    """
    for attempt in range(attempts):
        try:
            return {**measure(), "retries": attempt}
        except Exception as exc:
            if attempt == attempts - 1 or "timed out during startup" not in str(exc):
                raise
            print(f"ray start-up timed out, retrying: {str(exc).splitlines()[0][:120]}", flush=True)
    raise AssertionError("unreachable")


def steady(round_s: list[float]) -> float:
    """Median of the rounds after the first (which pays warm-up)."""
    return statistics.median(round_s[1:]) if len(round_s) > 1 else round_s[0]


def ensure_flower() -> None:
    """Build ``.flower-venv`` if it is missing (Flower pins protobuf<7, rich<15)."""
    subprocess.run(["bash", str(HERE / "flower_env.sh")], check=True)


def table(results: dict) -> list[str]:
    lines = [
        f"{'model':<5} {'K':>5}  {'system':<11} {'total s':>9} {'steady round s':>15} "
        f"{'Flower/x total':>15} {'floor/x steady':>15}"
    ]
    for key, systems in results.items():
        model_name, k = key.split("/")
        flower, floor = systems.get("flower"), systems.get("floor")
        for name in SYSTEMS:
            row = systems.get(name)
            if row is None:
                continue
            vs_flower = f"{flower['total_s'] / row['total_s']:.1f}x" if flower else "-"
            vs_floor = f"{steady(floor['round_s']) / steady(row['round_s']):.2f}x" if floor else "-"
            lines.append(
                f"{model_name:<5} {k:>5}  {name:<11} {row['total_s']:>9.2f} "
                f"{steady(row['round_s']):>15.4f} {vs_flower:>15} {vs_floor:>15}"
            )
    return lines


def measure(rounds: int, quick: bool, flower_timeout_s: float) -> dict[str, dict]:
    """Every row, smallest K first (the headline K=100 rows come before K=1,000's)."""
    ks = (10, 100) if quick else (10, 100, 1000)
    models = ("mlp",) if quick else ("mlp", "cnn")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="fedsys-backends-") as tmp:
        for k in ks:
            for model_name in models:
                key = f"{model_name}/{k}"
                results[key] = {
                    "flower": retried(
                        partial(run_flower, model_name, k, rounds, Path(tmp), flower_timeout_s)
                    ),
                    "floor": in_fresh_process("floor", model_name, k, rounds),
                }
                for backend in ("sequential", "vectorized", "ray"):
                    results[key][backend] = retried(
                        partial(in_fresh_process, backend, model_name, k, rounds)
                    )
                print("\n".join(table({key: results[key]})[1:]), flush=True)
                RESULTS.mkdir(parents=True, exist_ok=True)
                (RESULTS / "backends.partial.json").write_text(json.dumps(results, indent=2))
    return results


def report(results: dict[str, dict], rounds: int) -> None:
    """Print the table and the headline; write ``results/backends.json``."""
    lines = table(results)
    headline = results["mlp/100"]
    speedup = headline["flower"]["total_s"] / headline["vectorized"]["total_s"]
    floor_ratio = steady(headline["floor"]["round_s"]) / steady(headline["vectorized"]["round_s"])
    lines.append(
        f"vectorized vs floor per steady round, K=100 MLP: {floor_ratio:.2f}x (target >= 3x)"
    )
    lines.append(f"Flower / vectorized total, K=100 MLP: {speedup:.1f}x (target >= 25x)")
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "rounds": rounds,
        "local_steps": LOCAL_STEPS,
        "batch_size": BATCH_SIZE,
        "lr": LR,
        "torch_threads": 1,
        "cpus": os.cpu_count(),
        "results": results,
        "floor_ratio_k100_mlp": floor_ratio,
        "speedup": speedup,
        "targets_met": {"speedup >= 25": speedup >= 25, "floor ratio >= 3": floor_ratio >= 3},
        "round_s_mean": {
            key: {name: float(np.mean(row["round_s"])) for name, row in systems.items()}
            for key, systems in results.items()
        },
    }
    (RESULTS / "backends.json").write_text(json.dumps(payload, indent=2))
    print(f"speedup: {speedup:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="MLP only, K = 10 and 100")
    parser.add_argument("--flower-timeout-s", type=float, default=3600.0)
    parser.add_argument(
        "--report", type=Path, help="only print the table of a results/backends.partial.json"
    )
    parser.add_argument(
        "--row",
        nargs=4,
        metavar=("SYSTEM", "MODEL", "K", "ROUNDS"),
        help="internal: measure one floor or fedsys row in this process, print its JSON",
    )
    args = parser.parse_args()
    if args.row is not None:
        torch.set_num_threads(1)
        system, model_name, k, rounds = args.row[0], args.row[1], int(args.row[2]), int(args.row[3])
        row = run_floor(model_name, k, rounds) if system == "floor" else run_fedsys(
            system, model_name, k, rounds)
        print(json.dumps(row))
        return
    if args.report is not None:
        report(json.loads(args.report.read_text()), args.rounds)
        return
    torch.set_num_threads(1)
    ensure_flower()
    report(measure(args.rounds, args.quick, args.flower_timeout_s), args.rounds)


if __name__ == "__main__":
    main()
