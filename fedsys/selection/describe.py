"""What a selector's state looks like after a round, for people watching a run.

:func:`describe_selector` returns a small JSON-ready summary of a selector's state
(for Oort: the utility distribution of explored clients, how many of the round's
clients were explored vs exploited, the preferred round duration, the blacklist's
size), or ``None`` for a selector with nothing to show. A selector class may define
``describe_state(state, round_idx, selected)`` to describe itself; Oort's summary
lives here so the selector's own module stays about selection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedsys.selection.oort import OortSelector
from fedsys.selection.oort_state import OortState

UTILITY_BINS = 20
"""Bins of the utility histogram (fixed: the summary's size never grows with the fleet)."""


def describe_selector(
    selector: object, state: object, round_idx: int, selected: Sequence[int]
) -> dict[str, Any] | None:
    """A JSON-ready summary of ``selector``'s ``state`` after round ``round_idx``."""
    own = getattr(selector, "describe_state", None)
    if own is not None:
        return dict(own(state, round_idx, selected))
    if isinstance(selector, OortSelector) and isinstance(state, OortState):
        return describe_oort(selector, state, round_idx, selected)
    return None


def describe_oort(
    selector: OortSelector, state: OortState, round_idx: int, selected: Sequence[int]
) -> dict[str, Any]:
    """Oort's state: utilities, exploration, pacer and blacklist after ``round_idx``."""
    ids = np.asarray([c for c in selected if 0 <= c < state.num_clients], dtype=np.int64)
    exploited = int(np.count_nonzero(state.exploited_round[ids] == round_idx))
    utility = state.utility[np.isfinite(state.utility)]
    preferred = selector.preferred_duration_s(state)
    summary: dict[str, Any] = {
        "name": "oort",
        "explored": len(ids) - exploited,
        "exploited": exploited,
        "known_clients": int(np.count_nonzero(state.explored)),
        "exploration": round(selector.exploration(round_idx), 4),
        "preferred_s": None if math.isinf(preferred) else round(float(preferred), 3),
        "round_threshold": float(state.round_threshold),
        "blacklist": len(selector.blacklist(state)),
    }
    if len(utility):
        counts, edges = np.histogram(utility, bins=UTILITY_BINS)
        summary["utility_hist"] = {
            "edges": [round(float(e), 6) for e in edges],
            "counts": counts.tolist(),
        }
    return summary
