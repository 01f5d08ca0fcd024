"""Flower's side of ``backends.py``: run inside ``benchmarks/.flower-venv``, never imported.

Flower 1.42's simulation runtime (Ray backend, one CPU and one torch thread per client)
trains the same model on the same partition with the same local SGD as fedsys, with
Flower's message-API FedAvg sampling every client each round and no client-side
evaluation. Prints one JSON object: total wall seconds (partition load, model build,
``run_simulation`` with its Ray start-up and shutdown) and the seconds of each round.

Run: ``.flower-venv/bin/python flower_side.py PARTITION.npz MODEL ROUNDS OUT.json``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Ray workers inherit the environment: the shared workload module and one thread each.
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
sys.path.insert(0, str(HERE))

import json  # noqa: E402
from itertools import pairwise  # noqa: E402

import torch  # noqa: E402
from backends_workload import build_model, load_partition, local_sgd  # noqa: E402
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

PARTITION, MODEL = Path(sys.argv[1]), sys.argv[2]
ROUNDS, OUT = int(sys.argv[3]), Path(sys.argv[4])
os.environ["FEDSYS_BENCH_PARTITION"], os.environ["FEDSYS_BENCH_MODEL"] = str(PARTITION), MODEL

client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One client's local SGD on its share of the partition."""
    torch.set_num_threads(1)
    features, labels, offsets = load_partition(Path(os.environ["FEDSYS_BENCH_PARTITION"]))
    client = int(context.node_config["partition-id"])
    begin, end = int(offsets[client]), int(offsets[client + 1])
    model = build_model(os.environ["FEDSYS_BENCH_MODEL"])
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    generator = torch.Generator()
    generator.manual_seed(client)
    local_sgd(model, features[begin:end], labels[begin:end], generator)
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"num-examples": end - begin}),
        }
    )
    return Message(content=content, reply_to=msg)


server_app = ServerApp()
STAMPS: list[float] = []


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """FedAvg over every client each round; a round ends when its aggregate exists."""
    clients = len(load_partition(PARTITION)[2]) - 1
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=clients,
        min_available_nodes=clients,
    )

    def stamp(server_round: int, arrays: ArrayRecord) -> None:
        STAMPS.append(time.perf_counter())

    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(build_model(MODEL).state_dict()),
        num_rounds=ROUNDS,
        evaluate_fn=stamp,
    )


if __name__ == "__main__":
    started = time.perf_counter()
    clients = len(load_partition(PARTITION)[2]) - 1
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": os.cpu_count() or 1, "include_dashboard": False},
        },
    )
    total_s = time.perf_counter() - started
    # evaluate_fn runs before round 1 and after every round: differences are rounds.
    rounds = [after - before for before, after in pairwise(STAMPS)]
    if len(rounds) != ROUNDS:
        raise SystemExit(f"flower ran {len(rounds)} of {ROUNDS} rounds")
    OUT.write_text(json.dumps({"total_s": total_s, "round_s": rounds}))
    sys.stdout.flush()
    os._exit(0)  # Ray's exit hooks can hang for a minute after the simulation returned
