"""Availability-aware selection: use data before it leaves, never pick who cannot finish.

REFL (Abdelmoniem et al., "REFL: Resource-Efficient Federated Learning", EuroSys 2023,
code github.com/ahmedcs/REFL, read for behaviour only) prioritises clients predicted to
go offline soon, so that their data is used while it is still reachable, and leaves out
clients whose remaining online time is shorter than the round they would join: their
work would be lost to a dropout.

The runtime tells the selector when each available client is expected to leave
(:func:`feed_availability`), as it feeds sample counts and speeds
(:func:`fedsys.selection.priors.feed_priors`): the simulator from the availability
trace (``DeviceFleet.online_until``), a real server from the session end each device
reports when it subscribes. Both then call the unchanged ``select``::

    state = feed_priors(selector, state, available, num_samples, expected_duration_s)
    state = feed_availability(selector, state, available, online_until_s, now_s)
    picked, state = selector.select(state, round_idx, available, k, now_s)

:class:`AvailabilityAwareSelector` wraps any selector (Oort by default): the base ranks
clients as it always does, among the ones that can finish, and offers ``pool x k``
candidates. Which ``k`` of them take part is the ``priority``:

* ``soonest`` (default): the ``k`` candidates predicted to leave soonest (REFL's
  ordering), whatever the base preferred among them.
* ``last_chance``: a candidate that can finish this round but is predicted to leave
  before it could finish another one (remaining online time below its own round plus
  the round's expected length) is taken first, soonest to leave first; the other
  slots keep the base's own ``k`` picks, so the base's ranking (Oort's utility, its
  exploration share) is kept wherever no data is about to disappear. Measured
  slower than ``soonest`` behind Oort (``benchmarks/selection_tta.py``, see
  docs/benchmarks/selection_tta.md): drawing among more of Oort's candidates also
  spreads rounds over more clients.

Only the clients kept are recorded as picked by the base (:class:`Proposal`): Oort's
pick counts and exploitation marks count who really takes part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from fedsys.core.update import ClientId, ClientReport
from fedsys.selection.base import Selector
from fedsys.selection.priors import UsesClientPriors
from fedsys.selection.sampling import as_client_ids


@runtime_checkable
class UsesAvailability(Protocol):
    """A selector whose state can be told when available clients are expected to leave."""

    def with_availability(
        self, state: Any, client_ids: np.ndarray, online_until_s: np.ndarray, now_s: float
    ) -> Any:
        """Return ``state`` knowing that ``client_ids[i]`` leaves at ``online_until_s[i]``.

        Parameters
        ----------
        state
            The selector's current state.
        client_ids
            Clients about to be offered to ``select``.
        online_until_s
            Absolute time (the runtime's clock, as ``now_s``) at which each is expected
            to go offline; ``inf``: it stays; NaN: unknown.
        now_s
            The runtime's current time.
        """
        ...


def feed_availability(
    selector: object,
    state: Any,
    available: np.ndarray,
    online_until_s: np.ndarray,
    now_s: float,
) -> Any:
    """``state`` told when the ``available`` clients leave (unchanged for other selectors)."""
    ids = np.asarray(available, dtype=np.int64)
    if not isinstance(selector, UsesAvailability) or len(ids) == 0:
        return state
    until = np.asarray(online_until_s, dtype=np.float64)
    if until.shape != ids.shape:
        raise ValueError(
            f"online_until_s has {until.shape} entries for {ids.shape} available clients"
        )
    return selector.with_availability(state, ids, until, float(now_s))


def remaining_online_s(online_until_s: np.ndarray, now_s: float) -> np.ndarray:
    """Predicted seconds each client stays online from ``now_s`` (``inf`` stays, NaN unknown)."""
    until = np.asarray(online_until_s, dtype=np.float64)
    return np.where(np.isnan(until), np.nan, np.maximum(until - now_s, 0.0))


@dataclass(frozen=True, eq=False)
class AvailabilityState:
    """The base selector's state plus what this wrapper knows per client id.

    Parameters
    ----------
    base
        State of the wrapped selector.
    online_until_s
        Expected end of each client's current session (absolute; NaN: unknown).
    expected_s
        Expected round duration per client: the last measured one, else the prior;
        NaN when unknown.
    """

    base: Any
    online_until_s: np.ndarray
    expected_s: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (NaN as ``None``, infinities as strings)."""
        base = self.base
        return {
            "version": 1,
            "base_kind": None if base is None else type(base).__name__,
            "base": None if base is None else base.to_dict(),
            "online_until_s": _to_json(self.online_until_s),
            "expected_s": _to_json(self.expected_s),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AvailabilityState:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If the version or the base state's kind is unknown.
        """
        from fedsys.selection.oort_state import OortState
        from fedsys.selection.power_of_choice import PowerOfChoiceState

        if data.get("version") != 1:
            raise ValueError(f"unsupported AvailabilityState version: {data.get('version')!r}")
        kinds = {"OortState": OortState, "PowerOfChoiceState": PowerOfChoiceState}
        kind = data.get("base_kind")
        if kind is not None and kind not in kinds:
            raise ValueError(f"unknown base selector state {kind!r}")
        base = None if kind is None else kinds[kind].from_dict(data["base"])
        return cls(base, _from_json(data["online_until_s"]), _from_json(data["expected_s"]))

    def resized(self, size: int) -> AvailabilityState:
        """The same state covering at least ``size`` client ids."""
        if size <= len(self.online_until_s):
            return self
        return replace(
            self,
            online_until_s=_grow(self.online_until_s, size),
            expected_s=_grow(self.expected_s, size),
        )


class AvailabilityAwareSelector(Selector[AvailabilityState]):
    """Wrap ``base`` so it never wastes a pick on a client that leaves mid-round.

    Parameters
    ----------
    base
        The selector that ranks clients (Oort, random, power-of-choice).
    margin
        A client is feasible when its predicted remaining online time is at least
        ``margin`` times its expected round duration (unknown: feasible).
    pool
        The base offers ``ceil(pool * k)`` feasible candidates (1: no leaving-soon
        priority, a pure feasibility filter).
    priority
        Which ``k`` candidates are kept: ``soonest`` or ``last_chance`` (see the
        module docstring).
    """

    def __init__(
        self,
        base: Selector,
        margin: float = 1.0,
        pool: float = 1.5,
        priority: Literal["last_chance", "soonest"] = "soonest",
    ) -> None:
        if margin <= 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        if priority not in ("last_chance", "soonest"):
            raise ValueError(f"priority must be 'last_chance' or 'soonest', got {priority!r}")
        self.base = base
        self.margin = margin
        self.pool = pool
        self.priority = priority

    def init_state(self) -> AvailabilityState:
        """No client known; the base's own initial state."""
        empty = np.zeros(0)
        return AvailabilityState(self.base.init_state(), empty, empty)

    def with_priors(
        self,
        state: AvailabilityState,
        num_samples: np.ndarray,
        expected_duration_s: np.ndarray | None = None,
    ) -> AvailabilityState:
        """Keep the expected durations (a measured one wins); pass the priors to the base."""
        base = state.base
        if isinstance(self.base, UsesClientPriors):
            base = self.base.with_priors(base, num_samples, expected_duration_s)
        state = replace(state, base=base)
        if expected_duration_s is None:
            return state
        hints = np.asarray(expected_duration_s, dtype=np.float64)
        state = state.resized(len(hints))
        expected = state.expected_s.copy()
        fill = np.isnan(expected[: len(hints)]) & np.isfinite(hints)
        expected[: len(hints)][fill] = hints[fill]
        return replace(state, expected_s=expected)

    def with_availability(
        self,
        state: AvailabilityState,
        client_ids: np.ndarray,
        online_until_s: np.ndarray,
        now_s: float,
    ) -> AvailabilityState:
        """Record when each of ``client_ids`` is expected to go offline."""
        ids = np.asarray(client_ids, dtype=np.int64)
        if len(ids) == 0:
            return state
        state = state.resized(int(ids.max()) + 1)
        until = state.online_until_s.copy()
        until[ids] = np.asarray(online_until_s, dtype=np.float64)
        return replace(state, online_until_s=until)

    def feasible(self, state: AvailabilityState, clients: np.ndarray, now_s: float) -> np.ndarray:
        """Whether each client is predicted to stay online long enough to finish a round.

        Unknown session end: feasible. Unknown duration: feasible unless the session
        is predicted to be over already.
        """
        state = state.resized(int(clients.max()) + 1 if len(clients) else 0)
        remaining = remaining_online_s(state.online_until_s[clients], now_s)
        needed = self.margin * state.expected_s[clients]
        enough = (remaining > 0) & (np.isnan(needed) | (remaining >= needed))
        return np.isnan(remaining) | enough

    def select(
        self,
        state: AvailabilityState,
        round_idx: int,
        available: np.ndarray,
        k: int,
        now_s: float,
    ) -> tuple[list[ClientId], AvailabilityState]:
        """Base's picks among feasible clients; of ``pool x k`` candidates, the soonest to leave.

        Infeasible clients are offered to the base only when fewer than ``k`` clients
        are feasible, and then only the ones with the most time to spare.
        """
        ids = as_client_ids(available)
        take = min(int(k), len(ids))
        if take <= 0:
            return [], state
        state = state.resized(int(ids[-1]) + 1)
        ok = self.feasible(state, ids, now_s)
        candidates = ids[ok]
        if len(candidates) < take:
            candidates = np.sort(
                np.concatenate(
                    [candidates, self._spare(state, ids[~ok], now_s, take - len(candidates))]
                )
            )
        wanted = min(len(candidates), max(take, math.ceil(self.pool * take - 1e-9)))
        offered = self.base.propose(state.base, round_idx, candidates, wanted, now_s)
        pool = np.asarray(offered.candidates, dtype=np.int64)
        if self.priority == "soonest" or len(pool) <= take:
            picked = self._soonest(state, pool, take, now_s)
        else:
            own = self.base.propose(state.base, round_idx, candidates, take, now_s)
            picked = self._last_chance(
                state, pool, np.asarray(own.candidates, dtype=np.int64), now_s
            )
            if picked.tolist() == own.candidates:
                offered = own  # nobody urgent: exactly the base's own round
        return [int(c) for c in picked], replace(state, base=offered.commit(picked.tolist()))

    def feedback(
        self, state: AvailabilityState, reports: Sequence[ClientReport]
    ) -> AvailabilityState:
        """Measured durations replace priors (not a dropout's); the base learns as usual."""
        if reports:
            state = state.resized(max(r.client_id for r in reports) + 1)
            expected = state.expected_s.copy()
            for report in reports:
                if report.outcome != "dropped" and report.duration_s > 0:
                    expected[report.client_id] = report.duration_s
            state = replace(state, expected_s=expected)
        return replace(state, base=self.base.feedback(state.base, reports))

    def describe(self) -> dict[str, Any]:
        """Settings, the base's included."""
        return {
            "name": type(self).__name__,
            "margin": self.margin,
            "pool": self.pool,
            "priority": self.priority,
            "base": self.base.describe(),
        }

    def _spare(
        self, state: AvailabilityState, infeasible: np.ndarray, now_s: float, n: int
    ) -> np.ndarray:
        """The ``n`` infeasible clients with the most online time beyond their round."""
        remaining = remaining_online_s(state.online_until_s[infeasible], now_s)
        slack = remaining - self.margin * state.expected_s[infeasible]
        order = np.lexsort((infeasible, -slack))
        return infeasible[order[:n]]

    def _last_chance(
        self, state: AvailabilityState, pool: np.ndarray, own: np.ndarray, now_s: float
    ) -> np.ndarray:
        """Candidates that could not finish a second round first, then the base's own picks.

        The round's expected length is the slowest expected duration among the base's
        own picks (a synchronous round waits for its slowest); unknown durations make
        nobody urgent.
        """
        remaining = remaining_online_s(state.online_until_s[pool], now_s)
        own_s = self.margin * state.expected_s[pool]
        known = state.expected_s[own]
        known = known[np.isfinite(known)]
        round_s = float(known.max()) if len(known) else math.nan
        urgent = np.isfinite(remaining) & (remaining < own_s + round_s)
        order = np.lexsort((np.arange(len(pool)), remaining))
        first = pool[order][urgent[order]].tolist()
        taken = set(first)
        rest = [int(c) for c in own if c not in taken]
        taken.update(rest)
        spare = [int(c) for c in pool if c not in taken]
        return np.asarray((first + rest + spare)[: len(own)], dtype=np.int64)

    def _soonest(
        self, state: AvailabilityState, picked: np.ndarray, take: int, now_s: float
    ) -> np.ndarray:
        """The ``take`` picks predicted to leave first (unknown and never last, base order kept)."""
        if len(picked) <= take:
            return picked
        remaining = remaining_online_s(state.online_until_s[picked], now_s)
        remaining = np.where(np.isnan(remaining), np.inf, remaining)
        order = np.lexsort((np.arange(len(picked)), remaining))
        return picked[order[:take]]


def _to_json(values: np.ndarray) -> list[float | str | None]:
    return [None if v != v else v if math.isfinite(v) else str(v) for v in values.tolist()]


def _from_json(values: list[float | str | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _grow(values: np.ndarray, size: int) -> np.ndarray:
    grown = np.full(size, np.nan)
    grown[: len(values)] = values
    return grown


__all__ = [
    "AvailabilityAwareSelector",
    "AvailabilityState",
    "UsesAvailability",
    "feed_availability",
    "remaining_online_s",
]
