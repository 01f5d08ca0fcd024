"""Deadline-bound rounds: whoever has arrived when the deadline passes counts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from fedsys.metrics.records import RoundRecord
from fedsys.parts.rules import ceil_overcommit
from fedsys.sim.engine import Engine, WallTimer, report_for
from fedsys.sim.rounds.base import RoundMode, RoundOutcome, aggregate_round, play_round
from fedsys.sim.rounds.late import LatePolicy, due_updates, hold_stragglers
from fedsys.sim.work import WorkPolicy, plan_work


class DeadlineRounds(RoundMode):
    """Each round lasts at most ``deadline_s`` virtual seconds.

    Updates that arrive after the deadline are discarded (stragglers). The round closes
    early only when every selected client has arrived or dropped out. A round with
    fewer than ``min_participants`` arrivals is either skipped (time passes, the model
    is unchanged) or retried with a fresh selection, at most ``max_retries`` times.

    Parameters
    ----------
    deadline_s
        Round deadline in virtual seconds.
    overcommit
        Selection multiplier over ``clients_per_round``.
    min_participants
        Arrivals needed for the round to aggregate.
    on_short_round
        ``"skip"`` or ``"retry"``.
    max_retries
        Retries of a short round before it is skipped.
    participation
        ``"selector"`` (fixed-size draws by the selector) or ``"poisson"`` (each
        available client joins with probability ``K / N``; see :class:`SyncRounds`).
    late
        What becomes of updates that miss the deadline (default: discarded; see
        :mod:`fedsys.sim.rounds.late`).
    work
        Local steps and upload share per participant (default: ``train.local_steps``
        for all; see :mod:`fedsys.sim.work`).
    """

    def __init__(
        self,
        deadline_s: float,
        overcommit: float = 1.0,
        min_participants: int = 1,
        on_short_round: str = "skip",
        max_retries: int = 3,
        participation: str = "selector",
        late: LatePolicy | None = None,
        work: WorkPolicy | None = None,
    ) -> None:
        if participation not in ("selector", "poisson"):
            raise ValueError(
                f"participation must be 'selector' or 'poisson', got {participation!r}"
            )
        if on_short_round not in ("skip", "retry"):
            raise ValueError(f"on_short_round must be 'skip' or 'retry', got {on_short_round!r}")
        self.deadline_s = deadline_s
        self.overcommit = overcommit
        self.min_participants = min_participants
        self.on_short_round = on_short_round
        self.max_retries = max_retries
        self.participation = participation
        self.late = late if late is not None else LatePolicy()
        self.work = work if work is not None else WorkPolicy()

    def run(
        self, engine: Engine, rounds: int, clients_per_round: int, start_round: int = 0
    ) -> Iterator[RoundRecord]:
        """Yield one record per round (a skipped round has zero participants)."""
        wanted = ceil_overcommit(clients_per_round, self.overcommit)
        for round_idx in range(start_round, rounds):
            timer = WallTimer()
            start_s = engine.clock.now_s
            attempts, discarded = 0, 0
            while True:
                if self.participation == "poisson":
                    rate = min(1.0, clients_per_round / max(engine.population, 1))
                    chosen = engine.select_poisson(round_idx, rate)
                else:
                    chosen = engine.select_waiting(round_idx, wanted)
                engine.note_draw(engine.last_population, len(chosen))
                work = plan_work(engine, chosen, self.work, target_s=self.deadline_s)
                launches = engine.launch(chosen, version=round_idx, work=work)
                deadline = engine.clock.now_s + self.deadline_s
                outcome = play_round(engine, launches, None, deadline, round_idx)
                attempts += 1
                short = len(outcome.arrived) < self.min_participants
                if not short or self.on_short_round == "skip" or attempts > self.max_retries:
                    break
                discarded += _discard(engine, outcome)
            if short:
                discarded += _discard(engine, outcome)
                outcome = RoundOutcome(
                    end_s=outcome.end_s, dropped=outcome.dropped, stragglers=outcome.stragglers
                )
            late, _ = due_updates(engine, self.late, round_idx, outcome.end_s)
            hold_stragglers(engine, self.late, outcome.stragglers)
            record = aggregate_round(engine, round_idx, len(chosen), outcome, start_s, late)
            extra = {**record.extra, "attempts": attempts, "short": short, "discarded": discarded}
            yield replace(record, wall_s=timer.elapsed_s(), extra=extra)


def _discard(engine: Engine, outcome: RoundOutcome) -> int:
    """A short round's arrivals are thrown away; the selector still learns their speed.

    Their work is discarded as a straggler's is, so they report ``straggled``.
    """
    engine.feedback([report_for(launch, "straggled") for launch in outcome.arrived])
    return len(outcome.arrived)
