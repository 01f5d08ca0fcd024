"""Simulator overhead against the physical floor: a bare PyTorch loop doing the same training.

Both sides train exactly the same (round, client) pairs, with the same model, mini-batch
size, number of local steps and learning rate, and both average the results FedAvg-style.
The simulator additionally runs selection, the virtual clock, event handling, loss
statistics and bookkeeping; the ratio of wall times is what the framework costs. It is
timed twice: without checkpoints, and writing its atomic checkpoint (weights, strategy
and selector states, clock, pending events, records; temp file, fsync, rename) every
10 rounds as ``fedsys run`` does by default. The headline ratio is with checkpoints.

Threads on a busy machine: the default run (``fedsys run``'s embedded quickstart, its
first ``--busy-rounds`` rounds) is timed alone and beside one CPU-bound process (a
``python -c`` busy loop), with fedsys's default ``sim.threads`` (``auto``: one thread
for this small MLP) and with PyTorch's default (one thread per core, what fedsys used
before ``sim.threads``). ``busy_ratio`` is busy / quiet wall time with the default.

Run: ``python benchmarks/sim_overhead.py [--rounds 20] [--clients-per-round 50]``.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedsys.config import parse_config
from fedsys.config.resolve import resolve_config
from fedsys.data.federated import FederatedDataset
from fedsys.parts.builders import build_model
from fedsys.sim.simulator import Simulator

RESULTS = Path(__file__).parent / "results"
CHECKPOINT_EVERY = 10


def sim_config(rounds: int, k: int, clients: int) -> dict:
    return {
        "seed": 0,
        "rounds": rounds,
        "clients_per_round": k,
        "target_accuracy": None,
        "dataset": {"name": "digits", "num_clients": clients, "partition": {"kind": "iid"}},
        "model": {"name": "mlp", "hidden": [64]},
        "train": {"local_steps": 10, "batch_size": 20, "lr": 0.1},
        "devices": {"source": "generated", "always_available": True},
        "round": {"mode": "sync", "overcommit": 1.3},
        "eval": {"every": rounds},
    }


def run_simulator(
    config_raw: dict, checkpoint: Path | None = None
) -> tuple[float, list[list[int]]]:
    """Wall seconds of ``Simulator.run`` and the clients it trained each round."""
    simulator = Simulator.from_config(parse_config(config_raw))
    if checkpoint is not None:
        simulator.checkpoint_path = checkpoint
        simulator.checkpoint_every = CHECKPOINT_EVERY
    started = time.perf_counter()
    result = simulator.run()
    elapsed = time.perf_counter() - started
    return elapsed, [r.extra["clients"] for r in result.records]


def run_bare_loop(
    dataset: FederatedDataset, model: nn.Module, schedule: list[list[int]], seed: int
) -> float:
    """The floor: load global state, SGD, weighted-sum the parameters; nothing else."""
    steps, batch_size, lr = 10, 20, 0.1
    started = time.perf_counter()
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    for round_idx, clients in enumerate(schedule):
        sums = {k: torch.zeros_like(v) for k, v in global_state.items()}
        total = 0
        for client in clients:
            model.load_state_dict(global_state)
            x, y = dataset.client_data(client)
            n = len(y)
            batch = min(batch_size, n)
            gen = torch.Generator().manual_seed(hash((seed, round_idx, client)) & 0xFFFFFFFF)
            order = torch.cat(
                [torch.randperm(n, generator=gen) for _ in range(-(-steps * batch // n))]
            )
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
            for idx in order[: steps * batch].view(steps, batch):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            for key, value in model.state_dict().items():
                sums[key].add_(value, alpha=n)
            total += n
        global_state = {k: v / total for k, v in sums.items()}
    model.load_state_dict(global_state)
    with torch.no_grad():
        model(dataset.test_features).argmax(1)
    return time.perf_counter() - started


@contextmanager
def busy_process() -> Iterator[None]:
    """One CPU-bound process beside the caller while the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it start spinning
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def time_default_run(rounds: int, threads: int | str) -> tuple[float, int]:
    """Wall seconds of the quickstart run's first ``rounds`` rounds with ``sim.threads``,
    and the threads it trained with."""
    config = resolve_config(None, {"rounds": rounds, "sim.threads": threads})
    simulator = Simulator.from_config(config)
    started = time.perf_counter()
    simulator.run()
    return time.perf_counter() - started, simulator.torch_threads()


def busy_rows(rounds: int, torch_default: int) -> list[dict]:
    """The default run quiet and busy, with the default threads and PyTorch's."""
    time_default_run(2, "auto")  # warm-up: first-call costs are no variant's
    rows = []
    for name, threads in (("sim.threads=auto (default)", "auto"),
                          (f"PyTorch default ({torch_default})", torch_default)):
        quiet_s, used = time_default_run(rounds, threads)
        with busy_process():
            busy_s, _ = time_default_run(rounds, threads)
        rows.append({"variant": name, "threads": used, "quiet_s": quiet_s, "busy_s": busy_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients-per-round", type=int, default=50)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--busy-rounds", type=int, default=30, help="rounds of the default run timed busy/quiet"
    )
    args = parser.parse_args()
    torch_default = torch.get_num_threads()  # before anything sets it
    busy = busy_rows(args.busy_rounds, torch_default)
    torch.set_num_threads(1)

    raw = sim_config(args.rounds, args.clients_per_round, args.clients)
    config = parse_config(raw)
    dataset = Simulator.from_config(config).dataset
    sim_times, ckpt_times, bare_times = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "checkpoint.pt"
        for _ in range(args.repeats):
            elapsed, schedule = run_simulator(raw)
            sim_times.append(elapsed)
            elapsed, again = run_simulator(raw, checkpoint)
            assert again == schedule, "checkpointing must not change the run"
            ckpt_times.append(elapsed)
            model = build_model(config.model, dataset, config.seed)
            bare_times.append(run_bare_loop(dataset, model, schedule, config.seed))
        checkpoint_bytes = checkpoint.stat().st_size
    trained = sum(len(c) for c in schedule)
    # Best of N interleaved repeats: the least disturbed run of each side on a shared host.
    sim_s, ckpt_s, bare_s = min(sim_times), min(ckpt_times), min(bare_times)
    ratio = ckpt_s / bare_s
    rows = [
        ("bare PyTorch loop (floor)", bare_s, 1000 * bare_s / args.rounds, 1.0),
        ("fedsys Simulator", sim_s, 1000 * sim_s / args.rounds, sim_s / bare_s),
        (
            f"  + checkpoint every {CHECKPOINT_EVERY}",
            ckpt_s,
            1000 * ckpt_s / args.rounds,
            ratio,
        ),
    ]
    print(
        f"sim_overhead: digits MLP, {args.rounds} rounds x K={args.clients_per_round} "
        f"({trained} client trainings), best of {args.repeats} interleaved repeats, 1 torch thread"
    )
    print(f"{'variant':<30}{'wall_s':>10}{'ms/round':>12}{'x floor':>10}")
    for name, wall, per_round, times in rows:
        print(f"{name:<30}{wall:>10.3f}{per_round:>12.2f}{times:>10.3f}")
    print(f"checkpoint size: {checkpoint_bytes / 1024:.1f} KiB")
    print(
        f"default run (fedsys run's quickstart, {args.busy_rounds} rounds) alone and beside "
        f"one CPU-bound process, {os.cpu_count()} CPUs"
    )
    print(f"{'threads':<30}{'n':>4}{'quiet_s':>10}{'busy_s':>10}{'busy/quiet':>12}")
    for row in busy:
        print(
            f"{row['variant']:<30}{row['threads']:>4}{row['quiet_s']:>10.2f}"
            f"{row['busy_s']:>10.2f}{row['busy_s'] / row['quiet_s']:>12.2f}"
        )
    busy_ratio = busy[0]["busy_s"] / busy[0]["quiet_s"]
    print(f"busy_ratio: {busy_ratio:.3f} (busy / quiet wall time with the default; target <= 1.3)")
    print(f"ratio: {ratio:.3f}x with checkpoints every {CHECKPOINT_EVERY} rounds (target <= 1.15x)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "rounds": args.rounds,
        "clients_per_round": args.clients_per_round,
        "checkpoint_every": CHECKPOINT_EVERY,
        "sim_times_s": sim_times,
        "sim_checkpoint_times_s": ckpt_times,
        "bare_times_s": bare_times,
        "ratio": ratio,
        "ratio_without_checkpoints": sim_s / bare_s,
        "median_ratio": statistics.median(ckpt_times) / statistics.median(bare_times),
        "checkpoint_bytes": checkpoint_bytes,
        "busy_rounds": args.busy_rounds,
        "busy": busy,
        "busy_ratio": busy_ratio,
        "trained_clients": trained,
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    (RESULTS / "sim_overhead.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
