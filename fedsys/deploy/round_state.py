"""Bookkeeping of one live round: who was asked, who answered, who vanished.

The round loop opens a :class:`LiveRound`, the service reports arrivals
(:meth:`LiveRound.accept`), refusals and disconnects into it, and the loop waits on
:meth:`LiveRound.wait` until the round's closing rule is met (K arrivals, a deadline,
or nobody left to wait for). The service also stamps, on the server's clock, when each
task's model download and update upload began and ended (:meth:`LiveRound.stamp`): the
round's client timeline (:mod:`fedsys.deploy.round_timeline`) is drawn from them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from fedsys.core.update import ClientId, ClientReport, ClientUpdate, LossStats
from fedsys.deploy.feed import StreamingAggregation
from fedsys.deploy.late import FoldedLate
from fedsys.deploy.local_work import Work
from fedsys.deploy.registry import Assignment
from fedsys.deploy.service import LateUpdateError, straggler_reason

PHASE_MARKS = ("download_start", "download_end", "upload_start", "upload_end", "ended")
"""What the service stamps of a task; ``ended``: refused, or turned away as a straggler."""


@dataclass(frozen=True)
class Arrival:
    """What the selector and the record need of an accepted update (not the update itself)."""

    client_id: ClientId
    duration_s: float
    num_samples: int
    loss: LossStats | None
    upload_bytes: int
    at: float = field(default_factory=time.monotonic)
    """When it was counted (``time.monotonic``): the round's K-th arrival closes it."""


@dataclass
class LiveRound:
    """One round between selection and aggregation.

    Parameters
    ----------
    round_idx, model_version
        Which round, and the model version its tasks train from.
    target
        Accepted updates that close the round early (K in sync rounds; ``None``:
        only the deadline or the last answer closes it).
    feed
        The strategy consuming accepted updates as they arrive.
    """

    round_idx: int
    model_version: int
    target: int | None
    feed: StreamingAggregation
    started: float = field(default_factory=time.monotonic)
    assignments: dict[ClientId, Assignment] = field(default_factory=dict)
    sizes: dict[ClientId, int] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    rejected: list[tuple[ClientId, str]] = field(default_factory=list)
    failed: set[ClientId] = field(default_factory=set)
    dropped: dict[ClientId, float] = field(default_factory=dict)
    drop_reasons: dict[ClientId, str] = field(default_factory=dict)
    late: list[FoldedLate] = field(default_factory=list)
    """Earlier rounds' stragglers aggregated into this round (``round.late_updates``)."""
    work: dict[ClientId, Work] = field(default_factory=dict)
    """Steps and upload share each participant was given (``round.local_work``; empty: fixed)."""
    stamps: dict[ClientId, dict[str, float]] = field(default_factory=dict)
    """Per client, ``time.monotonic`` of each phase mark of its task (:data:`PHASE_MARKS`)."""
    available: int | None = None
    """Idle clients the round selected among."""
    closed: bool = False
    recorded: bool = False
    bytes_down: int = 0
    feed_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def elapsed_s(self) -> float:
        """Seconds since the round's tasks went out."""
        return time.monotonic() - self.started

    @property
    def answered(self) -> set[ClientId]:
        """Clients whose task ended: accepted, refused or gone."""
        done = {a.client_id for a in self.arrivals} | set(self.dropped)
        return done | self.failed

    @property
    def pending(self) -> set[ClientId]:
        """Assigned clients still training or uploading."""
        return set(self.assignments) - self.answered

    def satisfied(self) -> bool:
        """Whether the closing rule (other than the clock) is met."""
        if self.target is not None and len(self.arrivals) >= self.target:
            return True
        return bool(self.assignments) and not self.pending

    def notify(self) -> None:
        """Wake the round loop to re-check the closing rule."""
        self._changed.set()

    async def wait(self, timeout_s: float) -> None:
        """Wait until the round is satisfied or ``timeout_s`` seconds have passed."""
        deadline = time.monotonic() + timeout_s
        while not self.satisfied():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    def drop(self, client_id: ClientId, reason: str = "connection lost") -> None:
        """The client dropped out before its update arrived (lost link, transfer cut).

        Counted until the round is recorded, also after it closed: a client still
        training when the K-th update came, whose link is lost while the round is
        aggregated and evaluated, dropped out; it is a straggler only if still
        connected when the record is written.
        """
        if client_id in self.pending and not self.recorded:
            self.dropped[client_id] = self.elapsed_s()
            self.drop_reasons[client_id] = reason
            self.notify()

    def stamp(self, client_id: ClientId, task_id: str, mark: str) -> None:
        """Note that ``mark`` (one of :data:`PHASE_MARKS`) of task ``task_id`` happened now.

        Only this round's own tasks are stamped, and only until the round is recorded;
        the first stamp of a mark wins (a retried transfer began with its first try).
        """
        task = self.assignments.get(client_id)
        if task is None or task.task_id != task_id or self.recorded:
            return
        self.stamps.setdefault(client_id, {}).setdefault(mark, time.monotonic())

    def refuse(self, client_id: ClientId, reason: str, *, ends_task: bool) -> None:
        """Record a refused update (validation, checksum, replay) for the round's record.

        ``ends_task``: the refused upload was this round's task of the client, which
        therefore has answered (a replay of an old task leaves the current one pending).
        """
        self.rejected.append((client_id, reason))
        if ends_task and client_id in self.assignments:
            self.failed.add(client_id)
            self.stamp(client_id, self.assignments[client_id].task_id, "ended")
        self.notify()

    async def accept(self, update: ClientUpdate, task: Assignment) -> None:
        """Count a validated update of ``task`` in this round.

        Raises
        ------
        LateUpdateError
            If the round no longer takes updates of ``task``'s round (a straggler).
        """
        async with self.feed_lock:
            if not self.is_open_for(task.round_idx):
                raise LateUpdateError(straggler_reason(task.round_idx))
            await self.feed.add(update)
            self.arrivals.append(
                Arrival(
                    client_id=update.client_id,
                    duration_s=update.duration_s,
                    num_samples=update.num_samples,
                    loss=update.loss,
                    upload_bytes=update.upload_bytes,
                )
            )
            self.notify()

    def is_open_for(self, round_idx: int) -> bool:
        """Whether an update of ``round_idx``'s task can still count.

        A sync round is full at its K-th arrival even before the loop closes it.
        """
        full = self.target is not None and len(self.arrivals) >= self.target
        return not self.closed and not full and round_idx == self.round_idx

    def reports(self) -> list[ClientReport]:
        """What the selector learns: completed for accepted updates, not completed otherwise.

        Clients that did not finish report the time they were given (a lower bound
        of their duration), as the simulator reports stragglers and dropouts.
        """
        reports = [
            ClientReport(
                client_id=a.client_id,
                round_idx=self.round_idx,
                duration_s=a.duration_s,
                num_samples=a.num_samples,
                completed=True,
                loss=a.loss,
                outcome="completed",
                samples_processed=a.loss.samples_seen if a.loss is not None else 0,
            )
            for a in self.arrivals
        ]
        accepted = {a.client_id for a in self.arrivals}
        elapsed = self.elapsed_s()
        for client in self.assignments:
            if client in accepted:
                continue
            if client in self.dropped:
                outcome = "dropped"
            elif client in self.failed:
                outcome = "rejected"
            else:
                outcome = "straggled"
            reports.append(
                ClientReport(
                    client_id=client,
                    round_idx=self.round_idx,
                    duration_s=self.dropped.get(client, elapsed),
                    num_samples=self.sizes.get(client, 0),
                    completed=False,
                    outcome=outcome,
                )
            )
        return reports
