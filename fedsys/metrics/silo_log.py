"""A silo job's task log: which site ran each task, when its output arrived, how big.

The coordinator's command appends one line per accepted task output while a job runs
and one line per finished job to ``silo_tasks.jsonl`` in its output folder, so that a
dashboard can follow the tasks through the sites. Format version
:data:`SILO_LOG_VERSION` (documented in ``docs/dashboard.md``)::

    {"v": 1, "kind": "task", "job": "sol", "mode": "sol", "t_s": 0.84, "site": "site-1",
     "task_id": "hist/3", "attempt": 0, "run_s": 0.21, "bytes": 65536}
    {"v": 1, "kind": "job", "job": "sol", "mode": "sol", "job_id": "a1b2", "binding": "early",
     "output": "decoupled", "duration_s": 4.2, "tasks": 160, "stats": {...}}

``t_s`` is when the coordinator accepted the output, in seconds since the job started.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from fedsys.metrics.writers import append_json_lines

SILO_LOG_VERSION = 1


class TaskTiming(Protocol):
    """What the log needs of a task record."""

    task_id: str
    site: str
    attempt: int
    start_s: float
    end_s: float
    received_s: float
    payload_bytes: int


class SiloTaskLog:
    """Appends task and job lines to one file (flushed per call)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def tasks(
        self, job: str, mode: str, started_unix_s: float, records: Iterable[TaskTiming]
    ) -> int:
        """Append ``records`` (times relative to ``started_unix_s``); how many were written."""
        rows = (
            {
                "v": SILO_LOG_VERSION,
                "kind": "task",
                "job": job,
                "mode": mode,
                "t_s": round(r.received_s - started_unix_s, 4),
                "site": r.site,
                "task_id": r.task_id,
                "attempt": int(r.attempt),
                "run_s": round(r.end_s - r.start_s, 4),
                "bytes": int(r.payload_bytes),
            }
            for r in records
        )
        return append_json_lines(self.path, rows)

    def job(self, job: str, mode: str, summary: Mapping[str, Any]) -> None:
        """Append a finished job's line."""
        row = {"v": SILO_LOG_VERSION, "kind": "job", "job": job, "mode": mode, **summary}
        append_json_lines(self.path, [row])
