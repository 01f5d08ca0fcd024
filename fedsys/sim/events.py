"""Events on the virtual clock and the priority queue that orders them."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from fedsys.core.update import ClientId


@dataclass(frozen=True)
class Launch:
    """A client asked to train, with its whole timeline known up front.

    The trace fixes when a client would finish (download + compute + upload) and
    when it goes offline, so the clock can order outcomes before any training runs;
    only the clients whose update is actually used are trained.
    """

    client_id: ClientId
    version: int
    start_s: float
    download_s: float
    compute_s: float
    upload_s: float
    offline_s: float
    num_samples: int
    bytes_down: int
    bytes_up: int
    serial: int = 0
    samples_processed: int = 0
    population: int = 0
    local_steps: int | None = None
    """Local SGD steps set for this client (``None``: the trainer's own)."""
    upload_fraction: float = 1.0
    """Share of the update's values it uploads (top-k); 1: the whole update."""

    @property
    def duration_s(self) -> float:
        """Download + compute + upload."""
        return self.download_s + self.compute_s + self.upload_s

    @property
    def finish_s(self) -> float:
        """When the update would arrive."""
        return self.start_s + self.duration_s

    @property
    def online_s(self) -> float:
        """How long the client worked before its update arrived or it went offline."""
        return max(0.0, min(self.duration_s, self.offline_s - self.start_s))

    @property
    def completes(self) -> bool:
        """True when the client stays online until its update has arrived."""
        return self.finish_s <= self.offline_s


@dataclass(frozen=True)
class ClientArrived:
    """A client's update reached the server."""

    launch: Launch


@dataclass(frozen=True)
class ClientDropped:
    """A client went offline before its update arrived."""

    launch: Launch


@dataclass(frozen=True)
class RoundDeadline:
    """The deadline of a round passed."""

    round_idx: int


Event = ClientArrived | ClientDropped | RoundDeadline


def outcome_event(launch: Launch) -> tuple[float, Event]:
    """The time and kind of what happens to a launched client."""
    if launch.completes:
        return launch.finish_s, ClientArrived(launch)
    return max(launch.offline_s, launch.start_s), ClientDropped(launch)


@dataclass
class EventQueue:
    """Min-heap of ``(time, sequence, event)``; ties keep insertion order (deterministic)."""

    _heap: list[tuple[float, int, Event]] = field(default_factory=list)
    _next_seq: int = 0

    def push(self, time_s: float, event: Event) -> None:
        """Schedule ``event`` at ``time_s``."""
        if math.isnan(time_s):
            raise ValueError(f"cannot schedule {event!r} at NaN time")
        heapq.heappush(self._heap, (time_s, self._next_seq, event))
        self._next_seq += 1

    def pop(self) -> tuple[float, Event]:
        """Remove and return the earliest event."""
        time_s, _, event = heapq.heappop(self._heap)
        return time_s, event

    def drain(self) -> list[tuple[float, Event]]:
        """Remove and return every pending event in time order."""
        pending = [heapq.heappop(self._heap) for _ in range(len(self._heap))]
        return [(time_s, event) for time_s, _, event in pending]

    def snapshot(self) -> tuple[list[tuple[float, int, Event]], int]:
        """Pending entries in heap order and the next sequence number (for checkpoints)."""
        return list(self._heap), self._next_seq

    @classmethod
    def restore(cls, entries: list[tuple[float, int, Event]], next_seq: int) -> EventQueue:
        """The queue :meth:`snapshot` described; pops in the same order as the original."""
        heap = [tuple(entry) for entry in entries]
        heapq.heapify(heap)
        return cls(_heap=heap, _next_seq=int(next_seq))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class VirtualClock:
    """The fleet's time. Only moves forward; the simulator reads time only from here."""

    now_s: float = 0.0

    def advance_to(self, time_s: float) -> None:
        """Move the clock to ``time_s``.

        Raises
        ------
        ValueError
            If ``time_s`` is in the past.
        """
        if time_s < self.now_s:
            raise ValueError(f"virtual clock cannot go back from {self.now_s} to {time_s}")
        self.now_s = time_s
