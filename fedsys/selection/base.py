"""The ``Selector`` interface: which available clients take part in a round."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from fedsys.core.update import ClientId, ClientReport

StateT = TypeVar("StateT")


@dataclass(frozen=True)
class Proposal(Generic[StateT]):
    """A selector's candidates, in its order of preference, not yet recorded as picked.

    A wrapper that keeps only some of them (availability awareness) calls
    ``commit(kept)`` so the selector's bookkeeping (pick counts, exploited clients,
    pacer) counts the clients that really take part, not every candidate it offered.
    """

    candidates: list[ClientId]
    commit: Callable[[Sequence[ClientId]], StateT]


class Selector(ABC, Generic[StateT]):
    """Pick participants for a round and learn from what they report.

    Settings (seed, exploration factor, ...) live on ``self``. What evolves across
    rounds (utilities, pacer window) is the ``state`` value the caller owns, so a
    resumed server selects exactly as if it had never stopped. Randomness must derive
    from ``(seed, round_idx)`` only.
    """

    def init_state(self) -> StateT:
        """State before the first round (``None`` for stateless selectors)."""
        return None  # type: ignore[return-value]

    @abstractmethod
    def select(
        self,
        state: StateT,
        round_idx: int,
        available: np.ndarray,
        k: int,
        now_s: float,
    ) -> tuple[list[ClientId], StateT]:
        """Choose up to ``k`` distinct clients among ``available``.

        Parameters
        ----------
        state
            Value from :meth:`init_state` or the previous call.
        round_idx
            Round being formed (0-based).
        available
            1-D integer array of the ids of clients online now.
        k
            How many to pick; fewer are returned when fewer are available.
        now_s
            Current time (virtual in simulation).
        """

    def propose(
        self,
        state: StateT,
        round_idx: int,
        available: np.ndarray,
        k: int,
        now_s: float,
    ) -> Proposal[StateT]:
        """What :meth:`select` would pick, with the recording left to the caller.

        The default suits selectors whose ``select`` does not count its picks in the
        state (random, power-of-choice): committing any subset keeps that state.
        Selectors that do count (Oort) override it.
        """
        picked, after = self.select(state, round_idx, available, k, now_s)
        return Proposal(picked, lambda kept: after)

    def feedback(self, state: StateT, reports: Sequence[ClientReport]) -> StateT:
        """Fold the reports of one round into the state (no-op by default)."""
        return state

    def describe(self) -> dict[str, Any]:
        """Settings for logs and summaries."""
        return {"name": type(self).__name__, **vars(self)}
