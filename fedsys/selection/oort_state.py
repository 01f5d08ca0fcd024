"""The evolving state of Oort's training selector, and how reports fold into it.

One frozen :class:`OortState` holds per-client arrays indexed by client id (grown on
demand as higher ids appear) plus the pacer's window. Arrays are read-only: every
update builds new arrays, so a state handed to a checkpoint or a test never changes.

Reference: Lai et al., "Oort: Efficient Federated Learning via Guided Participant
Selection", OSDI 2021, https://www.usenix.org/conference/osdi21/presentation/lai
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from fedsys.core.update import ClientReport
from fedsys.selection.sampling import grow, nan_to_none, none_to_nan

_FLOAT_FIELDS = ("num_samples", "prior_duration_s", "duration_s", "utility", "window_util_sum")
_INT_FIELDS = ("last_round", "times_picked", "exploited_round", "window_round", "window_count")
_PER_CLIENT = (
    "num_samples",
    "prior_duration_s",
    "duration_s",
    "utility",
    "last_round",
    "times_picked",
    "exploited_round",
)


@dataclass(frozen=True, eq=False)
class OortState:
    """What Oort has learned so far; the caller owns it and checkpoints it.

    Parameters
    ----------
    num_samples
        Training samples per client (prior or last report); NaN when unknown.
    prior_duration_s
        Expected round duration given as a prior; NaN when unknown.
    duration_s
        Last measured round duration; NaN until the client reported once.
    utility
        Statistical utility ``|B_i| * sqrt(mean loss²)`` of the last completed
        training (a stand-in after a straggle or a rejection, see
        :func:`apply_reports`); NaN while the client is unexplored.
    last_round
        0-based round of the client's last completed, straggled or rejected
        training; -1 if none.
    times_picked
        How many times the client was selected (drives the blacklist).
    exploited_round
        Last round in which the client was picked by exploitation; -1 if never.
    round_threshold
        Current percentile (0..100) of known durations that sets the preferred
        round duration; the pacer raises it.
    window_round, window_util_sum, window_count
        Ring of ``2 * pacer_step`` slots: the round a slot holds, the summed utility
        and the count of the exploited clients that completed in that round.
    pacer_checked_round
        Last round at which the pacer compared its windows; -1 if never.
    """

    num_samples: np.ndarray
    prior_duration_s: np.ndarray
    duration_s: np.ndarray
    utility: np.ndarray
    last_round: np.ndarray
    times_picked: np.ndarray
    exploited_round: np.ndarray
    round_threshold: float
    window_round: np.ndarray
    window_util_sum: np.ndarray
    window_count: np.ndarray
    pacer_checked_round: int = -1

    def __post_init__(self) -> None:
        sizes = {len(getattr(self, name)) for name in _PER_CLIENT}
        if len(sizes) != 1:
            raise ValueError(f"per-client arrays differ in length: {sorted(sizes)}")
        windows = {len(self.window_round), len(self.window_util_sum), len(self.window_count)}
        if len(windows) != 1:
            raise ValueError(f"pacer window arrays differ in length: {sorted(windows)}")
        for name in (*_FLOAT_FIELDS, *_INT_FIELDS):
            getattr(self, name).flags.writeable = False

    @classmethod
    def empty(cls, round_threshold: float, pacer_step: int) -> OortState:
        """State of a selector that knows no client yet."""
        return cls(
            num_samples=np.empty(0),
            prior_duration_s=np.empty(0),
            duration_s=np.empty(0),
            utility=np.empty(0),
            last_round=np.empty(0, dtype=np.int64),
            times_picked=np.empty(0, dtype=np.int64),
            exploited_round=np.empty(0, dtype=np.int64),
            round_threshold=float(round_threshold),
            window_round=np.full(2 * pacer_step, -1, dtype=np.int64),
            window_util_sum=np.zeros(2 * pacer_step),
            window_count=np.zeros(2 * pacer_step, dtype=np.int64),
        )

    @property
    def num_clients(self) -> int:
        """Number of client ids the arrays cover (``max id + 1`` seen so far)."""
        return len(self.utility)

    @property
    def explored(self) -> np.ndarray:
        """Boolean mask of clients with a measured statistical utility."""
        mask: np.ndarray = np.isfinite(self.utility)
        return mask

    def known_duration_s(self, clients: np.ndarray | None = None) -> np.ndarray:
        """Measured duration where known, else the prior; NaN when neither is.

        Parameters
        ----------
        clients
            Ids to look up; every client when ``None``.
        """
        measured = self.duration_s if clients is None else self.duration_s[clients]
        prior = self.prior_duration_s if clients is None else self.prior_duration_s[clients]
        known: np.ndarray = np.where(np.isnan(measured), prior, measured)
        return known

    def resized(self, size: int) -> OortState:
        """This state covering at least ``size`` client ids (itself when it already does)."""
        if size <= self.num_clients:
            return self
        return replace(
            self,
            num_samples=grow(self.num_samples, size, np.nan),
            prior_duration_s=grow(self.prior_duration_s, size, np.nan),
            duration_s=grow(self.duration_s, size, np.nan),
            utility=grow(self.utility, size, np.nan),
            last_round=grow(self.last_round, size, -1),
            times_picked=grow(self.times_picked, size, 0),
            exploited_round=grow(self.exploited_round, size, -1),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, floats, ints; NaN stored as ``None``)."""
        out: dict[str, Any] = {"version": 1}
        for name in _FLOAT_FIELDS:
            out[name] = nan_to_none(getattr(self, name))
        for name in _INT_FIELDS:
            out[name] = [int(v) for v in getattr(self, name).tolist()]
        out["round_threshold"] = float(self.round_threshold)
        out["pacer_checked_round"] = int(self.pacer_checked_round)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OortState:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If a field is missing or unknown, or the version is not 1.
        """
        if data.get("version") != 1:
            raise ValueError(f"unsupported OortState version: {data.get('version')!r}")
        expected = {f.name for f in fields(cls)}
        given = set(data) - {"version"}
        if given != expected:
            raise ValueError(f"OortState fields mismatch: {sorted(given ^ expected)}")
        values: dict[str, Any] = {name: none_to_nan(data[name]) for name in _FLOAT_FIELDS}
        values.update({name: np.array(data[name], dtype=np.int64) for name in _INT_FIELDS})
        values["round_threshold"] = float(data["round_threshold"])
        values["pacer_checked_round"] = int(data["pacer_checked_round"])
        return cls(**values)


def statistical_utility(num_samples: np.ndarray, rms_loss: np.ndarray) -> np.ndarray:
    """Oort's statistical utility ``|B_i| * sqrt(mean over all trained samples of loss²)``."""
    return np.asarray(num_samples, dtype=np.float64) * np.asarray(rms_loss, dtype=np.float64)


def apply_reports(state: OortState, reports: Sequence[ClientReport]) -> OortState:
    """Fold one batch of reports into a new state, by how the round ended for each client.

    * ``completed`` with loss statistics: utility ``|B_i| * rms loss`` where ``|B_i|``
      is the number of distinct samples trained on, ``min(samples_processed,
      num_samples)`` (the reference code's ``trained_unique_samples``; the data size
      when ``samples_processed`` is unknown); the staleness round, sample count and
      duration are set. Completed exploited clients feed the pacer's window.
    * ``straggled`` (finished after the round closed): as Oort's reference code does
      for ``round_stragglers``, the client gets the mean utility of the batch's
      completed clients (of every known utility when none completed; 0 when none is
      known) and the report's round as a fresh staleness round; its duration is a
      lower bound, so the known duration becomes the larger of the two.
    * ``dropped`` (went offline): unknown. Nothing about its utility, staleness or
      speed is learned; only its sample count is kept. The reference code has no
      mid-round dropouts (FedScale only offers clients online at selection time).
    * ``rejected`` (validation refused its update): never rewarded. Its measured
      duration is kept and its utility becomes 0 with a fresh staleness round, so it
      is explored but cannot win exploitation by a refused update (no counterpart
      in the reference code, which does not validate updates).
    """
    if not reports:
        return state
    ids = np.array([r.client_id for r in reports], dtype=np.int64)
    if ids.min() < 0:
        raise ValueError(f"client ids must be >= 0, got {int(ids.min())}")
    rounds = np.array([r.round_idx for r in reports], dtype=np.int64)
    durations = np.maximum(np.array([r.duration_s for r in reports], dtype=np.float64), 0.0)
    samples = np.array([r.num_samples for r in reports], dtype=np.float64)
    processed = np.array([r.samples_processed for r in reports], dtype=np.float64)
    unique = np.where(processed > 0, np.minimum(processed, samples), samples)
    outcome = np.array([r.outcome for r in reports])
    completed = outcome == "completed"
    straggled = outcome == "straggled"
    rejected = outcome == "rejected"
    rms = np.array(
        [r.loss.rms_loss if r.loss is not None and r.loss.samples_seen else np.nan for r in reports]
    )
    state = state.resized(int(ids.max()) + 1)

    duration = state.duration_s.copy()
    np.fmax.at(duration, ids[straggled], durations[straggled])
    measured = completed | rejected
    duration[ids[measured]] = durations[measured]
    num_samples = state.num_samples.copy()
    has_size = samples > 0
    num_samples[ids[has_size]] = samples[has_size]

    trained = completed & np.isfinite(rms)
    gained = statistical_utility(unique[trained], rms[trained])
    utility = state.utility.copy()
    utility[ids[trained]] = gained
    last_round = state.last_round.copy()
    np.maximum.at(last_round, ids[trained], rounds[trained])
    if straggled.any():
        utility[ids[straggled]] = _stand_in_utility(gained, state.utility)
        np.maximum.at(last_round, ids[straggled], rounds[straggled])
    utility[ids[rejected]] = 0.0
    np.maximum.at(last_round, ids[rejected], rounds[rejected])

    exploited = state.exploited_round[ids[trained]] == rounds[trained]
    slots = rounds[trained] % len(state.window_round)
    live = exploited & (state.window_round[slots] == rounds[trained])
    window_sum = state.window_util_sum.copy()
    window_count = state.window_count.copy()
    np.add.at(window_sum, slots[live], gained[live])
    np.add.at(window_count, slots[live], 1)
    return replace(
        state,
        num_samples=num_samples,
        duration_s=duration,
        utility=utility,
        last_round=last_round,
        window_util_sum=window_sum,
        window_count=window_count,
    )


def _stand_in_utility(batch: np.ndarray, known: np.ndarray) -> float:
    """Utility of a straggler: the batch's mean completed utility, else the known mean, else 0."""
    for values in (batch, known[np.isfinite(known)]):
        if len(values):
            return float(values.mean())
    return 0.0
