"""The ``fedsys`` command: run a simulated federation, inspect and convert device traces."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedsys.config.loader import ConfigError, apply_overrides, load_config, parse_config
from fedsys.config.schema import RunConfig
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.silo.cli import add_silo_commands

DEFAULT_CONFIG = "quickstart.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedsys`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    try:
        return int(args.handler(args, console))
    except ConfigError as exc:
        Console(stderr=True).print(f"[bold red]config error[/]: {exc}", highlight=False)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        Console(stderr=True).print(f"[bold red]error[/]: {exc}", highlight=False)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedsys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a simulated federation from a config file")
    run.add_argument("config", nargs="?", help="YAML/TOML config (default: embedded quickstart)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a dotted config key, e.g. --set dataset.num_clients=200",
    )
    run.add_argument("--output-dir", help="where to write results (overrides output_dir)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_cmd_run)

    show_config = commands.add_parser("config", help="print the embedded default config")
    show_config.set_defaults(handler=_cmd_config)

    traces = commands.add_parser("traces", help="inspect or convert device traces")
    trace_commands = traces.add_subparsers(dest="trace_command", required=True)
    show = trace_commands.add_parser("show", help="counts, percentiles and a histogram plot")
    show.add_argument("path", help="fedsys CSV trace, or a folder with FedScale's pickle pair")
    show.add_argument("--plot", help="where to write the histogram PNG")
    show.set_defaults(handler=_cmd_traces_show)
    convert = trace_commands.add_parser("convert", help="convert FedScale pickles <-> fedsys CSV")
    convert.add_argument("source")
    convert.add_argument("destination")
    convert.set_defaults(handler=_cmd_traces_convert)

    from fedsys.deploy.cli import add_deploy_commands

    add_deploy_commands(commands)
    add_silo_commands(commands)
    return parser


def default_config_text() -> str:
    """The embedded quickstart config, as shipped inside the package."""
    return resources.files("fedsys.examples").joinpath(DEFAULT_CONFIG).read_text()


def resolve_config(path: str | None, overrides: dict[str, Any]) -> RunConfig:
    """Load ``path`` (or the embedded default) with ``overrides`` applied."""
    if path:
        return load_config(path, overrides)
    raw = yaml.safe_load(default_config_text())
    return parse_config(apply_overrides(raw, overrides))


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} must look like KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _cmd_config(args: argparse.Namespace, console: Console) -> int:
    console.print(default_config_text(), highlight=False, markup=False)
    return 0


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from fedsys.sim.simulator import Simulator
    from fedsys.sim.writing import RunWriter

    overrides = _parse_overrides(args.overrides)
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    config = resolve_config(args.config, overrides)
    console.print(
        f"[bold]fedsys[/] {config.dataset.name}: {config.dataset.num_clients} clients, "
        f"{config.clients_per_round}/round, {config.rounds} rounds, "
        f"{config.round.mode} rounds, selector={config.selector.name}, "
        f"strategy={config.strategy.name}",
        highlight=False,
    )
    simulator = Simulator.from_config(config)
    writer = RunWriter(Path(config.output_dir), config)
    with _progress(console, config.rounds, disable=args.quiet) as progress:
        task = progress.add_task("training", total=config.rounds, acc="-", vtime="0 s")

        def on_round(record: RoundRecord) -> None:
            writer.write_round(record)
            acc = f"{record.accuracy:.3f}" if record.accuracy is not None else None
            fields = {"vtime": format_duration(record.end_s)}
            if acc:
                fields["acc"] = acc
            progress.update(task, advance=1, **fields)

        result = simulator.run(on_round=on_round)
    summary = writer.finish(result)
    console.print(_summary_table(result, summary))
    console.print(f"results in [bold]{config.output_dir}[/]", highlight=False)
    return 0


def _progress(console: Console, total: int, disable: bool) -> Progress:
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rounds"),
        TextColumn("acc {task.fields[acc]}"),
        TextColumn("virtual {task.fields[vtime]}"),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )


def _summary_table(result: RunResult, summary: dict[str, Any]) -> Table:
    table = Table(title="run summary", show_header=False)
    target = summary.get("target_accuracy")
    tta = summary.get("time_to_target_s")
    rows = [
        ("rounds", str(summary["rounds"])),
        ("final accuracy", _fmt(summary["final_accuracy"], ".4f")),
        ("best accuracy", _fmt(summary["best_accuracy"], ".4f")),
        ("virtual time", format_duration(summary["virtual_time_s"])),
        ("wall time", f"{summary['wall_time_s']:.1f} s"),
        ("dropouts / stragglers", f"{summary['dropouts']} / {summary['stragglers']}"),
    ]
    if target is not None:
        reached = (
            f"{format_duration(tta)} (round {summary['rounds_to_target']})"
            if tta is not None
            else "not reached"
        )
        rows.append((f"time to {target:.0%} accuracy", reached))
    for key, value in rows:
        table.add_row(key, value)
    return table


def format_duration(seconds: float) -> str:
    """Virtual seconds in the unit a reader expects: s, min or h."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


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


if __name__ == "__main__":
    sys.exit(main())
