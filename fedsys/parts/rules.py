"""Rules every round-runner follows, simulated or real, so both sides agree.

Over-commitment, the wire size of an update and the seed of a task are decided here
once: the simulator's engine and the deployed aggregator both call these, which is what
lets ``fedsys fidelity`` compare a simulated run with its deployment like for like.
"""

from __future__ import annotations

import math

from fedsys.aggregation.compression import Compressor, NoCompression
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
