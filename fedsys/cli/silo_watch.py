"""``--output-dir`` and ``--dashboard`` for the silo commands: a job's tasks, logged live.

While a job runs, a watcher polls the coordinator every :data:`POLL_S` for the task
outputs it accepted and appends them to ``silo_tasks.jsonl`` (see
:mod:`fedsys.metrics.silo_log`); when the job ends it appends the job's line (mode,
binding, duration, counters). The coordinator never waits on the log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from fedsys.cli.dashboard import add_dashboard_flag
from fedsys.metrics.run_folder import SILO_FILE
from fedsys.metrics.silo_log import SiloTaskLog

POLL_S = 0.5


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    """``--output-dir`` (the task log's folder) and ``--dashboard [PORT]``."""
    parser.add_argument(
        "--output-dir", help="log each task and job to silo_tasks.jsonl here (the dashboard's view)"
    )
    add_dashboard_flag(parser)


def watch_folder(args: argparse.Namespace) -> Path | None:
    """Where the task log goes: ``--output-dir``, or ``runs/silo-JOB`` with ``--dashboard``."""
    if args.output_dir:
        return Path(args.output_dir)
    if args.dashboard is not None:
        return Path("runs") / f"silo-{args.job}"
    return None


async def run_job_logged(
    coordinator: Any, job: Any, mode: Any, name: str, timeout_s: float, folder: Path | None
) -> Any:
    """``coordinator.run_job(job, mode)``, logging its tasks to ``folder`` as they finish."""
    if folder is None:
        return await coordinator.run_job(job, mode, timeout_s)
    log = SiloTaskLog(folder / SILO_FILE)
    started = time.time()
    written = 0

    async def poll() -> None:
        nonlocal written
        while True:
            records = coordinator.job_records()
            written += await asyncio.to_thread(log.tasks, name, name, started, records[written:])
            await asyncio.sleep(POLL_S)

    watcher = asyncio.get_running_loop().create_task(poll())
    try:
        result = await coordinator.run_job(job, mode, timeout_s)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    log.tasks(name, name, started, result.records[written:])
    log.job(
        name,
        name,
        {
            "job_id": result.job_id,
            "binding": "early" if mode.early_binding else "late",
            "output": "decoupled" if mode.decoupled_output else "coupled",
            "duration_s": round(result.duration_s, 4),
            "tasks": len(result.records),
            "stats": dict(result.stats),
        },
    )
    return result
