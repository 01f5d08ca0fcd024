"""What the engine asks the coordinator to do, and what it records of each task.

:class:`~fedsys.silo.jobrun.JobRun` answers events with these plain values; the
coordinator turns them into protocol messages, and runs a :class:`RunMerge`'s
computation in a worker thread (it grows with the data), off its event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fedsys.silo.job import SiteTask
from fedsys.silo.task_registry import Output


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


@dataclass(frozen=True)
class RunMerge:
    """Run merge ``key``'s computation (off the event loop: it grows with the data) and
    hand its output to :meth:`~fedsys.silo.jobrun.JobRun.on_merged`.

    ``compute`` reads only values captured when the merge became ready, never the run's
    state, so it may run in any thread. ``sealed``: the merge was streamed, so its
    output's checksum will be sent (:class:`Seal`).
    """

    key: str
    compute: Callable[[], Output]
    sealed: bool = False


Action = Bind | Push | PushPart | Seal | Reclaim | Evict | RunMerge


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
