"""What a runtime knows about clients before they ever train, for selectors that use it.

Oort ranks unexplored clients by sample count and expected speed; power-of-choice
samples candidates proportionally to data size. Neither needs these priors to work
(unknown sizes count as the mean known size), but both select better with them.

A client's priors reach the selector when it is first a candidate, as a real server
learns of a device only once it connects: before each selection the runtime feeds
what it knows of the available clients (:func:`feed_priors`); the simulator does
the same with its traces, so both select from the same knowledge::

    state = feed_priors(selector, state, available, num_samples, expected_duration_s)
    picked, state = selector.select(state, round_idx, available, k, now_s)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class UsesClientPriors(Protocol):
    """A selector whose state can be seeded with per-client priors."""

    def with_priors(
        self,
        state: Any,
        num_samples: np.ndarray,
        expected_duration_s: np.ndarray | None = None,
    ) -> Any:
        """Return ``state`` with priors for clients ``0..len(num_samples)-1``.

        Parameters
        ----------
        state
            Value from ``init_state()`` (or a later state: measured values win).
        num_samples
            Training samples of each client, indexed by client id; NaN when unknown.
        expected_duration_s
            Expected round duration of each client (e.g. from its device trace),
            indexed by client id; NaN when unknown; ``None`` when no hint at all.
        """
        ...


def feed_priors(
    selector: object,
    state: Any,
    available: np.ndarray,
    num_samples: np.ndarray,
    expected_duration_s: np.ndarray,
) -> Any:
    """``state`` told the priors of the ``available`` clients (unchanged for other selectors).

    Parameters
    ----------
    selector
        Any selector; only a :class:`UsesClientPriors` one is fed.
    state
        Its current state (measured values and earlier priors of others are kept).
    available
        Client ids about to be offered to ``select``.
    num_samples, expected_duration_s
        Their sample counts and expected round times, aligned with ``available``
        (NaN where unknown).
    """
    ids = np.asarray(available, dtype=np.int64)
    if not isinstance(selector, UsesClientPriors) or len(ids) == 0:
        return state
    size = int(ids.max()) + 1
    sizes = np.full(size, np.nan)
    sizes[ids] = np.asarray(num_samples, dtype=np.float64)
    hints = np.full(size, np.nan)
    hints[ids] = np.asarray(expected_duration_s, dtype=np.float64)
    return selector.with_priors(state, sizes, hints)
