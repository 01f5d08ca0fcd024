"""Local steps set per participant from what the server knows of it (``round.local_work``).

The rule is the simulator's (:func:`fedsys.parts.rules.idle_time_steps`): the round's
target is the expected arrival of its K-th fastest participant (sync) or the deadline;
a participant expected sooner trains more steps, at most ``max_factor`` times
``train.local_steps``. A participant's expected time comes from the speeds its device
reported when it subscribed (model down, steps of ``min(batch, its samples)``, update
up, as :func:`fedsys.deploy.rounds.priors` estimates it) or, for a device that reported
none, from its last measured round (seconds per step, transfers included: a
conservative guess). A participant the server knows nothing of keeps the config's steps.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from fedsys.config.schema import DeadlineRounds, SyncRounds
from fedsys.core.update import ClientId
from fedsys.parts.rules import idle_time_steps

if TYPE_CHECKING:
    from fedsys.deploy.state import ServerState


def local_work_problem(state: ServerState) -> str | None:
    """Why this deployment cannot set local work per client (``None``: it can, or it is off)."""
    mode = state.config.round
    if not isinstance(mode, SyncRounds | DeadlineRounds) or mode.local_work.mode == "fixed":
        return None
    if mode.local_work.partial_upload:
        return "round.local_work.partial_upload is simulator-only so far"
    if state.parts.train.local_steps is None:
        return "round.local_work idle_time needs train.local_steps (not epochs)"
    return None


def plan_steps(
    state: ServerState, clients: list[ClientId], arrivals: int | None
) -> dict[ClientId, int]:
    """Each of ``clients``' local steps this round (empty when local work is ``fixed``)."""
    mode = state.config.round
    if not isinstance(mode, SyncRounds | DeadlineRounds) or mode.local_work.mode == "fixed":
        return {}
    if not clients:
        return {}
    train = state.parts.train
    base = train.local_steps
    assert base is not None  # refused by local_work_problem
    transfers = np.full(len(clients), np.nan)
    step = np.full(len(clients), np.nan)
    online = np.full(len(clients), np.inf)
    now = state.now_s()
    for i, client in enumerate(clients):
        session = state.registry.sessions.get(int(client))
        if session is None:
            continue
        if session.speed is not None:
            compute_s, down_bps, up_bps = session.speed
            transfers[i] = state.weights.num_bytes / down_bps + state.update_bytes / up_bps
            step[i] = min(train.batch_size, max(session.num_samples, 1)) * compute_s
        elif client in state.step_history:
            transfers[i], step[i] = 0.0, state.step_history[client]
        if math.isfinite(session.online_until_s):
            online[i] = session.online_until_s - now
    deadline = mode.deadline_s if isinstance(mode, DeadlineRounds) else None
    steps, _ = idle_time_steps(
        base, mode.local_work.max_factor, transfers, step, arrivals, deadline, online
    )
    return {int(c): int(s) for c, s in zip(clients, steps, strict=True)}


__all__ = ["local_work_problem", "plan_steps"]
