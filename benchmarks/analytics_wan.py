"""Federated SQL over an emulated WAN: Sol mode vs baseline mode vs shipping the raw data.

A TPC-H-like data set (fedsys's own generator: DuckDB's tpch extension needs a
download) is split by order key over 4 real site processes, each holding its
``lineitem`` and ``orders`` tables in DuckDB behind our WAN shaper (100 ms RTT and
20 Mbit/s per direction by default). Every query of the set runs three ways:

- **sol**: the query is planned into ``--parts`` partial-aggregate tasks per site,
  bound early (pipelined) and merged at the coordinator;
- **baseline**: the same tasks with late binding and coupled sends (a site asks for each
  task when it has finished the previous one, as Spark does);
- **raw**: every site ships the query's table (its Parquet file) to the coordinator,
  which loads them into DuckDB and runs the query there.

Sol and baseline answers must be identical; both must match the raw (central) answer
(exactly, or within the sketch error bounds for approximate quantiles and distinct
counts). Prints times and payload bytes moved per query, writes
``benchmarks/results/analytics_wan.json`` and ends with ``speedup: X`` = baseline / Sol
total time over the query set (target: at least 4).

Run: ``python benchmarks/analytics_wan.py [--orders 200000] [--parts 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedsys.analytics.catalog import SitesFile, SiteSpec
from fedsys.analytics.local_sites import local_cluster
from fedsys.analytics.planner import plan_query
from fedsys.analytics.query import FederatedQueryEngine, QueryOptions
from fedsys.analytics.tpch import QUERIES, generate_sites
from fedsys.silo.job import JobBuilder
from fedsys.silo.mode import EngineMode
from fedsys.silo.shaper import LinkSettings
from fedsys.silo.task_registry import Output, TaskContext, task

RESULTS = Path(__file__).parent / "results"
TARGET = 4.0
EXPORT_MODULE = "benchmarks.analytics_wan"
APPROXIMATE = {"price_stats": (4, 5), "distinct_parts": (1,)}  # sketch-estimated columns


@task("bench.export_table")
def export_table(ctx: TaskContext, params: Mapping[str, Any], inputs: Sequence[Output]
                 ) -> Output:
    """The site's raw table file (only benchmark sites register this: raw data leaves)."""
    assert ctx.data_path is not None
    tables = json.loads(ctx.data_path.read_text())["tables"]
    return Output(Path(tables[str(params["table"])]).read_bytes(), {"site": ctx.site})


async def run_raw(engine: FederatedQueryEngine, sql: str, workdir: Path
                  ) -> tuple[list[tuple[Any, ...]], float, int, Any]:
    """Ship the query's table from every site, then query the union in one DuckDB."""
    import duckdb

    started = time.perf_counter()
    table = plan_query(sql).table
    sites = engine.sites()
    job = JobBuilder("ship")
    for site in sites:
        job.site_task(site, "bench.export_table", {"table": table}, dataset=engine.dataset,
                      site=site)
    result = await engine.coordinator.run_job(job.build(sites), EngineMode.sol(), 600)
    paths = []
    for site in sites:
        path = workdir / f"shipped-{site}-{table}.parquet"
        path.write_bytes(result.outputs[site].payload)
        paths.append(str(path))
    con = duckdb.connect(config={"threads": 1})
    con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet(?)", [paths])
    rows = con.execute(sql).fetchall()
    moved = sum(len(o.payload) for o in result.outputs.values())
    return rows, time.perf_counter() - started, moved, con


def same_answer(name: str, rows: Sequence[Sequence[Any]], truth: Sequence[Sequence[Any]]
                ) -> bool:
    """Equal to the central answer: exact columns to 1e-9 (relative), sketch columns within
    their error (quantiles: within the KLL rank error of the truth, checked by
    :func:`quantiles_within_rank_error`; distinct counts: 3 HLL standard errors)."""
    if len(rows) != len(truth):
        return False
    approximate = APPROXIMATE.get(name, ())
    for row, want in zip(rows, truth, strict=True):
        for i, (value, expected) in enumerate(zip(row, want, strict=True)):
            if isinstance(expected, dict):
                if {float(k): v for k, v in value.items()} != {
                        float(k): v for k, v in expected.items()}:
                    return False
            elif i in approximate:
                continue  # checked against the data by the caller
            elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
                if not np.isclose(float(value), float(expected), rtol=1e-9, atol=0):
                    return False
            elif value != expected:
                return False
    return True


def sketches_within_error(name: str, rows: Sequence[Sequence[Any]], con: Any) -> bool:
    """Whether the sketch columns of ``rows`` are within their error of the raw data."""
    import datasketches as ds

    if name == "price_stats":
        rank_error = ds.kll_doubles_sketch(200).normalized_rank_error(False)
        for row in rows:
            for q, estimate in ((0.5, row[4]), (0.99, row[5])):
                (rank,), = con.execute(
                    "SELECT AVG((l_extendedprice <= ?)::DOUBLE) FROM lineitem "
                    "WHERE l_shipmode = ?", [estimate, row[0]]).fetchall()
                if abs(rank - q) > rank_error:
                    return False
    if name == "distinct_parts":
        for flag, estimate in rows:
            (truth,), = con.execute("SELECT COUNT(DISTINCT l_partkey) FROM lineitem "
                                    "WHERE l_returnflag = ?", [flag]).fetchall()
            if abs(estimate - truth) > 3 * 1.04 / np.sqrt(2**12) * truth:
                return False
    return True


async def run_set(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    tables = generate_sites(workdir / "tables", args.sites, args.orders, seed=args.seed)
    spec = SitesFile(dataset="tpch", sites=[
        SiteSpec(name=f"site-{i}", tables={k: str(v) for k, v in t.items()})
        for i, t in enumerate(tables)])
    cluster = local_cluster(spec, workdir, workers=args.workers)
    cluster.task_modules = (*cluster.task_modules, EXPORT_MODULE)
    rows: list[dict[str, Any]] = []
    async with cluster:
        assert cluster.coordinator is not None
        sol = FederatedQueryEngine(cluster.coordinator, "tpch", EngineMode.sol())
        base = FederatedQueryEngine(cluster.coordinator, "tpch", EngineMode.baseline())
        options = QueryOptions(parts=args.parts)
        for sql in QUERIES.values():  # warm-up: every worker loads its tables once
            await sol.run(sql, options)
            await base.run(sql, options)
        cluster.set_link(LinkSettings.symmetric(args.rtt_ms / 1000, args.rate_mbps * 1e6))
        await asyncio.sleep(max(1.0, 6 * args.rtt_ms / 1000))  # RTT estimates settle
        for name, sql in QUERIES.items():
            row: dict[str, Any] = {"query": name}
            for mode, engine in (("baseline", base), ("sol", sol)):
                result = await engine.run(sql, options)
                row[f"{mode}_s"], row[f"{mode}_bytes"] = result.duration_s, result.bytes_moved
                row[f"{mode}_rows"] = result.rows
            truth, row["raw_s"], row["raw_bytes"], con = await run_raw(sol, sql, workdir)
            if name in APPROXIMATE:  # KLL compaction is randomized: check both against data
                row["sol_equals_baseline"] = all(
                    same_answer(name, r, row["baseline_rows"])
                    and sketches_within_error(name, r, con)
                    for r in (row["sol_rows"], row["baseline_rows"]))
            else:
                row["sol_equals_baseline"] = row["sol_rows"] == row["baseline_rows"]
            row["equals_central"] = same_answer(name, row["sol_rows"], truth) and \
                sketches_within_error(name, row["sol_rows"], con)
            row["speedup"] = row["baseline_s"] / row["sol_s"]
            print(f"  {name:15s} baseline {row['baseline_s']:6.2f} s  sol {row['sol_s']:6.2f} s"
                  f"  raw {row['raw_s']:6.2f} s  x{row['speedup']:.2f}", flush=True)
            for key in ("sol_rows", "baseline_rows"):
                row[key] = len(row[key])
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'query':15s} {'baseline s':>10s} {'sol s':>7s} {'raw s':>7s} {'sol KB':>8s} "
            f"{'raw KB':>9s} {'speedup':>8s} {'sol=base':>9s} {'=central':>9s}")
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['query']:15s} {r['baseline_s']:10.2f} {r['sol_s']:7.2f} {r['raw_s']:7.2f} "
            f"{r['sol_bytes'] / 1e3:8.1f} {r['raw_bytes'] / 1e3:9.1f} {r['speedup']:8.2f} "
            f"{'yes' if r['sol_equals_baseline'] else 'NO':>9s} "
            f"{'yes' if r['equals_central'] else 'NO':>9s}")
    total = {k: sum(r[k] for r in rows) for k in ("baseline_s", "sol_s", "raw_s", "sol_bytes",
                                                   "raw_bytes")}
    lines.append(
        f"{'total':15s} {total['baseline_s']:10.2f} {total['sol_s']:7.2f} "
        f"{total['raw_s']:7.2f} {total['sol_bytes'] / 1e3:8.1f} {total['raw_bytes'] / 1e3:9.1f}"
        f" {total['baseline_s'] / total['sol_s']:8.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--orders", type=int, default=200_000,
                        help="orders in all (about 4 lineitems each), split over the sites")
    parser.add_argument("--parts", type=int, default=8, help="partial tasks per site per query")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) // 4),
                        help="compute workers per site")
    parser.add_argument("--rtt-ms", type=float, default=100.0)
    parser.add_argument("--rate-mbps", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "analytics_wan.json"))
    args = parser.parse_args()
    print(f"analytics_wan: {args.sites} sites x {args.workers} workers, {args.orders} orders, "
          f"{args.parts} tasks/site/query, {args.rtt_ms:g} ms RTT, {args.rate_mbps:g} Mbit/s; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="analytics-wan-") as tmp:
        rows = asyncio.run(run_set(args, Path(tmp)))
    wall_s = time.perf_counter() - started
    speedup = sum(r["baseline_s"] for r in rows) / sum(r["sol_s"] for r in rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "analytics_wan", "config": {k: v for k, v in vars(args).items()
                                                 if k != "out"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_end": os.getloadavg()[0]},
        "wall_s": wall_s, "rows": rows, "queries": QUERIES, "target": TARGET,
        "speedup": speedup, "target_met": speedup >= TARGET}, indent=2) + "\n")
    print()
    print(table(rows))
    print(f"wall time {wall_s:.0f} s; results in {out}")
    print(f"speedup: {speedup:.2f}")


if __name__ == "__main__":
    main()
