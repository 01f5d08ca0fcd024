"""The ``RoundMode`` interface and the event handling shared by round-based modes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from fedsys.core.update import ClientUpdate
from fedsys.metrics.records import RoundRecord
from fedsys.metrics.timeline import TIMELINE_KEY
from fedsys.sim.engine import Engine, report_for
from fedsys.sim.events import ClientArrived, ClientDropped, Event, Launch, RoundDeadline
from fedsys.sim.round_timeline import sim_timeline

if TYPE_CHECKING:
    from fedsys.sim.rounds.late import LateUpdate


class RoundMode(ABC):
    """Decides when rounds open and close; yields one record per aggregation."""

    @abstractmethod
    def run(
        self, engine: Engine, rounds: int, clients_per_round: int, start_round: int = 0
    ) -> Iterator[RoundRecord]:
        """Drive ``engine`` for aggregations ``start_round .. rounds - 1``.

        Between two yielded records the engine's state (including
        ``engine.mode_state``) is complete: a checkpoint of it, restored into a fresh
        engine, continues with ``start_round`` set to the next round.
        """


@dataclass
class RoundOutcome:
    """Who arrived, who dropped, who was still running when a round closed."""

    end_s: float
    arrived: list[Launch] = field(default_factory=list)
    dropped: list[Launch] = field(default_factory=list)
    stragglers: list[Launch] = field(default_factory=list)


class _RoundEvents:
    """Per-round event handlers; each returns True when the round must close."""

    def __init__(self, outcome: RoundOutcome, launched: int, close_after: int | None) -> None:
        self.outcome = outcome
        self.outstanding = launched
        self.close_after = close_after

    def on_arrival(self, event: ClientArrived) -> bool:
        self.outcome.arrived.append(event.launch)
        self.outstanding -= 1
        enough = self.close_after is not None and len(self.outcome.arrived) >= self.close_after
        return enough or self.outstanding == 0

    def on_dropout(self, event: ClientDropped) -> bool:
        self.outcome.dropped.append(event.launch)
        self.outstanding -= 1
        return self.outstanding == 0

    def on_deadline(self, event: RoundDeadline) -> bool:
        return True


def play_round(
    engine: Engine,
    launches: list[Launch],
    close_after: int | None,
    deadline_s: float | None = None,
    round_idx: int = 0,
) -> RoundOutcome:
    """Advance the clock through a round's events until it closes.

    The round closes when ``close_after`` clients have arrived, at ``deadline_s``, or
    when no launched client is outstanding, whichever comes first. Clients still
    running then are stragglers: their work is discarded and they are released.
    """
    outcome = RoundOutcome(end_s=engine.clock.now_s)
    handlers = _RoundEvents(outcome, len(launches), close_after)
    dispatch = {
        ClientArrived: handlers.on_arrival,
        ClientDropped: handlers.on_dropout,
        RoundDeadline: handlers.on_deadline,
    }
    if deadline_s is not None:
        engine.queue.push(deadline_s, RoundDeadline(round_idx))
    while len(engine.queue) and handlers.outstanding >= 0:
        time_s, event = engine.queue.pop()
        outcome.end_s = time_s
        if dispatch[type(event)](event):  # type: ignore[operator]
            break
    outcome.stragglers = [_launch_of(e) for _, e in engine.queue.drain() if _launch_of(e)]
    engine.clock.advance_to(outcome.end_s)
    for launch in [*outcome.arrived, *outcome.dropped, *outcome.stragglers]:
        engine.release(launch)
    return outcome


def _launch_of(event: Event) -> Launch | None:
    return None if isinstance(event, RoundDeadline) else event.launch


def aggregate_round(
    engine: Engine,
    round_idx: int,
    selected: int,
    outcome: RoundOutcome,
    start_s: float,
    late: Sequence[LateUpdate] = (),
) -> RoundRecord:
    """Train the arrived clients, aggregate them, report everyone to the selector.

    ``late`` are earlier rounds' stragglers whose updates arrived by now: each trains
    from its own start weights and enters the aggregate scaled by its staleness
    weight (they reported ``straggled`` when their round closed).

    The round ends when its last counted update arrives plus the server's calibrated
    time (``clock.server_round_s`` + ``clock.server_update_s`` per aggregated update).
    """
    updates: dict[int, ClientUpdate] = {}
    weights = {id(u.launch): u.weight for u in late}

    def trained() -> Iterator[ClientUpdate]:
        for launch, update in engine.train_many(outcome.arrived):
            updates[id(launch)] = update
            yield update
        if late:
            starts = [u.start for u in late]
            for launch, update in engine.train_many([u.launch for u in late], starts):
                yield replace(update, delta=update.delta.scale(weights[id(launch)]))

    result = engine.aggregate(trained())
    reports = [
        report_for(launch, result.outcome_of(updates.get(id(launch))), updates.get(id(launch)))
        for launch in outcome.arrived
    ]
    reports += [report_for(launch, "dropped") for launch in outcome.dropped]
    reports += [report_for(launch, "straggled") for launch in outcome.stragglers]
    engine.feedback(reports)
    launched = outcome.arrived + outcome.dropped + outcome.stragglers
    parts = engine.parts
    end_s = outcome.end_s + parts.server_round_s + parts.server_update_s * result.participants
    engine.clock.advance_to(end_s)
    timeline = sim_timeline(engine, round_idx, launched, reports, start_s, end_s, outcome.end_s)
    return RoundRecord(
        round_idx=round_idx,
        start_s=start_s,
        end_s=end_s,
        wall_s=0.0,
        selected=selected,
        participants=result.participants,
        dropouts=len(outcome.dropped),
        stragglers=len(outcome.stragglers),
        bytes_down=sum(launch.bytes_down for launch in launched),
        bytes_up=sum(launch.bytes_up for launch in [*outcome.arrived, *(u.launch for u in late)]),
        rejected=len(result.rejected),
        train_loss=result.train_loss,
        extra={
            "clients": [launch.client_id for launch in outcome.arrived],
            **({"late": [[u.launch.client_id, u.staleness] for u in late]} if late else {}),
            **engine.accounting(result),
            TIMELINE_KEY: timeline,
        },
    )
