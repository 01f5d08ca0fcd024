"""``fedsys query``: one federated SQL query over the sites of a ``sites.yaml``, or sent to
a standing coordinator (``--coordinator HOST:PORT``: the sites are already running there;
the query is queued as the analyst's job and its answer printed when it is done).

The query is planned (and refused, if it has no mergeable form) before any site starts;
then every site of the file is started on loopback behind the WAN shaper, with its own
tables in DuckDB, and the answer is printed as a table or JSON. ``--demo`` first writes
sample hospital tables and their ``sites.yaml`` (:mod:`fedsys.analytics.sample_data`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from fedsys.cli.jobs import add_remote_options, federation_from_args, print_table
from fedsys.silo.mode import EngineMode
from fedsys.silo.shaper import LinkSettings

if TYPE_CHECKING:  # the analytics extra (duckdb, sqlglot, ...) loads only when used
    from fedsys.analytics.catalog import SitesFile
    from fedsys.analytics.query import QueryOptions, QueryResult

__all__ = ["add_query_command", "options_from_args", "result_json"]


def add_query_command(subparsers: Any) -> None:
    """Add ``query`` to the ``fedsys`` command."""
    parser = subparsers.add_parser(
        "query", help="federated SQL over the sites of a sites.yaml (exact, DP or secure)")
    parser.add_argument("sql", nargs="?",
                        help='e.g. "SELECT label, COUNT(*), AVG(x) FROM data GROUP BY label" '
                             "(with --demo: a sample query by default)")
    parser.add_argument("--sites", help="sites.yaml: each site's tables")
    parser.add_argument("--demo", action="store_true",
                        help="generate sample hospital tables at 3 sites (a 'visits' table: "
                             "age, sex, diagnosis, length_of_stay, cost) and query them; "
                             "--workdir keeps them")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--mode", choices=("sol", "baseline"), default="sol",
                        help="bind the tasks to sites early (sol) or late (baseline)")
    parser.add_argument("--parts", type=int, default=1, help="partial tasks per site")
    parser.add_argument("--epsilon", type=float, help="differential privacy of this query")
    parser.add_argument("--delta", type=float, default=0.0, help="DP delta (gaussian)")
    parser.add_argument("--mechanism", choices=("laplace", "gaussian"), default="laplace",
                        help="DP noise (gaussian needs --delta)")
    parser.add_argument("--secure", action="store_true",
                        help="sum the sites' partials under pairwise masking")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="emulated WAN round trip")
    parser.add_argument("--rate-mbps", type=float, default=0.0,
                        help="emulated WAN bandwidth per direction (0: unlimited)")
    parser.add_argument("--workdir", help="keep logs and catalogs here")
    parser.add_argument("--timeout-s", type=float, default=300.0,
                        help="longest time the query may take")
    add_remote_options(parser, required=False)
    parser.add_argument("--bound", action="append", default=[], metavar="COLUMN=LO:HI",
                        help="with --coordinator: a DP clamping bound; repeatable")
    parser.add_argument("--domain", action="append", default=[], metavar="COLUMN=V1,V2",
                        help="with --coordinator: a GROUP BY key's values; repeatable")
    parser.add_argument("--tables", default="",
                        help="with --coordinator: the sites' table catalog (default: the "
                             "coordinator's)")
    parser.set_defaults(handler=_cmd_query)


def options_from_args(args: argparse.Namespace, spec: SitesFile) -> QueryOptions:
    """Query options from the command line and the privacy rules of ``sites.yaml``."""
    from fedsys.analytics.dp import PrivacySpec
    from fedsys.analytics.query import QueryOptions

    privacy = None
    if args.epsilon is not None:
        privacy = PrivacySpec(args.epsilon, args.delta, args.mechanism,
                              dict(spec.privacy.bounds))
    elif args.delta:
        raise ValueError("--delta needs --epsilon")
    return QueryOptions(privacy=privacy, secure=args.secure, domains=spec.privacy.domains,
                        parts=args.parts)


def result_json(result: QueryResult) -> dict[str, Any]:
    """A result as a JSON object (columns, rows, cost, noise scales)."""
    from fedsys.analytics.encoding import to_json_value

    return {"columns": result.columns,
            "rows": [[to_json_value(v) for v in row] for row in result.rows],
            "duration_s": result.duration_s, "bytes_moved": result.bytes_moved,
            "noise": {k: {"mechanism": m, "scale": s} for k, (m, s) in result.noise.items()},
            "dropped_sites": result.dropped}


def _cmd_query(args: argparse.Namespace, console: Console) -> int:
    try:
        from fedsys.analytics import catalog, local_sites, planner, query  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"fedsys query needs the analytics extra "
                           f"(pip install 'fedsys[analytics]'): {exc}") from None

    if args.coordinator and not (args.sites or args.demo):
        return _remote_query(args, console)
    if args.demo == bool(args.sites):
        raise ValueError("fedsys query needs --sites FILE, --demo or --coordinator HOST:PORT "
                         "(one of them)")
    if args.sql is None and not args.demo:
        raise ValueError("fedsys query needs a SQL query (or --demo)")
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        return _query(args, console, Path(args.workdir))
    with tempfile.TemporaryDirectory(prefix="fedsys-query-") as tmp:
        return _query(args, console, Path(tmp))


def _query(args: argparse.Namespace, console: Console, workdir: Path) -> int:
    """Plan, start the sites, run the query in ``workdir``; print the answer.

    The engine's logs (sites joining and leaving) go to ``workdir/query.log``: stdout
    holds the answer, stderr only an error.
    """
    from fedsys.wire.logs import setup_logging

    setup_logging(workdir / "query.log", to_stderr=False)
    from fedsys.analytics.catalog import load_sites
    from fedsys.analytics.ledger import PrivacyLedger
    from fedsys.analytics.local_sites import local_engine
    from fedsys.analytics.planner import plan_query
    from fedsys.analytics.query import check_options
    from fedsys.analytics.sample_data import DEMO_SQL

    sql = DEMO_SQL if args.sql is None else args.sql
    plan = plan_query(sql)  # refuse what cannot run before starting any site
    sites_path = Path(args.sites) if args.sites else _demo_sites(args, console, workdir)
    if args.sql is None and not args.json:
        console.print(f"query: {sql}", highlight=False)
    spec = load_sites(sites_path)
    options = options_from_args(args, spec)
    check_options(plan, options)
    ledger = PrivacyLedger(Path(spec.privacy.ledger), spec.privacy.budget_epsilon,
                           spec.privacy.budget_delta)
    mode = EngineMode.sol() if args.mode == "sol" else EngineMode.baseline()
    link = LinkSettings.symmetric(args.rtt_ms / 1000, args.rate_mbps * 1e6 or None) \
        if args.rtt_ms or args.rate_mbps else LinkSettings()

    async def main() -> QueryResult:
        async with local_engine(spec, workdir, mode, ledger, spec.secure.max_dropouts,
                                link=link) as (engine, _):
            engine.job_timeout_s = args.timeout_s
            return await engine.run(sql, options)

    result = asyncio.run(main())
    if args.json:  # for programs: plain, never wrapped
        sys.stdout.write(json.dumps(result_json(result), indent=1) + "\n")
        return 0
    table = Table(title=f"{len(result.rows)} rows from {len(spec.sites)} sites in "
                        f"{result.duration_s:.2f} s, {result.bytes_moved} bytes moved")
    for column in result.columns:
        table.add_column(column)
    for row in result.rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    for column, (mechanism, scale) in result.noise.items():
        console.print(f"{column}: {mechanism} noise, scale {scale:.4g}", highlight=False)
    return 0


def _demo_sites(args: argparse.Namespace, console: Console, workdir: Path) -> Path:
    """Write the sample hospital sites into ``workdir/demo``; say where (not with --json)."""
    from fedsys.analytics.sample_data import HOSPITALS, write_sample_sites

    sites_path = write_sample_sites(workdir / "demo")
    if not args.json:
        kept = (f"in {sites_path.parent}" if args.workdir
                else "in a temporary folder (--workdir DIR keeps them)")
        console.print(f"sample data: a 'visits' table at {len(HOSPITALS)} hospitals "
                      f"({', '.join(h.name for h in HOSPITALS)}), generated {kept}",
                      highlight=False)
    return sites_path


def _remote_query(args: argparse.Namespace, console: Console) -> int:
    """Queue the query on a standing coordinator, wait for it and print its answer."""
    if args.sql is None:
        raise ValueError("fedsys query --coordinator needs a SQL query")
    bounds = {}
    for item in args.bound:
        column, _, span = item.partition("=")
        lo, _, hi = span.partition(":")
        try:
            bounds[column] = [float(lo), float(hi)]
        except ValueError:
            raise ValueError(f"--bound must look like COLUMN=LO:HI, got {item!r}") from None
    domains: dict[str, list[Any]] = {}
    for item in args.domain:
        column, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--domain must look like COLUMN=V1,V2, got {item!r}")
        domains[column] = [_value(v) for v in values.split(",")]
    with federation_from_args(args) as fed:
        info = fed.submit_query(args.sql, epsilon=args.epsilon, delta=args.delta,
                                mechanism=args.mechanism, secure=args.secure,
                                parts=args.parts, bounds=bounds, domains=domains,
                                dataset=args.tables)
        fed.wait(info.job_id, args.timeout_s)
        result = fed.result(info.job_id)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return 0
    print_table(result, console)
    return 0


def _value(text: str) -> Any:
    """A domain value from the command line: an integer, a number, or the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
