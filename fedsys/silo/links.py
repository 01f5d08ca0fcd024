"""The coordinator's plain values: its settings, a finished job's result, a site's link.

Kept apart from :mod:`fedsys.silo.coordinator` (which re-exports them) so that the
coordinator module holds only its behaviour.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from fedsys.silo.actions import TaskRecord
from fedsys.silo.binding import SiteView
from fedsys.silo.task_registry import Output
from fedsys.wire.protos import silo_pb2
from fedsys.wire.transport import DEFAULT_MAX_MESSAGE_BYTES

__all__ = ["CoordinatorSettings", "JobResult", "SiteLink"]


@dataclass(frozen=True)
class CoordinatorSettings:
    """Limits and timers of a coordinator.

    Parameters
    ----------
    max_message_bytes
        Largest gRPC message.
    max_output_bytes
        Largest task output (a larger one is refused before it is buffered).
    ping_interval_s
        How often each site is pinged (RTT measurement, liveness).
    site_timeout_s
        A site silent for this long is treated as lost.
    hello_timeout_s
        Time a new stream has to introduce itself.
    output_idle_timeout_s
        A ``PutOutput`` stream that sends nothing this long is cut (the site reports the
        task failed and it is re-run). 60 s: a chunk of 64 KiB takes 26 ms at 20 Mbit/s,
        so only a stalled or vanished sender waits that long.
    window_bytes
        HTTP/2 flow-control window per upload stream. A far site's upload moves at most
        one window per RTT, so the default 64 KiB would cap a 100 ms path at 5 Mbit/s;
        a cross-silo coordinator has few peers and can afford a large window.
    """

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_output_bytes: int = 512 * 1024 * 1024
    ping_interval_s: float = 0.5
    site_timeout_s: float = 15.0
    hello_timeout_s: float = 10.0
    output_idle_timeout_s: float = 60.0
    window_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class JobResult:
    """What a finished job returns.

    Attributes
    ----------
    job_id
        Unique id of this run of the job.
    outputs
        The job's results by id.
    duration_s
        Wall time from start to the last result.
    stats
        Counters: binds, requests, pushes, duplicates, reruns, reclaimed, lost sites,
        assign messages.
    records
        One record per accepted site-task output (placement and timing).
    """

    job_id: str
    outputs: dict[str, Output]
    duration_s: float
    stats: dict[str, int]
    records: list[TaskRecord]


@dataclass
class SiteLink:
    """One connected site's stream."""

    view: SiteView
    outbox: asyncio.Queue[silo_pb2.CoordinatorMessage | None] = field(
        default_factory=asyncio.Queue
    )
    last_heard: float = field(default_factory=time.monotonic)
    open: bool = True

    def send(self, message: silo_pb2.CoordinatorMessage) -> None:
        if self.open:
            self.outbox.put_nowait(message)
