"""Cross-silo engine over an emulated WAN: Sol mode against the baseline in one deployment.

Four real site processes (each with a pool of compute workers: the machine's CPUs split
between the sites, at least one) dial one coordinator through our
user-space WAN shaper (one proxy per site: one-way delay = RTT/2 and a rate cap per
direction). Two jobs run in both modes at every (bandwidth, RTT) setting:

(a) a two-stage analytics job: ``--parts`` short histogram tasks per site over the
    site's own data, merged at the coordinator;
(b) ``--rounds`` rounds of cross-silo FedAvg over the 4 sites: an MLP of about 2 MB,
    a few local SGD steps per site per round, FedAvg at the coordinator.

Baseline mode is late binding (a site asks for each task, then pulls its inputs) with
coupled communication (the worker is held until its output is acknowledged); Sol mode
binds tasks early (pipelining degree adapted to RTT / task time), pushes inputs and
sends large outputs from communication workers; its coordinator merges FedAvg block by
block as the deltas stream in and pushes the new model's blocks to the sites already
bound to the next round, so a round's download overlaps its uploads. Both modes merge
on the same block grid and must give identical results (checked by SHA-256). gRPC runs
with TLS and bearer tokens unless ``--insecure``.

Prints the table, writes ``benchmarks/results/silo_wan.json`` and a plot of speedup
against RTT, and ends with ``speedup: X``: baseline / Sol completion time of job (a)
at 100 ms and 20 Mbit/s.

Run: ``python benchmarks/silo_wan.py [--rtts 0,50,100,200] [--rates 1000,20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from fedsys.aggregation import FedAvg
from fedsys.silo.histogram_job import histogram_job
from fedsys.silo.job import Job
from fedsys.silo.local_federation import LocalCluster
from fedsys.silo.mode import EngineMode
from fedsys.silo.shaper import LinkSettings
from fedsys.silo.training_job import fedavg_job, model_from_spec

RESULTS = Path(__file__).parent / "results"
FL_MODEL = {"kind": "mlp", "input_shape": [64], "num_classes": 10, "hidden": [1024, 448]}
FL_TRAIN = {"local_steps": 2, "batch_size": 32, "lr": 0.05}
TARGETS = {"analytics": 4.0, "fedavg": 1.5}


def analytics_job(datasets: list[str], parts: int, passes: int) -> Job:
    """Job (a): ``parts`` histogram tasks per site, one merge at the coordinator."""
    return histogram_job(datasets, parts, lo=-5.0, hi=5.0, bins=32, passes=passes,
                         name="analytics")


def fl_job(datasets: list[str], rounds: int) -> Job:
    """Job (b): cross-silo FedAvg of the ~2 MB MLP."""
    return fedavg_job(datasets, rounds, FL_MODEL, FL_TRAIN, FedAvg(), name="fedavg")


def _digest(result: Any) -> str:
    h = hashlib.sha256()
    for key in sorted(result.outputs):
        h.update(result.outputs[key].payload)
    return h.hexdigest()


async def _run_grid(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cluster = LocalCluster(workdir, sites=args.sites, workers=args.workers,
                           insecure=args.insecure, data_rows=args.rows)
    async with cluster:
        coordinator = cluster.coordinator
        assert coordinator is not None
        datasets = cluster.datasets
        jobs = {"analytics": lambda: analytics_job(datasets, args.parts, args.passes),
                "fedavg": lambda: fl_job(datasets, args.rounds)}
        modes = {"baseline": EngineMode.baseline(), "sol": EngineMode.sol()}
        # Warm-up (unmeasured): every worker runs each kind of task once.
        cluster.set_link(LinkSettings())
        for mode in modes.values():
            await coordinator.run_job(analytics_job(datasets, 2 * args.workers, 1), mode)
            await coordinator.run_job(fl_job(datasets, 2), mode)
        for rate_mbps in args.rates:
            for rtt_ms in args.rtts:
                cluster.set_link(LinkSettings.symmetric(rtt_ms / 1000, rate_mbps * 1e6))
                await asyncio.sleep(max(1.0, 4 * rtt_ms / 1000))  # RTT estimates settle
                for job_name, make_job in jobs.items():
                    row: dict[str, Any] = {"job": job_name, "rate_mbps": rate_mbps,
                                           "rtt_ms": rtt_ms}
                    digests = {}
                    for mode_name, mode in modes.items():
                        result = await coordinator.run_job(make_job(), mode, args.job_timeout_s)
                        row[f"{mode_name}_s"] = result.duration_s
                        row[f"{mode_name}_stats"] = result.stats
                        digests[mode_name] = _digest(result)
                    row["speedup"] = row["baseline_s"] / row["sol_s"]
                    row["identical_results"] = len(set(digests.values())) == 1
                    rows.append(row)
                    print(f"  {job_name:9s} {rate_mbps:6.0f} Mbit/s {rtt_ms:5.0f} ms: "
                          f"baseline {row['baseline_s']:7.2f} s  sol {row['sol_s']:7.2f} s  "
                          f"x{row['speedup']:.2f}", flush=True)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'job':10s} {'Mbit/s':>7s} {'RTT ms':>7s} {'baseline s':>11s} {'sol s':>8s} "
             f"{'speedup':>8s} {'same result':>12s}"]
    for r in rows:
        lines.append(f"{r['job']:10s} {r['rate_mbps']:7.0f} {r['rtt_ms']:7.0f} "
                     f"{r['baseline_s']:11.2f} {r['sol_s']:8.2f} {r['speedup']:8.2f} "
                     f"{'yes' if r['identical_results'] else 'NO':>12s}")
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for job in sorted({r["job"] for r in rows}):
        for rate in sorted({r["rate_mbps"] for r in rows}, reverse=True):
            pts = sorted((r["rtt_ms"], r["speedup"]) for r in rows
                         if r["job"] == job and r["rate_mbps"] == rate)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    label=f"{job}, {rate:g} Mbit/s")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("emulated RTT (ms)")
    ax.set_ylabel("speedup (baseline / Sol completion time)")
    ax.set_title("fedsys silo: Sol vs late binding + coupled sends")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtts", default="0,50,100,200", help="RTTs in ms")
    parser.add_argument("--rates", default="1000,20", help="bandwidths in Mbit/s")
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument(
        "--workers", type=int, default=max(1, (os.cpu_count() or 1) // 4),
        help="compute workers per site (default: the machine's CPUs shared by 4 sites, >= 1)")
    parser.add_argument("--parts", type=int, default=40, help="analytics tasks per site")
    parser.add_argument("--rows", type=int, default=1_000_000, help="analytics rows per site")
    parser.add_argument("--passes", type=int, default=30,
                        help="scans per analytics task (about 8 ms of CPU at 30)")
    parser.add_argument("--rounds", type=int, default=20, help="FedAvg rounds")
    parser.add_argument("--insecure", action="store_true", help="plaintext gRPC on loopback")
    parser.add_argument("--job-timeout-s", type=float, default=600.0)
    parser.add_argument("--out", default=str(RESULTS / "silo_wan.json"))
    args = parser.parse_args()
    args.rtts = [float(x) for x in args.rtts.split(",")]
    args.rates = [float(x) for x in args.rates.split(",")]
    model_bytes = 4 * sum(p.numel() for p in model_from_spec(FL_MODEL).parameters())
    print(f"silo_wan: {args.sites} sites x {args.workers} workers, analytics "
          f"{args.parts} tasks/site, FedAvg {args.rounds} rounds of a "
          f"{model_bytes / 1e6:.1f} MB model; {'plaintext' if args.insecure else 'TLS'}; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="silo-wan-") as tmp:
        rows = asyncio.run(_run_grid(args, Path(tmp)))
    wall_s = time.perf_counter() - started
    headline = next(r for r in rows if r["job"] == "analytics" and r["rtt_ms"] == 100
                    and r["rate_mbps"] == 20) if any(
        r["rtt_ms"] == 100 and r["rate_mbps"] == 20 for r in rows) else rows[-1]
    fl_100 = [r["speedup"] for r in rows if r["job"] == "fedavg" and r["rtt_ms"] == 100]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "silo_wan",
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "fl_model_bytes": model_bytes,
        "fl_train": FL_TRAIN,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_end": os.getloadavg()[0]},
        "wall_s": wall_s,
        "rows": rows,
        "targets_at_100ms": TARGETS,
        "headline_speedup": headline["speedup"],
        "headline_setting": {"job": headline["job"], "rtt_ms": headline["rtt_ms"],
                             "rate_mbps": headline["rate_mbps"]},
        "fedavg_speedups_at_100ms": fl_100,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    plot_path = out.with_suffix(".png")
    _plot(rows, plot_path)
    print()
    print(_table(rows))
    print(f"wall time {wall_s:.0f} s; results in {out} and {plot_path}")
    print(f"speedup: {headline['speedup']:.2f}")


if __name__ == "__main__":
    main()
