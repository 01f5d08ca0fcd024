"""Synchronous rounds with over-commitment (Bonawitz et al., MLSys 2019; FedScale)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from fedsys.metrics.records import RoundRecord
from fedsys.sim.engine import Engine, WallTimer, ceil_overcommit
from fedsys.sim.rounds.base import RoundMode, aggregate_round, play_round


class SyncRounds(RoundMode):
    """Select ``ceil(overcommit × K)`` clients; the round closes at the K-th arrival.

    The slower selected clients are stragglers whose work is discarded; clients that
    go offline before finishing drop out. If too few remain, the round closes when
    the last outstanding client has arrived or dropped.

    Parameters
    ----------
    overcommit
        Selection multiplier, at least 1 (FedScale and Google's system use 1.3).
    """

    def __init__(self, overcommit: float = 1.3) -> None:
        self.overcommit = overcommit

    def run(
        self, engine: Engine, rounds: int, clients_per_round: int, start_round: int = 0
    ) -> Iterator[RoundRecord]:
        """Yield one record per round."""
        for round_idx in range(start_round, rounds):
            timer = WallTimer()
            start_s = engine.clock.now_s
            wanted = ceil_overcommit(clients_per_round, self.overcommit)
            chosen = engine.select_waiting(round_idx, wanted)
            launches = engine.launch(chosen, version=round_idx)
            outcome = play_round(engine, launches, close_after=clients_per_round)
            record = aggregate_round(engine, round_idx, len(chosen), outcome, start_s)
            yield replace(record, wall_s=timer.elapsed_s())
