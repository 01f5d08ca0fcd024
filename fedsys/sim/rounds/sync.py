"""Synchronous rounds with over-commitment (Bonawitz et al., MLSys 2019; FedScale)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from fedsys.metrics.records import RoundRecord
from fedsys.parts.rules import ceil_overcommit
from fedsys.sim.engine import Engine, WallTimer
from fedsys.sim.rounds.base import RoundMode, aggregate_round, play_round
from fedsys.sim.rounds.late import LatePolicy, due_updates, hold_stragglers
from fedsys.sim.work import WorkPolicy, plan_work


class SyncRounds(RoundMode):
    """Select ``ceil(overcommit × K)`` clients; the round closes at the K-th arrival.

    The slower selected clients are stragglers whose work is discarded; clients that
    go offline before finishing drop out. If too few remain, the round closes when
    the last outstanding client has arrived or dropped.

    With ``participation="poisson"`` the selector is not asked: each available client
    joins independently with probability ``q = K / N`` (N: clients holding data), the
    sampling DP-FedAvg's accounting assumes, and the round waits for everyone drawn.

    Parameters
    ----------
    overcommit
        Selection multiplier, at least 1 (FedScale and Google's system use 1.3).
    participation
        ``"selector"`` (fixed-size draws by the selector) or ``"poisson"``.
    late
        What becomes of stragglers' updates (default: discarded; see
        :mod:`fedsys.sim.rounds.late`).
    work
        Local steps and upload share per participant (default: ``train.local_steps``
        for all; see :mod:`fedsys.sim.work`).
    """

    def __init__(
        self,
        overcommit: float = 1.3,
        participation: str = "selector",
        late: LatePolicy | None = None,
        work: WorkPolicy | None = None,
    ) -> None:
        if participation not in ("selector", "poisson"):
            raise ValueError(
                f"participation must be 'selector' or 'poisson', got {participation!r}"
            )
        self.overcommit = overcommit
        self.participation = participation
        self.late = late if late is not None else LatePolicy()
        self.work = work if work is not None else WorkPolicy()

    def run(
        self, engine: Engine, rounds: int, clients_per_round: int, start_round: int = 0
    ) -> Iterator[RoundRecord]:
        """Yield one record per round."""
        for round_idx in range(start_round, rounds):
            timer = WallTimer()
            start_s = engine.clock.now_s
            if self.participation == "poisson":
                rate = min(1.0, clients_per_round / max(engine.population, 1))
                chosen = engine.select_poisson(round_idx, rate)
                close_after = None
            else:
                wanted = ceil_overcommit(clients_per_round, self.overcommit)
                chosen = engine.select_waiting(round_idx, wanted)
                close_after = clients_per_round
            engine.note_draw(engine.last_population, len(chosen))
            work = plan_work(engine, chosen, self.work, arrivals=close_after)
            launches = engine.launch(chosen, version=round_idx, work=work)
            outcome = play_round(engine, launches, close_after=close_after)
            late, _ = due_updates(engine, self.late, round_idx, outcome.end_s)
            hold_stragglers(engine, self.late, outcome.stragglers)
            record = aggregate_round(engine, round_idx, len(chosen), outcome, start_s, late)
            yield replace(record, wall_s=timer.elapsed_s())
