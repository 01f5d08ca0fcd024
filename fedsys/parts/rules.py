"""Rules every round-runner follows, simulated or real, so both sides agree.

Over-commitment, the wire size of an update, the seed of a task, the staleness
weight of a late update and the idle-time rule of local work are decided here once:
the simulator's engine and the deployed aggregator both call these, which is what lets
``fedsys fidelity`` compare a simulated run with its deployment like for like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedsys.aggregation.compression import Compressor, NoCompression, top_k_count
from fedsys.core.training import fold_seed
from fedsys.core.weights import ModelWeights


def ceil_overcommit(k: int, overcommit: float) -> int:
    """Clients to select so that ``k`` are likely to finish."""
    return max(k, math.ceil(overcommit * k - 1e-9))


def wire_bytes(compressor: Compressor, weights: ModelWeights) -> int:
    """Upload size of one update; every codec's size depends only on the layout."""
    if isinstance(compressor, NoCompression):
        return weights.num_bytes
    encoded, _ = compressor.encode(weights.zeros_like(), None, seed=0)
    return encoded.num_bytes


def task_seed(seed: int, round_idx: int, client_id: int, serial: int) -> int:
    """Mini-batch and codec seed of one task: the simulator's for the same launch.

    The simulator trains launch ``serial`` (tasks handed out before it in the run) of
    ``client_id`` in round ``round_idx`` with seed ``[seed, round_idx, client_id,
    serial]``; sending its folded value makes a real client train on the same
    mini-batches, so both sides learn the same losses (and Oort picks alike).
    """
    return fold_seed([seed, round_idx, client_id, serial])


LATE_CURVES = ("off", "constant", "polynomial", "exponential", "hinge")


@dataclass(frozen=True)
class LatePolicy:
    """How late updates are weighted (see :class:`fedsys.config.rounds.LateUpdates`).

    Parameters
    ----------
    curve
        ``off`` (discard late updates), ``constant``, ``polynomial``,
        ``exponential`` or ``hinge``.
    exponent
        Steepness of the curve.
    hinge_after
        ``hinge``: rounds of lateness kept at full weight.
    max_staleness
        Updates more rounds late than this are discarded.
    """

    curve: str = "off"
    exponent: float = 0.5
    hinge_after: int = 1
    max_staleness: int = 5

    def __post_init__(self) -> None:
        if self.curve not in LATE_CURVES:
            raise ValueError(f"late update curve must be one of {LATE_CURVES}, got {self.curve!r}")
        if self.exponent < 0 or self.max_staleness < 1 or self.hinge_after < 0:
            raise ValueError(
                "late updates need exponent >= 0, max_staleness >= 1 and hinge_after >= 0"
            )

    @property
    def enabled(self) -> bool:
        """Whether stragglers keep training for a later round."""
        return self.curve != "off"

    def weight(self, staleness: int) -> float:
        """``w(s)`` of an update ``s`` rounds late (0 beyond ``max_staleness``).

        Raises
        ------
        ValueError
            If ``staleness`` is negative.
        """
        if staleness < 0:
            raise ValueError(f"staleness must be >= 0, got {staleness}")
        if not self.enabled or staleness > self.max_staleness:
            return 0.0
        a, s = self.exponent, float(staleness)
        if self.curve == "polynomial":
            return (1.0 + s) ** -a
        if self.curve == "exponential":
            return math.exp(-a * s)
        if self.curve == "hinge":
            return 1.0 if s <= self.hinge_after else 1.0 / (1.0 + a * (s - self.hinge_after))
        return 1.0


def idle_time_steps(
    base_steps: int,
    max_factor: float,
    transfers_s: np.ndarray,
    step_s: np.ndarray,
    arrivals: int | None = None,
    target_s: float | None = None,
    online_s: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Each participant's local steps under the idle-time rule, and the round's target.

    A participant expected to finish before the target spends its idle time on more
    steps: ``floor((min(target, online) - transfers) / step time)``, never fewer than
    ``base_steps``, at most ``max_factor`` times that (PyramidFL). The target is the
    given deadline or the expected duration (at ``base_steps``) of the
    ``arrivals``-th fastest participant (all of them when ``None``). Unknown times
    (NaN) keep ``base_steps`` and do not set the target; with none known the target
    is NaN.
    """
    transfers = np.asarray(transfers_s, dtype=float)
    step = np.asarray(step_s, dtype=float)
    base_s = transfers + base_steps * step
    known = np.isfinite(base_s)
    if target_s is None:
        times = base_s[known]
        if times.size:
            kth = min(times.size, arrivals if arrivals is not None else times.size)
            target_s = float(np.partition(times, kth - 1)[kth - 1])
        else:
            target_s = math.nan
    limit = np.full(len(step), target_s) if online_s is None else np.minimum(target_s, online_s)
    budget_s = limit - transfers
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = np.where(step > 0, np.floor(budget_s / step), np.inf)
    cap = math.floor(max_factor * base_steps + 1e-9)
    fit = np.where(known, fit, base_steps)
    steps = np.clip(
        np.nan_to_num(fit, nan=base_steps, posinf=cap, neginf=base_steps), base_steps, cap
    )
    return steps.astype(np.int64), float(target_s)


def partial_upload_shares(
    num_params: int,
    dense_bytes: int,
    base_s: np.ndarray,
    up_s: np.ndarray,
    target_s: float,
    min_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k share and upload bytes of each participant (1 and dense: a full upload).

    One expected later than ``target_s`` (``base_s``: its duration at the config's
    steps, ``up_s`` of it uploading) uploads the share of its values that arrives by
    the target, at least ``min_fraction``, when that is smaller than the dense update
    (an int32 index and a float32 value each: only below half the values).
    """
    base = np.asarray(base_s, dtype=float)
    up = np.asarray(up_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        up_bps = dense_bytes / np.where(up > 0, up, np.inf)
        room_bytes = (target_s - (base - up)) * up_bps
    fraction = np.ones(len(base))
    upload_bytes = np.full(len(base), dense_bytes, dtype=np.int64)
    late = np.isfinite(base) & (base > target_s)
    for i in np.flatnonzero(late):
        share = max(min_fraction, min(1.0, room_bytes[i] / 8.0 / max(num_params, 1)))
        sent = 8 * top_k_count(num_params, share)
        if sent < dense_bytes:
            fraction[i], upload_bytes[i] = share, sent
    return fraction, upload_bytes
