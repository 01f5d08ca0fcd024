"""Local work set per participant from its expected time (PyramidFL-like).

PyramidFL (Li et al., MobiCom 2022, code github.com/liecn/PyramidFL, read for
behaviour only): in a synchronous round a fast participant would sit idle until the
round closes, so it trains more local iterations in proportion to its idle time
(capped); a slow participant drops part of its update so it arrives near the
round's end. Here:

* the round's target duration is the expected arrival of its K-th fastest
  participant (sync rounds, where the round closes) or the deadline;
* a participant's steps are ``floor((target - transfers) / step time)``, never fewer
  than ``train.local_steps``, at most ``max_factor`` times that, and never more than
  fit in its remaining online time;
* with partial uploads, one expected later than the target uploads the top-k share
  of its update (the codec layer's :class:`~fedsys.aggregation.compression.TopK`,
  without error feedback: the rest is dropped) that fits, at least
  ``min_upload_fraction``.

Where it departs from the reference code (``training/param_server.py``,
``prune_client_tasks``): there, steps grow by ``min(10, beta x idle steps / epoch) + 1``
(up to 11x) and every participant drops a random share of its update that grows with
its rank by gradient utility (0.1 to 0.6); here the cap is configurable and only a
participant that would miss the target sends less, its largest values (top-k), just
enough to arrive by the target.

The plan only changes what the clock charges (``samples_processed``, upload bytes)
and what the trainer runs; the selector learns the processed samples it reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedsys.aggregation.compression import TopK
from fedsys.core.update import ClientId
from fedsys.core.weights import ModelWeights
from fedsys.parts.rules import idle_time_steps, partial_upload_shares
from fedsys.sim.events import Launch
from fedsys.traces.timing import client_round_time

if TYPE_CHECKING:
    from fedsys.sim.engine import Engine

MODES = ("fixed", "idle_time")


@dataclass(frozen=True)
class WorkPolicy:
    """How much each participant trains and uploads (see :class:`fedsys.config.rounds.LocalWork`).

    Parameters
    ----------
    mode
        ``fixed`` (everyone runs ``train.local_steps``) or ``idle_time``.
    max_factor
        Most steps, in multiples of ``train.local_steps``.
    partial_upload
        Whether participants slower than the target upload a top-k share.
    min_upload_fraction
        Smallest share of values a partial upload keeps.
    """

    mode: str = "fixed"
    max_factor: float = 4.0
    partial_upload: bool = False
    min_upload_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"local work mode must be one of {MODES}, got {self.mode!r}")
        if self.max_factor < 1 or not 0 < self.min_upload_fraction <= 1:
            raise ValueError("local work needs max_factor >= 1 and 0 < min_upload_fraction <= 1")

    @property
    def enabled(self) -> bool:
        """Whether work is set per participant."""
        return self.mode != "fixed"


@dataclass(frozen=True, eq=False)
class WorkPlan:
    """Per-participant work of one launch, aligned with ``client_ids``."""

    client_ids: np.ndarray
    steps: np.ndarray
    samples: np.ndarray
    upload_fraction: np.ndarray
    upload_bytes: np.ndarray
    target_s: float


def plan_work(
    engine: Engine,
    client_ids: list[ClientId],
    policy: WorkPolicy,
    arrivals: int | None = None,
    target_s: float | None = None,
) -> WorkPlan | None:
    """Each participant's steps and upload share (``None`` when the policy is ``fixed``).

    Parameters
    ----------
    engine
        The run (fleet, trainer, model size, clock).
    client_ids
        Participants about to be launched.
    policy
        The local-work settings.
    arrivals
        Sync rounds: the round closes at this many arrivals; the target is the
        expected duration of the ``arrivals``-th fastest participant.
    target_s
        Deadline rounds: the target duration itself.

    Raises
    ------
    ValueError
        If training runs epochs (no ``train.local_steps`` to scale), or partial
        uploads are asked for on top of another update codec.
    """
    if not policy.enabled or not client_ids:
        return None
    parts = engine.parts
    base = parts.trainer.config.local_steps
    if base is None:
        raise ValueError("round.local_work idle_time needs train.local_steps (not epochs)")
    if policy.partial_upload and engine.compresses:
        raise ValueError("round.local_work.partial_upload needs compression.name none")
    ids = np.asarray(client_ids, dtype=np.int64)
    per_step = np.minimum(parts.trainer.config.batch_size, parts.dataset.client_sizes[ids])
    down_s, step_s, up_s = client_round_time(
        parts.fleet,
        ids,
        per_step,
        engine.weights.num_bytes,
        engine.upload_bytes(),
        parts.model_cost_ratio,
    )
    transfers_s = down_s + up_s + parts.client_task_s
    base_s = transfers_s + base * step_s
    online_s = parts.fleet.online_until(ids, engine.clock.now_s) - engine.clock.now_s
    steps, target_s = idle_time_steps(
        base, policy.max_factor, transfers_s, step_s, arrivals, target_s, online_s
    )
    fraction = np.ones(len(ids))
    upload_bytes = np.full(len(ids), engine.upload_bytes(), dtype=np.int64)
    if policy.partial_upload:
        fraction, upload_bytes = _partial(engine, ids, base_s, up_s, target_s, policy)
    return WorkPlan(ids, steps, steps * per_step, fraction, upload_bytes, float(target_s))


def _partial(
    engine: Engine,
    ids: np.ndarray,
    base_s: np.ndarray,
    up_s: np.ndarray,
    target_s: float,
    policy: WorkPolicy,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k share and upload bytes of each participant expected later than the target."""
    return partial_upload_shares(
        engine.weights.num_params,
        engine.upload_bytes(),
        base_s,
        up_s,
        target_s,
        policy.min_upload_fraction,
    )


def partial_upload(delta: ModelWeights, launch: Launch) -> ModelWeights:
    """What the server decodes from a partial upload: the top-k share, the rest dropped.

    Raises
    ------
    RuntimeError
        If the encoded size differs from the size the virtual clock charged.
    """
    codec = TopK(fraction=launch.upload_fraction)
    encoded, _ = codec.encode(delta, None, seed=0)
    if encoded.num_bytes != launch.bytes_up:
        raise RuntimeError(
            f"partial upload encoded {encoded.num_bytes} bytes but the clock charged "
            f"{launch.bytes_up}"
        )
    return codec.decode(encoded, like=delta)


__all__ = ["MODES", "WorkPlan", "WorkPolicy", "partial_upload", "plan_work"]
