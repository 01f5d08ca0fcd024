"""``fedsys traces show|convert``: look at device traces, convert FedScale's format."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def add_traces_commands(commands: Any) -> None:
    """Register ``traces show`` and ``traces convert`` on the ``fedsys`` parser."""
    traces = commands.add_parser("traces", help="inspect or convert device traces")
    trace_commands = traces.add_subparsers(dest="trace_command", required=True)
    show = trace_commands.add_parser("show", help="counts, percentiles and a histogram plot")
    show.add_argument("path", help="fedsys CSV trace, or a folder with FedScale's pickle pair")
    show.add_argument("--plot", help="where to write the histogram PNG")
    show.set_defaults(handler=_cmd_traces_show)
    convert = trace_commands.add_parser("convert", help="convert FedScale pickles <-> fedsys CSV")
    convert.add_argument("source", help="FedScale folder or fedsys CSV trace")
    convert.add_argument("destination", help="where to write the converted trace")
    convert.set_defaults(handler=_cmd_traces_convert)


def _cmd_traces_show(args: argparse.Namespace, console: Console) -> int:
    from fedsys.traces import load_fleet_file, plot_histograms, summarize

    fleet = load_fleet_file(Path(args.path))
    summary = summarize(fleet)
    table = Table(title=f"device trace: {args.path}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in _flatten(summary):
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    plot_path = Path(args.plot) if args.plot else Path(args.path).with_suffix(".hist.png")
    plot_histograms(fleet, plot_path)
    console.print(f"histograms in {plot_path}", highlight=False)
    return 0


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _cmd_traces_convert(args: argparse.Namespace, console: Console) -> int:
    from fedsys.traces import convert

    convert(Path(args.source), Path(args.destination))
    console.print(f"wrote {args.destination}", highlight=False)
    return 0
