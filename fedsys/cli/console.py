"""What the command shows people: progress bars, summary tables, one-line errors.

Only the command imports this; runtimes report through callbacks and return values,
so a deployment or a silo can run with no terminal at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedsys.metrics.records import RoundRecord, RunResult


def print_error(kind: str, message: object) -> None:
    """One line on stderr: ``kind: message``, never wrapped or marked up."""
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"[bold red]{kind}[/]: ", end="", highlight=False)
    console.print(str(message), highlight=False, markup=False)


def round_updater(progress: Progress, task: TaskID) -> Callable[[RoundRecord], None]:
    """A callback moving ``task`` of ``progress`` to each round record a runtime reports.

    The time shown is the record's ``end_s``: virtual seconds in a simulation, seconds
    since the server started in a deployment.
    """

    def on_round(record: RoundRecord) -> None:
        fields = {"vtime": f"{record.end_s:.1f} s"}
        if record.accuracy is not None:
            fields["acc"] = f"{record.accuracy:.3f}"
        progress.update(task, completed=record.round_idx + 1, **fields)

    return on_round


def progress_bar(console: Console, total: int, disable: bool) -> Progress:
    """The rounds bar shared by ``run`` and ``deploy local``."""
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


def summary_table(result: RunResult, summary: dict[str, Any]) -> Table:
    """A run's ``summary.json`` as a two-column table."""
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
