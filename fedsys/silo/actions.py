"""What the engine asks the coordinator to do, and what it records of each task.

:class:`~fedsys.silo.engine.JobRun` answers events with these plain values; the
coordinator turns them into protocol messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsys.silo.job import SiteTask


@dataclass(frozen=True)
class Bind:
    """Assign ``spec`` (attempt ``attempt``) to ``site``; inputs pushed in early binding."""

    site: str
    spec: SiteTask
    attempt: int
    inputs_pushed: bool


@dataclass(frozen=True)
class Push:
    """Send output ``key`` to ``site`` (a task bound there consumes it)."""

    site: str
    key: str


@dataclass(frozen=True)
class PushPart:
    """Send bytes ``[offset, offset + len(data))`` of output ``key`` (``total`` bytes in
    all, still being made by a streamed merge) to ``site``."""

    site: str
    key: str
    offset: int
    data: bytes
    total: int


@dataclass(frozen=True)
class Seal:
    """Output ``key``, streamed to ``site`` in parts, is complete: send its checksum and
    metadata (the site checks the parts against them before any task uses them)."""

    site: str
    key: str


@dataclass(frozen=True)
class Reclaim:
    """Ask ``site`` to give back queued, unstarted tasks."""

    site: str
    task_ids: tuple[str, ...]


@dataclass(frozen=True)
class Evict:
    """Tell ``site`` that no task will need input ``key`` again (it may free it)."""

    site: str
    key: str


Action = Bind | Push | PushPart | Seal | Reclaim | Evict


@dataclass(frozen=True)
class TaskRecord:
    """One accepted task output: where and when it ran (site clocks), when it arrived."""

    task_id: str
    site: str
    attempt: int
    start_s: float
    end_s: float
    received_s: float
    payload_bytes: int
    send_start_s: float | None = None
    worker_pid: int = 0
