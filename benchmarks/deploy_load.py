"""Load on a real aggregator: hundreds of concurrent lightweight clients on loopback.

A real ``fedsys server`` process (TLS, per-client tokens, streaming FedAvg) serves a
1M-parameter MLP to N lightweight clients run as asyncio tasks in a few worker
processes; each client has its own TLS channel and token, really downloads every
model version in checksummed chunks and uploads a full float32 update, but skips
local training (it sends a small fixed delta), so the load is the server's own:
connections, transfers, validation and aggregation.

Reported per N: rounds per minute, p50/p99 of the time from the start of an upload
(header sent) to the server's verdict, and the server's peak resident memory above
its idle baseline (measured by the server after imports and the model are loaded,
before any client connects), beside its memory once all N are connected but before
any transfer. A least-squares fit over N splits the growth into a fixed part (the
model-sized buffers: global weights, served model, accumulator, updates in flight)
and a per-client part (each TLS connection's state). ``ratio:`` = the growth at the
largest N / model bytes.

Also per N: the server event loop's lag, p50/p99 in ms, from the server's summary: a
timer on its loop sleeps 10 ms again and again and counts how late each wake-up is,
the wait every connection shares while the loop is busy (target: p99 < 100 ms).

Then a run at the largest N where 5 % of the clients (``--stall-fraction``) stall
mid-upload every time they are selected: granted a slot, they send half their chunks
and go silent with the stream open (a phone losing signal). The server cuts each at its
inactivity deadline (``deploy.transfer_idle_s``), records it dropped and the staller
reconnects. ``stall_ratio:`` = rounds per minute with stallers / without (target >= 0.8).

Run: ``python benchmarks/deploy_load.py [--clients 100 250 500] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

RESULTS = Path(__file__).parent / "results"
HIDDEN = [1024, 960]  # digits MLP 64-1024-960-10: 1,059,274 parameters


def server_config(
    clients: int, rounds: int, output_dir: Path, pki: Path, deploy: dict | None = None
) -> dict:
    return {
        "seed": 0,
        "rounds": rounds,
        "clients_per_round": clients,
        "target_accuracy": None,
        "output_dir": str(output_dir),
        "dataset": {"name": "digits", "num_clients": clients, "partition": {"kind": "iid"}},
        "model": {"name": "mlp", "hidden": HIDDEN},
        "round": {"mode": "sync", "overcommit": 1.0},
        "eval": {"every": 1000},
        "deploy": {
            "cert_dir": str(pki),
            "wait_for_clients_s": 600,
            "settle_s": 5.0,
            "round_timeout_s": 900,
            "ping_interval_s": 10.0,
            "finish_grace_s": 2.0,
            **(deploy or {}),
        },
    }


def run_clients(
    port: int, pki: str, names: list[str], out_file: str, stallers: frozenset[str] = frozenset()
) -> None:
    """Worker process: one asyncio task per client; latencies to ``out_file``.

    Clients in ``stallers`` send half of each update's chunks, then fall silent.
    """
    import grpc
    import torch
    from torch import nn

    from fedsys.deploy.client import DeployClient, LocalData, TaskOutcome
    from fedsys.wire import auth
    from fedsys.wire.chunks import sha256_hex, split
    from fedsys.wire.logs import setup_logging
    from fedsys.wire.protos import deploy_pb2
    from fedsys.wire.transport import Backoff, ChannelSecurity

    latencies: list[float] = []
    setup_logging(Path(out_file).with_suffix(".log"), to_stderr=False)

    class LightClient(DeployClient):
        """Downloads and uploads for real; a fixed small delta instead of training."""

        stalls = False

        async def perform(self, stub, task):
            weights = await self.retrying("download", lambda: self.download(stub, task))
            payload = (weights.flat * 0 + 1e-4).numpy().astype("<f4").tobytes()
            header = deploy_pb2.UpdateHeader(
                task_id=task.task_id,
                round_idx=task.round_idx,
                model_version=task.model_version,
                num_samples=10,
                mean_loss=1.0,
                sum_sq_loss=10.0,
                samples_seen=10,
                codec="none",
                payload_bytes=[len(payload)],
            )
            if self.stalls:
                return await self.stall(stub, header, payload, task.round_idx)
            sent = time.perf_counter()
            accepted, reason = await self.retrying(
                "upload", lambda: self.upload(stub, header, payload)
            )
            latencies.append(time.perf_counter() - sent)
            return TaskOutcome(task.round_idx, accepted, reason, 0.0)

        async def stall(self, stub, header, payload, round_idx):
            """Take the grant, send half the chunks, then silence with the stream open."""
            header.sha256 = sha256_hex(payload)
            call = stub.Upload(metadata=self._metadata, timeout=600)
            await call.write(deploy_pb2.UploadMessage(header=header))
            reply = await call.read()
            if reply is grpc.aio.EOF or reply.HasField("verdict"):
                return TaskOutcome(round_idx, False, "no grant", 0.0)
            chunks = list(split(payload, int(reply.grant.max_chunk_bytes), header.sha256))
            for chunk in chunks[: len(chunks) // 2]:
                await call.write(deploy_pb2.UploadMessage(chunk=chunk))
            await asyncio.sleep(3600)  # the server cuts it; the session ends, we reconnect
            raise AssertionError("unreachable")

    def provider(run: dict) -> LocalData:  # a model shaped like the server's
        layers = [nn.Flatten(), nn.Linear(64, HIDDEN[0]), nn.ReLU()]
        layers += [nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU(), nn.Linear(HIDDEN[1], 10)]
        return LocalData(nn.Sequential(*layers), torch.zeros(10, 64), torch.zeros(10).long())

    async def main() -> None:
        security = ChannelSecurity(ca_path=Path(pki) / "ca.pem")
        clients = [
            LightClient(
                f"127.0.0.1:{port}",
                auth.read_token(Path(pki) / "clients" / f"{name}.token"),
                security,
                provider,
                backoff=Backoff(base_s=0.5, cap_s=5.0, max_attempts=30),
            )
            for name in names
        ]
        for client, name in zip(clients, names, strict=True):
            client.stalls = name in stallers
        await asyncio.gather(*(c.run() for c in clients))

    asyncio.run(main())
    Path(out_file).write_text(json.dumps(latencies))


def measure(
    clients: int, rounds: int, workers: int, root: Path, deploy: dict, stallers: int = 0
) -> dict:
    from fedsys.wire import auth, tls

    names = [f"client-{i:04d}" for i in range(clients)]
    stalling = frozenset(names[:: clients // stallers]) if stallers else frozenset()
    root = root / f"stall-{stallers}" if stallers else root
    root.mkdir(parents=True, exist_ok=True)
    pki = root / f"pki-{clients}"
    tls.provision(pki, names)
    auth.issue_tokens(pki, names)
    out = root / f"run-{clients}"
    config_path = root / f"config-{clients}.yaml"
    config_path.write_text(yaml.safe_dump(server_config(clients, rounds, out, pki, deploy)))
    port_file = root / f"port-{clients}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = (root / f"server-{clients}.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fedsys",
            "server",
            str(config_path),
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    procs = []
    try:
        deadline = time.monotonic() + 120
        while not (port_file.is_file() and port_file.read_text().strip()):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log.name}")
            time.sleep(0.1)
        port = int(port_file.read_text())
        shares = np.array_split(np.array(names), workers)
        context = multiprocessing.get_context("spawn")
        for index, share in enumerate(shares):
            proc = context.Process(
                target=run_clients,
                args=(
                    port,
                    str(pki),
                    list(share),
                    str(root / f"lat-{clients}-{index}.json"),
                    stalling,
                ),
            )
            proc.start()
            procs.append(proc)
        if server.wait(timeout=3600) != 0:
            raise RuntimeError(f"server failed; see {log.name}")
        for proc in procs:
            proc.join(timeout=120)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        if server.poll() is None:
            server.kill()
        log.close()
    latencies = []
    for index in range(workers):
        path = root / f"lat-{clients}-{index}.json"
        if path.is_file():
            latencies += json.loads(path.read_text())
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    span_s = records[-1]["end_s"] - records[0]["start_s"]
    growth = summary["server_peak_rss_bytes"] - summary["server_baseline_rss_bytes"]
    return {
        "clients": clients,
        "stallers": len(stalling),
        "dropped": [r["dropouts"] for r in records],
        "rounds": len(records),
        "participants": [r["participants"] for r in records],
        "rounds_per_min": 60.0 * len(records) / span_s,
        "round_s": [r["duration_s"] for r in records],
        "ack_p50_s": float(np.percentile(latencies, 50)),
        "ack_p99_s": float(np.percentile(latencies, 99)),
        "acks": len(latencies),
        "model_bytes": summary["model_bytes"],
        "baseline_rss_mb": summary["server_baseline_rss_bytes"] / 2**20,
        "peak_rss_mb": summary["server_peak_rss_bytes"] / 2**20,
        "connected_rss_mb": summary["server_connected_rss_bytes"] / 2**20,
        "growth_mb": growth / 2**20,
        "growth_over_model": growth / summary["model_bytes"],
        "loop_lag_p50_ms": summary["server_loop_lag_p50_ms"],
        "loop_lag_p99_ms": summary["server_loop_lag_p99_ms"],
        "loop_lag_max_ms": summary["server_loop_lag_max_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 250, 500])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--keep", action="store_true", help="keep the run folders and logs")
    parser.add_argument(
        "--stall-fraction",
        type=float,
        default=0.05,
        help="clients stalling mid-upload in the extra run at the largest N (0: no such run)",
    )
    parser.add_argument(
        "--deploy",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override a server setting of the deploy section (YAML value), e.g. upload_slots=4",
    )
    args = parser.parse_args()
    deploy = {}
    for item in args.deploy:
        key, _, value = item.partition("=")
        deploy[key] = yaml.safe_load(value)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="deploy_load_"))
    try:
        for clients in args.clients:
            rows.append(measure(clients, args.rounds, args.workers, tmp, deploy))
        stall = None
        stallers = round(args.stall_fraction * args.clients[-1])
        if stallers:
            stall = measure(args.clients[-1], args.rounds, args.workers, tmp, deploy, stallers)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    model_mb = rows[0]["model_bytes"] / 2**20
    print(
        f"deploy_load: real server process (TLS, tokens, streaming FedAvg), MLP 64-{HIDDEN[0]}-"
        f"{HIDDEN[1]}-10 ({rows[0]['model_bytes'] // 4:,} params, {model_mb:.2f} MiB), "
        f"all clients every round, {args.rounds} rounds, {args.workers} client processes, "
        "loopback, 2 cores"
    )
    header = (
        f"{'clients':>7} {'rounds/min':>10} {'round s':>8} {'ack p50 s':>9} {'ack p99 s':>9} "
        f"{'baseline MiB':>12} {'connected MiB':>13} {'peak MiB':>9} {'growth MiB':>10} "
        f"{'growth/model':>12} {'lag p50 ms':>10} {'lag p99 ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['clients']:>7} {row['rounds_per_min']:>10.2f} "
            f"{np.median(row['round_s']):>8.1f} {row['ack_p50_s']:>9.2f} {row['ack_p99_s']:>9.2f} "
            f"{row['baseline_rss_mb']:>12.1f} {row['connected_rss_mb']:>13.1f} "
            f"{row['peak_rss_mb']:>9.1f} "
            f"{row['growth_mb']:>10.1f} {row['growth_over_model']:>12.2f} "
            f"{row['loop_lag_p50_ms']:>10.1f} {row['loop_lag_p99_ms']:>10.1f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deploy_load.json").write_text(json.dumps(rows, indent=2))
    if stall is not None:
        (RESULTS / "deploy_load_stall.json").write_text(json.dumps([rows[-1], stall], indent=2))
    if len(rows) > 1:  # growth = fixed + per_client x clients, least squares
        per_client_mb, fixed_mb = np.polyfit(
            [r["clients"] for r in rows], [r["growth_mb"] for r in rows], 1
        )
        idle_kb = 1024 * np.mean(
            [(r["connected_rss_mb"] - r["baseline_rss_mb"]) / r["clients"] for r in rows]
        )
        print(
            f"growth fit: {fixed_mb:.1f} MiB fixed ({fixed_mb / model_mb:.1f}x model) + "
            f"{per_client_mb * 1024:.0f} KiB per client, of which {idle_kb:.0f} KiB is an "
            "idle connection (the rest: buffers a TLS connection keeps after its transfers)"
        )
    last = rows[-1]
    verdict = "met" if last["growth_over_model"] <= 8 else "NOT met"
    print(f"target: peak memory above baseline at {last['clients']} clients <= 8x model: {verdict}")
    print(f"ratio: {last['growth_over_model']:.2f}")
    if stall is not None:
        print_stall(last, stall)
    lag_verdict = "met" if last["loop_lag_p99_ms"] < 100 else "NOT met"
    print(
        f"target: server event loop lag p99 at {last['clients']} clients < 100 ms: "
        f"{lag_verdict} ({last['loop_lag_p99_ms']:.1f} ms)"
    )


def print_stall(clean: dict, stall: dict) -> None:
    """The stall run beside the clean run at the same N; ends in ``stall_ratio:``."""
    print(
        f"stalls: {stall['stallers']} of {stall['clients']} clients send half of each update "
        "and go silent, every round they are selected (cut at deploy.transfer_idle_s)"
    )
    header = f"{'run':>9} {'rounds/min':>10} {'round s':>18} {'participants':>16} {'dropped':>9}"
    print(header)
    print("-" * len(header))
    for label, row in (("clean", clean), ("stallers", stall)):
        round_s = " ".join(f"{s:.1f}" for s in row["round_s"])
        participants = " ".join(str(p) for p in row["participants"])
        dropped = " ".join(str(d) for d in row.get("dropped", []))
        print(
            f"{label:>9} {row['rounds_per_min']:>10.2f} {round_s:>18} {participants:>16} "
            f"{dropped:>9}"
        )
    ratio = stall["rounds_per_min"] / clean["rounds_per_min"]
    verdict = "met" if ratio >= 0.8 else "NOT met"
    print(f"target: rounds/min with 5 % stallers / without >= 0.8: {verdict}")
    print(f"stall_ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
