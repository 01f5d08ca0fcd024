"""Local steps set per participant from what the server knows of it (``round.local_work``).

The rule is the simulator's (:func:`fedsys.parts.rules.idle_time_steps`): the round's
target is the expected arrival of its K-th fastest participant (sync) or the deadline;
a participant expected sooner trains more steps, at most ``max_factor`` times
``train.local_steps``. A participant's expected time comes from the speeds its device
reported when it subscribed (model down, steps of ``min(batch, its samples)``, update
up, as :func:`fedsys.deploy.rounds.priors` estimates it) or, for a device that reported
none, from its last measured round (seconds per step, transfers included: a
conservative guess). A participant the server knows nothing of keeps the config's steps.
With ``partial_upload`` (no other codec), one expected later than the target is told
to upload a top-k share (``TrainTask.upload_fraction``); the server then expects and
decodes exactly that size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedsys.config.schema import DeadlineRounds, SyncRounds
from fedsys.core.update import ClientId
from fedsys.parts.rules import idle_time_steps, partial_upload_shares

if TYPE_CHECKING:
    from fedsys.deploy.state import ServerState


def local_work_problem(state: ServerState) -> str | None:
    """Why this deployment cannot set local work per client (``None``: it can, or it is off)."""
    mode = state.config.round
    if not isinstance(mode, SyncRounds | DeadlineRounds) or mode.local_work.mode == "fixed":
        return None
    if mode.local_work.partial_upload and state.compressor.codec != "none":
        return "round.local_work.partial_upload needs compression.name none"
    if mode.local_work.partial_upload and state.secure_plan is not None:
        return "round.local_work.partial_upload cannot be used with deploy.secure_aggregation"
    if state.parts.train.local_steps is None:
        return "round.local_work idle_time needs train.local_steps (not epochs)"
    return None


@dataclass(frozen=True)
class Work:
    """One participant's task size: local steps and the top-k share it uploads (1: all)."""

    steps: int
    upload_fraction: float = 1.0
    upload_bytes: int = 0


def plan_work(
    state: ServerState, clients: list[ClientId], arrivals: int | None
) -> dict[ClientId, Work]:
    """Each of ``clients``' work this round (empty when local work is ``fixed``).

    With ``partial_upload``, one expected later than the target uploads the top-k
    share of its update that arrives by it (:func:`fedsys.parts.rules.partial_upload_shares`).
    """
    mode = state.config.round
    if not isinstance(mode, SyncRounds | DeadlineRounds) or mode.local_work.mode == "fixed":
        return {}
    if not clients:
        return {}
    train = state.parts.train
    base = train.local_steps
    assert base is not None  # refused by local_work_problem
    transfers = np.full(len(clients), np.nan)
    up_s = np.zeros(len(clients))
    step = np.full(len(clients), np.nan)
    online = np.full(len(clients), np.inf)
    now = state.now_s()
    for i, client in enumerate(clients):
        session = state.registry.sessions.get(int(client))
        if session is None:
            continue
        if session.speed is not None:
            compute_s, down_bps, up_bps = session.speed
            up_s[i] = state.update_bytes / up_bps
            transfers[i] = state.weights.num_bytes / down_bps + up_s[i]
            step[i] = min(train.batch_size, max(session.num_samples, 1)) * compute_s
        elif client in state.step_history:
            transfers[i], step[i] = 0.0, state.step_history[client]
        if math.isfinite(session.online_until_s):
            online[i] = session.online_until_s - now
    deadline = mode.deadline_s if isinstance(mode, DeadlineRounds) else None
    policy = mode.local_work
    steps, target_s = idle_time_steps(
        base, policy.max_factor, transfers, step, arrivals, deadline, online
    )
    fraction = np.ones(len(clients))
    sent = np.full(len(clients), state.update_bytes, dtype=np.int64)
    if policy.partial_upload and np.isfinite(target_s):
        fraction, sent = partial_upload_shares(
            state.weights.num_params,
            state.update_bytes,
            transfers + base * step,
            up_s,
            target_s,
            policy.min_upload_fraction,
        )
    return {
        int(c): Work(int(steps[i]), float(fraction[i]), int(sent[i])) for i, c in enumerate(clients)
    }


__all__ = ["Work", "local_work_problem", "plan_work"]
