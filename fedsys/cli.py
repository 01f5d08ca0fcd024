"""The ``fedsys`` command: run a simulated federation, inspect and convert device traces."""

from __future__ import annotations

import argparse
import pickle
import signal
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedsys.config.loader import (
    ConfigError,
    apply_overrides,
    load_config,
    parse_config,
    parse_yaml,
)
from fedsys.config.schema import RunConfig
from fedsys.fidelity.cli import add_fidelity_command
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.silo.cli import add_silo_commands

DEFAULT_CONFIG = "quickstart.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedsys`` console script; returns the exit status.

    Every user mistake ends in one line on stderr and a non-zero status (2: bad
    config, 1: any other error, 130: interrupted); ``--debug`` shows the traceback.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.handler(args, console))
    except ConfigError as exc:
        if debug:
            raise
        _print_error("config error", exc)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        _print_error("interrupted", "stopped by Ctrl-C")
        return 130
    except USER_ERRORS as exc:
        if debug:
            raise
        _print_error("error", exc)
        return 1
    except Exception as exc:
        if debug:
            raise
        hint = f"{exc} (run with --debug for the traceback)"
        _print_error(f"unexpected {type(exc).__name__}", hint)
        return 1


USER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    RuntimeError,
    pickle.UnpicklingError,
)
"""Errors a user's input or environment causes (missing files, bad values, refused
pickles, exhausted privacy budgets); their messages name the file or key."""


def _print_error(kind: str, message: object) -> None:
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"[bold red]{kind}[/]: ", end="", highlight=False)
    console.print(str(message), highlight=False, markup=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedsys", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
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
    run.add_argument(
        "--overwrite", action="store_true", help="replace the run files in a non-empty output dir"
    )
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    run.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
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

    from fedsys.analytics.cli import add_query_command
    from fedsys.deploy.cli import add_deploy_commands

    add_deploy_commands(commands)
    add_silo_commands(commands)
    add_query_command(commands)
    add_fidelity_command(commands)
    return parser


def default_config_text() -> str:
    """The embedded quickstart config, as shipped inside the package."""
    return resources.files("fedsys.examples").joinpath(DEFAULT_CONFIG).read_text()


def resolve_config(path: str | None, overrides: dict[str, Any]) -> RunConfig:
    """Load ``path`` (or the embedded default) with ``overrides`` applied."""
    if path:
        return load_config(path, overrides)
    raw = parse_yaml(default_config_text())
    return parse_config(apply_overrides(raw, overrides))


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} must look like KEY=VALUE")
        try:
            overrides[key.strip()] = parse_yaml(value)
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"override {pair!r}: {detail}") from None
    return overrides


def _cmd_config(args: argparse.Namespace, console: Console) -> int:
    console.print(default_config_text(), highlight=False, markup=False)
    return 0


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from fedsys.sim.simulator import Simulator
    from fedsys.sim.writing import RunWriter

    config, resume_dir = _run_config(args)
    console.print(
        f"[bold]fedsys[/] {config.dataset.name}: {config.dataset.num_clients} clients, "
        f"{config.clients_per_round}/round, {config.rounds} rounds, "
        f"{config.round.mode} rounds, selector={config.selector.name}, "
        f"strategy={config.strategy.name}",
        highlight=False,
    )
    simulator = Simulator.from_config(config)
    writer = RunWriter(Path(config.output_dir), config)
    done = 0
    if resume_dir is None:
        writer.start(overwrite=args.overwrite)
    else:
        from fedsys.sim.checkpoint import load_checkpoint

        records = list(load_checkpoint(writer.checkpoint_path)["records"])
        writer.resume(records)
        done = len(records)
    simulator.checkpoint_path = writer.checkpoint_path
    try:
        result = _run_with_progress(simulator, writer, console, args.quiet, done, resume_dir)
    finally:
        writer.close()
    summary = writer.finish(result)
    console.print(_summary_table(result, summary))
    console.print(f"results in [bold]{config.output_dir}[/]", highlight=False)
    if result.status == "interrupted":
        console.print(
            f"interrupted: continue with [bold]fedsys run --resume {config.output_dir}[/]",
            highlight=False,
        )
        return 130
    return 0


def _run_config(args: argparse.Namespace) -> tuple[RunConfig, Path | None]:
    """The config of a new run, or of the run folder ``--resume`` names."""
    overrides = _parse_overrides(args.overrides)
    if args.resume is None:
        if args.output_dir:
            overrides["output_dir"] = args.output_dir
        return resolve_config(args.config, overrides), None
    if args.config or overrides or args.output_dir or args.overwrite:
        raise ConfigError(
            "--resume DIR continues the run with the config saved in DIR: "
            "give no CONFIG, --set, --output-dir or --overwrite with it"
        )
    folder = Path(args.resume)
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"{folder} is not a fedsys run folder (no config.yaml)")
    return load_config(folder / "config.yaml", {"output_dir": str(folder)}), folder


def _run_with_progress(
    simulator: Any,
    writer: Any,
    console: Console,
    quiet: bool,
    done: int,
    resume_dir: Path | None,
) -> RunResult:
    """Run with a progress bar; whatever ends the run, ``summary.json`` says how.

    The first Ctrl-C stops the run after the current round (checkpointed, resumable);
    a second one stops it at once.
    """
    total = simulator.rounds
    with _StopOnSigint(console) as stop, _progress(console, total, disable=quiet) as progress:
        task = progress.add_task("training", total=total, completed=done, acc="-", vtime="0 s")

        def on_round(record: RoundRecord) -> None:
            writer.write_round(record)
            fields = {"vtime": format_duration(record.end_s)}
            if record.accuracy is not None:
                fields["acc"] = f"{record.accuracy:.3f}"
            progress.update(task, advance=1, **fields)

        try:
            return simulator.run(  # type: ignore[no-any-return]
                on_round=on_round, resume_from=resume_dir, should_stop=stop.requested
            )
        except KeyboardInterrupt:
            _write_partial(simulator, writer, "interrupted", "stopped by Ctrl-C during a round")
            raise
        except BaseException as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _write_partial(simulator, writer, "failed", reason)
            raise


def _write_partial(simulator: Any, writer: Any, status: str, reason: str) -> None:
    records = tuple(getattr(simulator, "records_", ()))
    privacy = getattr(simulator, "privacy_", None)
    writer.write_summary(RunResult(records, simulator.config or {}, status, reason, privacy))


class _StopOnSigint:
    """First SIGINT asks the run to stop after the round in flight; the second interrupts."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.stop = False
        self.previous: Any = None

    def requested(self) -> bool:
        """Whether Ctrl-C was pressed once."""
        return self.stop

    def _handle(self, signum: int, frame: object) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        self.console.print("stopping after this round (Ctrl-C again to stop now)")

    def __enter__(self) -> _StopOnSigint:
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)


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
        ("status", summary["status"] + (f" ({summary['reason']})" if summary["reason"] else "")),
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
