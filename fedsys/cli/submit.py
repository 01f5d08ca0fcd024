"""``fedsys submit RUN.yaml``: train a run config across the sites of a standing coordinator.

The config (any model, dataset and strategy a ``fedsys run`` config takes) is checked
here and again by the coordinator, which queues the job and answers with its id. The
sites hold the config's dataset by name; the coordinator trains in rounds over them and
keeps the run folder (``rounds.jsonl``, ``summary.json``, plots, final weights), which
``--wait`` (or ``fedsys jobs result ID --out DIR``) downloads into the config's
``output_dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from fedsys.cli.jobs import add_remote_options, federation_from_args, print_result
from fedsys.cli.options import add_overrides

__all__ = ["add_submit_command"]


def add_submit_command(subparsers: Any) -> None:
    """Add ``submit`` to the ``fedsys`` command."""
    parser = subparsers.add_parser(
        "submit", help="train a run config across the sites of a standing coordinator")
    parser.add_argument("config", help="a fedsys run config (YAML)")
    add_remote_options(parser)
    add_overrides(parser)
    parser.add_argument("--on-site-failure", choices=("wait", "fail"), default="wait",
                        help="when a site is lost: wait for it to rejoin, or fail the job")
    parser.add_argument("--wait", action="store_true",
                        help="wait for the job, then download its run folder")
    parser.add_argument("--out", help="where --wait writes the run folder "
                                      "(default: the config's output_dir)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_cmd_submit)


def _cmd_submit(args: argparse.Namespace, console: Console) -> int:
    import yaml

    from fedsys.config.loader import load_config
    from fedsys.config.resolve import parse_overrides

    config = load_config(args.config, parse_overrides(args.overrides))  # refuse a bad config here
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    with federation_from_args(args) as fed:
        job_id = fed.submit(text, on_site_failure=args.on_site_failure)
        if not args.wait:
            if args.json:
                sys.stdout.write(json.dumps({"job_id": job_id}) + "\n")
            else:
                console.print(f"submitted job {job_id}; follow it with: fedsys jobs status "
                              f"{job_id} --wait", highlight=False)
            return 0
        if not args.json:
            console.print(f"submitted job {job_id}; waiting for it", highlight=False)
        fed.wait(job_id, 24 * 3600)
        out = args.out or str(Path(config.output_dir))
        return print_result(fed, job_id, out, args.json, console)
