"""Round-based modes (sync, deadline) built from their config sections."""

from __future__ import annotations

from fedsys.config.rounds import DeadlineRounds, SyncRounds
from fedsys.sim.rounds.base import RoundMode
from fedsys.sim.rounds.late import LatePolicy
from fedsys.sim.work import WorkPolicy


def late_policy(config: SyncRounds | DeadlineRounds) -> LatePolicy:
    """The ``round.late_updates`` section as the policy round modes apply."""
    return LatePolicy(**config.late_updates.model_dump())


def work_policy(config: SyncRounds | DeadlineRounds) -> WorkPolicy:
    """The ``round.local_work`` section as the policy round modes apply."""
    return WorkPolicy(**config.local_work.model_dump())


def build_round_based(config: SyncRounds | DeadlineRounds, participation: str) -> RoundMode:
    """The sync or deadline mode of ``config``, with its late-update and local-work policies."""
    if isinstance(config, SyncRounds):
        from fedsys.sim.rounds.sync import SyncRounds as SyncMode

        return SyncMode(
            overcommit=config.overcommit,
            participation=participation,
            late=late_policy(config),
            work=work_policy(config),
        )
    from fedsys.sim.rounds.deadline import DeadlineRounds as DeadlineMode

    settings = config.model_dump(exclude={"mode", "participation", "late_updates", "local_work"})
    return DeadlineMode(
        **settings,
        participation=participation,
        late=late_policy(config),
        work=work_policy(config),
    )


__all__ = ["build_round_based", "late_policy", "work_policy"]
