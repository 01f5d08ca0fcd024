"""A standing federation vs one-shot runs: 20 queries and 2 training jobs from 2 analysts.

Four sample sites (each a hospital ``visits`` table and a shard of a small digits
training set) sit behind the WAN shaper at 100 ms RTT and 20 Mbit/s per direction.

- **standing**: one ``fedsys silo local``-style standing federation is started once
  (its start-up time is reported apart); then two analysts, each on a thread of its
  own, submit one training job from a run config (5 rounds over the 4 sites) and then
  10 SQL queries one after the other (each waits for its answer; 14 exact, 4
  differentially private, 2 secure in all), all at once against the running
  coordinator. Total: from the first submission to the last answer.
- **one-shot**: the same work as today's commands: one ``fedsys query --sites
  sites.yaml --rtt-ms 100 --rate-mbps 20`` process per query (it starts a coordinator
  and 4 site processes, runs the query, stops them), one after the other, and each
  training job on a federation started for it alone and stopped after it.

Query latency is submission to answer (the one-shot command's wall time). Prints the
table, writes ``benchmarks/results/federation.json`` and ends with ``speedup: X`` =
one-shot total / standing total (target: at least 10).

Run: ``python benchmarks/federation.py [--queries 20] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from fedsys.analytics.sample_data import write_sample_sites
from fedsys.federation.local import demo_config, demo_hospitals, standing_local
from fedsys.silo.shaper import LinkSettings
from fedsys.wire.logs import setup_logging
from fedsys.wire.supervise import child_env

RESULTS = Path(__file__).parent / "results"
TARGET = 10.0
BOUNDS = {"age": [0, 100], "length_of_stay": [1, 60], "cost": [0, 200000]}
DOMAINS = {"sex": ["F", "M"],
           "diagnosis": ["cardiac", "diabetes", "fracture", "infection", "respiratory"]}
EXACT = [
    "SELECT diagnosis, COUNT(*) AS stays, AVG(length_of_stay) AS days FROM visits "
    "GROUP BY diagnosis ORDER BY diagnosis",
    "SELECT sex, AVG(age) AS age, AVG(cost) AS cost FROM visits GROUP BY sex ORDER BY sex",
    "SELECT COUNT(*) AS n, MIN(age) AS youngest, MAX(age) AS oldest FROM visits",
    "SELECT diagnosis, SUM(cost) AS total FROM visits WHERE age >= 65 GROUP BY diagnosis "
    "ORDER BY total DESC",
    "SELECT sex, diagnosis, COUNT(*) AS n FROM visits GROUP BY sex, diagnosis "
    "ORDER BY sex, diagnosis",
    "SELECT AVG(length_of_stay) AS days, STDDEV(cost) AS spread FROM visits",
    "SELECT diagnosis, MAX(cost) AS most FROM visits GROUP BY diagnosis ORDER BY diagnosis",
]
DP = [("SELECT COUNT(*) AS n, AVG(age) AS age FROM visits", 0.1),
      ("SELECT diagnosis, COUNT(*) AS n FROM visits GROUP BY diagnosis", 0.1)]
SECURE = ["SELECT sex, SUM(cost) AS total FROM visits GROUP BY sex"]


def workload(count: int) -> list[dict[str, Any]]:
    """``count`` queries: 70 % exact, 20 % DP, 10 % secure, interleaved."""
    kinds = []
    for i in range(count):
        slot = i % 10
        if slot in (3, 8):
            sql, epsilon = DP[(i // 10 + slot) % len(DP)]
            kinds.append({"sql": sql, "epsilon": epsilon})
        elif slot == 6:
            kinds.append({"sql": SECURE[0], "secure": True})
        else:
            kinds.append({"sql": EXACT[i % len(EXACT)]})
    return kinds


def standing(args: argparse.Namespace, workdir: Path, queries: list[dict[str, Any]]
             ) -> dict[str, Any]:
    """The work submitted by two analysts at once to one standing federation."""
    link = LinkSettings.symmetric(args.rtt_ms / 1000, args.rate_mbps * 1e6)
    config = demo_config(args.sites, rounds=args.rounds)
    config_text = yaml.safe_dump(config.model_dump(mode="json"))
    out: dict[str, Any] = {}

    async def main() -> None:
        started = time.perf_counter()
        async with standing_local(workdir, args.sites, args.workers, link,
                                  training=config) as (_, _, access):
            out["startup_s"] = time.perf_counter() - started
            await asyncio.sleep(max(1.0, 6 * args.rtt_ms / 1000))  # RTT estimates settle
            latencies: list[float] = []
            accuracies: list[float] = []
            errors: list[str] = []

            def analyst(name: str, mine: list[dict[str, Any]]) -> None:
                try:
                    fed = access.client(name)
                    job_id = fed.submit(config_text)
                    for query in mine:
                        sent = time.perf_counter()
                        fed.query(query["sql"], epsilon=query.get("epsilon"),
                                  secure=query.get("secure", False), bounds=BOUNDS,
                                  domains=DOMAINS)
                        latencies.append(time.perf_counter() - sent)
                    fed.wait(job_id, 1200)
                    accuracies.append(fed.result(job_id)["summary"]["final_accuracy"])
                except Exception as exc:  # reported, and the run counts as failed
                    errors.append(f"{name}: {exc}")

            began = time.perf_counter()
            threads = [threading.Thread(target=analyst, args=(name, queries[i::2]))
                       for i, name in enumerate(("alice", "bob"))]
            for thread in threads:
                thread.start()
            await asyncio.to_thread(lambda: [t.join() for t in threads])
            out.update(total_s=time.perf_counter() - began, latencies=latencies,
                       accuracies=accuracies, errors=errors)

    asyncio.run(main())
    return out


def one_shot(args: argparse.Namespace, workdir: Path, queries: list[dict[str, Any]]
             ) -> dict[str, Any]:
    """The same work as one process per query and one federation per training job."""
    sites_file = write_sample_sites(workdir / "tables", hospitals=demo_hospitals(args.sites))
    latencies, errors = [], []
    began = time.perf_counter()
    for i, query in enumerate(queries):
        cmd = [sys.executable, "-m", "fedsys", "query", "--sites", str(sites_file),
               "--rtt-ms", str(args.rtt_ms), "--rate-mbps", str(args.rate_mbps), "--json",
               "--workdir", str(workdir / f"q{i}")]
        if query.get("epsilon"):
            cmd += ["--epsilon", str(query["epsilon"])]
        if query.get("secure"):
            cmd += ["--secure"]
        sent = time.perf_counter()
        done = subprocess.run([*cmd, query["sql"]], capture_output=True, text=True,
                              timeout=900, env=child_env(), check=False)
        latencies.append(time.perf_counter() - sent)
        if done.returncode != 0:
            errors.append(f"query {i}: {done.stderr.strip()[-300:]}")
        print(f"  one-shot query {i + 1}/{len(queries)}: {latencies[-1]:.1f} s", flush=True)
    config = demo_config(args.sites, rounds=args.rounds)
    accuracies = []
    for j in range(2):
        async def train(folder: Path) -> float:
            link = LinkSettings.symmetric(args.rtt_ms / 1000, args.rate_mbps * 1e6)
            async with standing_local(folder, args.sites, args.workers, link,
                                      training=config) as (_, _, access):
                fed = access.client("alice")
                text = yaml.safe_dump(config.model_dump(mode="json"))
                job_id = await asyncio.to_thread(fed.submit, text)
                await asyncio.to_thread(fed.wait, job_id, 1200)
                summary = (await asyncio.to_thread(fed.result, job_id))["summary"]
                return float(summary["final_accuracy"])

        sent = time.perf_counter()
        accuracies.append(asyncio.run(train(workdir / f"train{j}")))
        print(f"  one-shot training {j + 1}/2: {time.perf_counter() - sent:.1f} s", flush=True)
    return {"total_s": time.perf_counter() - began, "latencies": latencies,
            "accuracies": accuracies, "errors": errors}


def summary_row(name: str, run: dict[str, Any], jobs: int) -> dict[str, Any]:
    latencies = np.asarray(run["latencies"], dtype=float)
    return {"mode": name, "total_s": run["total_s"],
            "p50_s": float(np.percentile(latencies, 50)) if latencies.size else None,
            "p99_s": float(np.percentile(latencies, 99)) if latencies.size else None,
            "jobs_per_min": jobs / (run["total_s"] / 60), "startup_s": run.get("startup_s"),
            "accuracies": run["accuracies"], "errors": run["errors"]}


def render(console: Console, rows: list[dict[str, Any]], config: dict[str, Any],
           speedup: float, out: Path) -> None:
    """The table, the errors, then the headline."""
    table = Table(title=f"{config['queries']} queries + 2 training jobs, 2 analysts, "
                        f"{config['sites']} sites at {config['rtt_ms']:g} ms / "
                        f"{config['rate_mbps']:g} Mbit/s")
    for column in ("mode", "total (s)", "query p50 (s)", "query p99 (s)", "jobs/min",
                   "start-up (s)", "final accuracy", "errors"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["mode"], f"{row['total_s']:.1f}", f"{row['p50_s']:.2f}",
                      f"{row['p99_s']:.2f}", f"{row['jobs_per_min']:.1f}",
                      "-" if row["startup_s"] is None else f"{row['startup_s']:.1f}",
                      ", ".join(f"{a:.3f}" for a in row["accuracies"]),
                      str(len(row["errors"])))
    console.print(table)
    for row in rows:
        for error in row["errors"]:
            console.print(f"{row['mode']} error: {error}", highlight=False, markup=False)
    console.print(f"results in {out}", highlight=False)
    console.print(f"speedup: {speedup:.2f}", highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each training job")
    parser.add_argument("--workers", type=int, default=1, help="compute workers per site")
    parser.add_argument("--rtt-ms", type=float, default=100.0)
    parser.add_argument("--rate-mbps", type=float, default=20.0)
    parser.add_argument("--out", default=str(RESULTS / "federation.json"))
    parser.add_argument("--show", metavar="JSON", help="print the table of a results file")
    args = parser.parse_args()
    console = Console(width=max(110, Console().width))
    if args.show:
        saved = json.loads(Path(args.show).read_text())
        render(console, saved["rows"], saved["config"], saved["speedup"], Path(args.show))
        return
    console.print(f"federation: {args.sites} sites, {args.queries} queries + 2 training jobs "
                  f"({args.rounds} rounds) from 2 analysts, {args.rtt_ms:g} ms RTT, "
                  f"{args.rate_mbps:g} Mbit/s; {os.cpu_count()} CPUs, load "
                  f"{os.getloadavg()[0]:.1f}", highlight=False)
    queries = workload(args.queries)
    jobs = len(queries) + 2
    with tempfile.TemporaryDirectory(prefix="federation-bench-") as tmp:
        setup_logging(Path(tmp) / "coordinator.log", to_stderr=False)
        console.print("standing federation ...", highlight=False)
        kept = standing(args, Path(tmp) / "standing", queries)
        console.print("one-shot runs ...", highlight=False)
        single = one_shot(args, Path(tmp) / "oneshot", queries)
    rows = [summary_row("standing", kept, jobs), summary_row("one-shot", single, jobs)]
    speedup = single["total_s"] / kept["total_s"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "federation", "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_end": os.getloadavg()[0]},
        "queries": queries, "rows": rows, "target": TARGET, "speedup": speedup,
        "target_met": speedup >= TARGET}, indent=2) + "\n")
    render(console, rows, vars(args), speedup, out)


if __name__ == "__main__":
    main()
