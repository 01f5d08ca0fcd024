"""``fedsys run`` and ``fedsys config``: a simulated federation from a config file."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from fedsys.cli.console import add_rounds_task, progress_bar, round_updater, summary_table
from fedsys.cli.dashboard import add_dashboard_flag, live_dashboard
from fedsys.cli.options import add_overrides
from fedsys.config.loader import ConfigError, load_config
from fedsys.config.resolve import default_config_text, parse_overrides, resolve_config
from fedsys.config.schema import RunConfig
from fedsys.metrics.records import RoundRecord, RunResult
from fedsys.metrics.run_folder import CONFIG_FILE, RunFolder


def add_run_commands(commands: Any) -> None:
    """Register ``run`` and ``config`` on the ``fedsys`` parser."""
    run = commands.add_parser("run", help="run a simulated federation from a config file")
    run.add_argument(
        "config",
        nargs="?",
        help="YAML/TOML config, - for YAML on stdin (default: embedded quickstart)",
    )
    add_overrides(run, "override a dotted config key, e.g. --set dataset.num_clients=200")
    run.add_argument("--output-dir", help="where to write results (overrides output_dir)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--overwrite", action="store_true", help="replace the run files in a non-empty output dir"
    )
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    add_dashboard_flag(run)
    run.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    run.set_defaults(handler=_cmd_run)

    show_config = commands.add_parser(
        "config", help="print the embedded default config (fedsys config > my.yaml)"
    )
    show_config.set_defaults(handler=_cmd_config)


def _cmd_config(args: argparse.Namespace, console: Console) -> int:
    # for a file or a pipe (fedsys config > my.yaml): raw, never wrapped by the terminal
    sys.stdout.write(default_config_text())
    return 0


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from fedsys.sim.simulator import Simulator

    config, resume_dir = _run_config(args)
    console.print(
        f"[bold]fedsys[/] {config.dataset.name}: {config.dataset.num_clients} clients, "
        f"{config.clients_per_round}/round, {config.rounds} rounds, "
        f"{config.round.mode} rounds, selector={config.selector.name}, "
        f"strategy={config.strategy.name}",
        highlight=False,
    )
    simulator = Simulator.from_config(config)
    writer = RunFolder(
        Path(config.output_dir),
        config.model_dump(mode="json"),
        target_accuracy=config.target_accuracy,
        label=config.selector.name,
        csv=config.metrics.csv,
        tensorboard=config.metrics.tensorboard,
        summary_fields={"runtime": "sim", "torch_threads": simulator.torch_threads()},
    )
    done = 0
    if resume_dir is None:
        writer.start(overwrite=args.overwrite)
    else:
        from fedsys.parts.checkpoint import load_checkpoint

        records = list(load_checkpoint(writer.checkpoint_path)["records"])
        writer.resume(records)
        done = len(records)
    simulator.checkpoint_path = writer.checkpoint_path
    try:
        with live_dashboard(writer.output_dir, args.dashboard, console):
            result = _run_with_progress(simulator, writer, console, args.quiet, done, resume_dir)
    finally:
        writer.close()
    summary = writer.finish(result)
    console.print(summary_table(result, summary))
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
    overrides = parse_overrides(args.overrides)
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
    if not (folder / CONFIG_FILE).is_file():
        raise ConfigError(f"{folder} is not a fedsys run folder (no {CONFIG_FILE})")
    return load_config(folder / CONFIG_FILE, {"output_dir": str(folder)}), folder


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
    with _StopOnSigint(console) as stop, progress_bar(console, total, disable=quiet) as progress:
        task = add_rounds_task(progress, "training", total, completed=done)
        show = round_updater(progress, task)

        def on_round(record: RoundRecord) -> None:
            writer.write_round(record)
            show(record)

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
