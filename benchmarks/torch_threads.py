"""PyTorch intra-op threads for a federated client's local step: the measurement behind
``sim.threads: auto`` (:data:`fedsys.core.threads.AUTO_MIN_PARAMETERS`).

One "client" = 10 SGD steps on mini-batches of 20 (fedsys's default local training)
through an MLP with 784 inputs, one hidden layer and 10 classes; the hidden width sets
the model's size. Each size is timed with one thread and with PyTorch's default (one per
core), on the quiet machine and beside one CPU-bound process (a ``python -c`` busy
loop). ``speedup`` > 1: more threads were faster.

Run: ``python benchmarks/torch_threads.py [--clients 20]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

RESULTS = Path(__file__).parent / "results"
HIDDEN = (64, 256, 1024, 2048, 4096, 8192, 16384)


@contextmanager
def busy_process() -> Iterator[None]:
    """One CPU-bound process beside the caller while the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def time_clients(model: nn.Module, clients: int, threads: int) -> float:
    """Seconds per client of ``clients`` local trainings on ``threads`` threads."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 784, generator=gen)
    y = torch.randint(0, 10, (200,), generator=gen)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    best = float("inf")
    for _ in range(3):  # best of 3: the least disturbed
        began = time.perf_counter()
        for _ in range(clients):
            model.load_state_dict(start)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
            for step in range(10):
                idx = torch.arange(step * 20, step * 20 + 20)
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        best = min(best, (time.perf_counter() - began) / clients)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    default = torch.get_num_threads()
    rows = []
    for hidden in HIDDEN:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        params = sum(p.numel() for p in model.parameters())
        clients = max(2, args.clients * 256 // max(hidden, 256))
        row: dict[str, float | int] = {"hidden": hidden, "parameters": params}
        for load in ("quiet", "busy"):
            if load == "busy":
                with busy_process():
                    one = time_clients(model, clients, 1)
                    many = time_clients(model, clients, default)
            else:
                one = time_clients(model, clients, 1)
                many = time_clients(model, clients, default)
            row[f"{load}_1_ms"] = 1000 * one
            row[f"{load}_{default}_ms"] = 1000 * many
            row[f"{load}_speedup"] = one / many
        rows.append(row)
    print(f"torch_threads: ms per client (10 steps, batch 20), 1 vs {default} threads, "
          f"PyTorch {torch.__version__}")
    print(f"{'parameters':>11}{'quiet 1':>10}{f'quiet {default}':>10}{'speedup':>9}"
          f"{'busy 1':>10}{f'busy {default}':>10}{'speedup':>9}")
    for row in rows:
        print(f"{row['parameters']:>11,}{row['quiet_1_ms']:>10.2f}"
              f"{row[f'quiet_{default}_ms']:>10.2f}{row['quiet_speedup']:>9.2f}"
              f"{row['busy_1_ms']:>10.2f}{row[f'busy_{default}_ms']:>10.2f}"
              f"{row['busy_speedup']:>9.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"default_threads": default, "torch": torch.__version__, "rows": rows}
    (RESULTS / "torch_threads.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
