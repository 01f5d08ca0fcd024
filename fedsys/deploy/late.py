"""Stragglers' updates kept for a later round (``round.late_updates``), as the simulator does.

With a curve other than ``off``, an update that arrives after its round closed is
validated, held, and aggregated when the next round closes, ``s`` rounds late, its
delta scaled by the configured weight ``w(s)`` (:class:`fedsys.parts.rules.LatePolicy`,
the simulator's curve); one more than ``max_staleness`` rounds late is dropped. Its
client reported ``straggled`` when its round closed. Held updates live in memory
only: a resumed server has lost them (as it loses the round in flight).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fedsys.config.schema import DeadlineRounds, SyncRounds
from fedsys.core.update import ClientUpdate
from fedsys.parts.rules import LatePolicy

if TYPE_CHECKING:
    from fedsys.deploy.round_state import LiveRound
    from fedsys.deploy.state import ServerState


@dataclass(frozen=True)
class HeldUpdate:
    """A straggler's validated update and the round it was trained for."""

    update: ClientUpdate
    round_idx: int


@dataclass(frozen=True)
class FoldedLate:
    """A held update aggregated into a round: who, how late, at what weight, how big."""

    client_id: int
    staleness: int
    weight: float
    upload_bytes: int


def late_policy(state: ServerState) -> LatePolicy:
    """The run's ``round.late_updates`` as the policy (``off`` for modes without it)."""
    mode = state.config.round
    if isinstance(mode, SyncRounds | DeadlineRounds):
        return LatePolicy(**mode.late_updates.model_dump())
    return LatePolicy()


async def fold_late(state: ServerState, live: LiveRound) -> list[FoldedLate]:
    """Feed the held updates into ``live`` (closed, not yet aggregated), scaled by ``w(s)``.

    Updates beyond ``max_staleness`` are dropped; the held list is emptied either way.
    """
    policy = late_policy(state)
    held, state.late_held = state.late_held, []
    folded = []
    for item in held:
        staleness = max(live.round_idx - item.round_idx, 0)
        weight = policy.weight(staleness)
        if weight <= 0:
            continue
        update = item.update
        await live.feed.add(replace(update, delta=update.delta.scale(weight)))
        folded.append(FoldedLate(update.client_id, staleness, weight, update.upload_bytes))
    return folded


__all__ = ["FoldedLate", "HeldUpdate", "fold_late", "late_policy"]
