"""What the command shows people: progress bars, summary tables, one-line errors.

Only the command imports this; runtimes report through callbacks and return values,
so a deployment or a silo can run with no terminal at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedsys.metrics.records import RoundRecord, RunResult


def print_error(kind: str, message: object) -> None:
    """One line on stderr: ``kind: message``, never wrapped or marked up.

    A message of several lines (a library's error text) is joined into one.
    """
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"[bold red]{kind}[/]: ", end="", highlight=False)
    console.print(text, highlight=False, markup=False)


def round_updater(progress: Progress, task: TaskID) -> Callable[[RoundRecord], None]:
    """A callback moving ``task`` of ``progress`` to each round record a runtime reports.

    The time shown is the record's ``end_s``: virtual seconds in a simulation, seconds
    since the run's clock started in a deployment (the bar's label says which).
    """

    def on_round(record: RoundRecord) -> None:
        fields = {"time": format_duration(record.end_s)}
        if record.accuracy is not None:
            fields["acc"] = f"{record.accuracy:.3f}"
        progress.update(task, completed=record.round_idx + 1, **fields)

    return on_round


CLOCK_LABELS = {"virtual": "virtual", "wall": "elapsed"}
"""What the rounds bar calls its time: the fleet's virtual clock, or wall seconds."""


def progress_bar(
    console: Console, total: int, disable: bool, clock: Literal["virtual", "wall"] = "virtual"
) -> Progress:
    """The rounds bar shared by ``run`` (virtual time), ``deploy local`` and ``fidelity``
    (wall time); start its task with :func:`add_rounds_task`."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rounds"),
        TextColumn("acc {task.fields[acc]}"),
        TextColumn(f"{CLOCK_LABELS[clock]} {{task.fields[time]}}"),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )


def add_rounds_task(
    progress: Progress, description: str, total: int, completed: int = 0
) -> TaskID:
    """The rounds task of a :func:`progress_bar`, before any round."""
    return progress.add_task(description, total=total, completed=completed, acc="-", time="0 s")


def summary_table(result: RunResult, summary: dict[str, Any]) -> Table:
    """A run's ``summary.json`` as a two-column table.

    A simulation shows its virtual time and the wall time it took; a real run
    (``runtime: deploy``) its elapsed time and its training time, both wall seconds.
    """
    table = Table(title="run summary", show_header=False)
    target = summary.get("target_accuracy")
    tta = summary.get("time_to_target_s")
    rows = [
        ("status", summary["status"] + (f" ({summary['reason']})" if summary["reason"] else "")),
        ("rounds", str(summary["rounds"])),
        ("final accuracy", _fmt(summary["final_accuracy"], ".4f")),
        ("best accuracy", _fmt(summary["best_accuracy"], ".4f")),
        *_time_rows(summary),
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


def _time_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    if "training_time_s" in summary:  # a real run: wall seconds only
        rows = [("training time", format_duration(summary["training_time_s"]))]
        if "elapsed_s" in summary:
            rows.insert(0, ("elapsed", format_duration(summary["elapsed_s"])))
        return rows
    return [
        ("virtual time", format_duration(summary["virtual_time_s"])),
        ("wall time", f"{summary['wall_time_s']:.1f} s"),
    ]


def format_duration(seconds: float) -> str:
    """Seconds in the unit a reader expects: s, min or h."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
