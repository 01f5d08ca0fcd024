"""Stragglers' updates aggregated into a later round, discounted by their staleness.

A synchronous round closes at its K-th arrival (or its deadline); FedScale discards
the slower clients' work. REFL (Abdelmoniem et al., EuroSys 2023, code
github.com/ahmedcs/REFL, read for behaviour only) lets them finish and folds their
update into the first round that closes after it arrives, ``s`` rounds late, with a
weight that falls with ``s`` (:class:`~fedsys.parts.rules.LatePolicy`, the one
curve the deployment also applies). The straggler stays busy (not selectable) until then,
trains from the weights of the round it was picked for, and is charged its whole
timeline on the virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fedsys.core.weights import ModelWeights
from fedsys.parts.rules import LATE_CURVES, LatePolicy
from fedsys.sim.engine import Engine
from fedsys.sim.events import Launch

CURVES = LATE_CURVES


@dataclass(frozen=True)
class LateState:
    """Stragglers still training for a later round, and the weights they started from."""

    pending: tuple[Launch, ...] = ()
    starts: dict[int, ModelWeights] = field(default_factory=dict)


@dataclass(frozen=True)
class LateUpdate:
    """A straggler's update due in this round: who, from which weights, at what weight."""

    launch: Launch
    start: ModelWeights
    staleness: int
    weight: float


def hold_stragglers(engine: Engine, policy: LatePolicy, stragglers: list[Launch]) -> list[Launch]:
    """Keep the stragglers that will finish training; return the ones that will not.

    Call at a round's close, before it aggregates (the engine's weights are still the
    ones the stragglers started from). Kept clients stay busy until they are used.
    """
    if not policy.enabled or not stragglers:
        return stragglers
    state = _state(engine)
    kept = [launch for launch in stragglers if launch.completes]
    starts = dict(state.starts)
    for launch in kept:
        engine.busy.add(launch.client_id)
        starts.setdefault(launch.version, engine.weights)
    engine.mode_state = LateState(pending=(*state.pending, *kept), starts=starts)
    return [launch for launch in stragglers if not launch.completes]


def due_updates(
    engine: Engine, policy: LatePolicy, round_idx: int, end_s: float
) -> tuple[list[LateUpdate], list[Launch]]:
    """Late updates that arrived by ``end_s`` (to aggregate) and ones now too stale.

    Both leave the pending set and their clients are released.
    """
    state = _state(engine)
    if not state.pending:
        return [], []
    due, expired, waiting = [], [], []
    for launch in state.pending:
        staleness = round_idx - launch.version
        if staleness > policy.max_staleness:
            expired.append(launch)
        elif launch.finish_s <= end_s:
            start = state.starts[launch.version]
            due.append(LateUpdate(launch, start, staleness, policy.weight(staleness)))
        else:
            waiting.append(launch)
    for launch in [*expired, *(u.launch for u in due)]:
        engine.release(launch)
    versions = {launch.version for launch in waiting}
    starts = {v: w for v, w in state.starts.items() if v in versions}
    engine.mode_state = replace(state, pending=tuple(waiting), starts=starts)
    return due, expired


def _state(engine: Engine) -> LateState:
    state = engine.mode_state
    return state if isinstance(state, LateState) else LateState()


__all__ = ["CURVES", "LatePolicy", "LateState", "LateUpdate", "due_updates", "hold_stragglers"]
