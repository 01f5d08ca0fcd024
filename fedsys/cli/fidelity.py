"""``fedsys fidelity CONFIG``: simulate, deploy on loopback, compare, report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from fedsys.cli.options import add_fleet_launch_options, add_overrides


def add_fidelity_command(commands: Any) -> None:
    """Register ``fidelity`` on the ``fedsys`` parser."""
    fidelity = commands.add_parser(
        "fidelity", help="run a config simulated and as a real loopback deployment; compare"
    )
    fidelity.add_argument("config", nargs="?", help="YAML/TOML config (default: quickstart)")
    add_overrides(fidelity)
    fidelity.add_argument(
        "--output-dir", help="where results go (default: the config's + -fidelity)"
    )
    fidelity.add_argument(
        "--calibrate",
        action="store_true",
        help="measure the server's time per round and the clients' per task, "
        "write calibrated.yaml, simulate again",
    )
    add_fleet_launch_options(fidelity)
    fidelity.add_argument("--quiet", action="store_true", help="no progress bar")
    fidelity.set_defaults(handler=_cmd_fidelity)


def _cmd_fidelity(args: argparse.Namespace, console: Console) -> int:
    from fedsys.cli.console import add_rounds_task, progress_bar, round_updater
    from fedsys.cli.fidelity_tables import rounds_table, terms_table, totals_table
    from fedsys.config.resolve import parse_overrides, resolve_config
    from fedsys.fidelity.report import plot_overlay, write_json
    from fedsys.fidelity.runner import run_fidelity

    if args.warmup_s < 0:
        raise ValueError(f"--warmup-s must be >= 0, got {args.warmup_s}")
    config = resolve_config(args.config, parse_overrides(args.overrides))
    output_dir = Path(args.output_dir or f"{config.output_dir}-fidelity")
    with progress_bar(console, config.rounds, disable=args.quiet, clock="wall") as progress:
        task = add_rounds_task(progress, "deploying", config.rounds)
        on_round = round_updater(progress, task)

        run = run_fidelity(
            config,
            output_dir,
            calibrate_clock=args.calibrate,
            devices_per_process=args.devices_per_process,
            warmup_s=args.warmup_s,
            on_round=on_round,
            note=lambda text: progress.console.print(text, highlight=False),
        )
    console.print(rounds_table(run.report))
    console.print(terms_table(run.report))
    console.print(totals_table(run.report))
    write_json(run.report, output_dir / "fidelity.json")
    if run.uncalibrated is not None:
        write_json(run.uncalibrated, output_dir / "fidelity_uncalibrated.json")
    plot_overlay(
        list(run.sim), list(run.real), output_dir / "fidelity.png", run.config.target_accuracy
    )
    if run.calibration is not None:
        terms = " ".join(f"clock.{k}={v:.5f}" for k, v in run.calibration.items())
        before = run.uncalibrated.totals["ratio"] if run.uncalibrated else float("nan")
        console.print(
            f"calibrated: {terms} (measured/simulated {before:.3f} -> "
            f"{run.report.totals['ratio']:.3f}); config in {output_dir / 'calibrated.yaml'}",
            highlight=False,
        )
    console.print(
        f"ratio (measured / simulated total time): {run.report.totals['ratio']:.3f}; "
        f"results in {output_dir} (fidelity.json, fidelity.png)",
        highlight=False,
    )
    return 0
